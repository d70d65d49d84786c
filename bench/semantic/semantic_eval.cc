// saola-semantic-eval: how well the semantic cache tells paraphrases from near-misses, and how
// fast a lookup is, with the real all-MiniLM-L6-v2 embedder.
//
//   saola-semantic-eval [--model-dir models/all-MiniLM-L6-v2] [--pairs bench/semantic/pairs.tsv]
//                       [--threshold 0.85] [--split all|dev|holdout] [--verbose]
//                       [--bench] [--entries 10000] [--lookups 2000]
//                       [--short-words N] [--short-similarity S]   (GuardOptions, to explore)
//
// Accuracy. pairs.tsv has one pair per line: split (dev|holdout), label (para: the second text
// should be answered by the first's response; near: it must not be), a category, text A, text B.
// For every pair the tool embeds both texts and counts a hit when cosine(A, B) >= threshold
// (without the guard) and when, in addition, FalseHitGuard accepts (with the guard). It prints
// recall (hits among para pairs) and the false-hit rate (hits among near pairs), per split, at
// the threshold and on a sweep from 0.75 to 0.95. --verbose lists the misclassified pairs.
//
// Latency (--bench). One partition of `--entries` prompts (the pairs' A texts plus generated
// question prompts; HNSW at this size with the default hnsw_min_entries 4096), then `--lookups`
// SemanticCache::Lookup calls with paraphrase B texts, each timed end to end: the embedding on
// this CPU, the FAISS search, the guard. Prints p50/p99 of the whole lookup and of its embedding
// part, the hit rate, and the index's self-recall (a stored text looked up finds itself).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cache/semantic/false_hit_guard.h"
#include "cache/semantic/minilm_embedder.h"
#include "cache/semantic/semantic_cache.h"
#include "common/flags.h"

namespace saola::cache {
namespace {

struct Pair {
  std::string split, label, category, a, b;
};

absl::StatusOr<std::vector<Pair>> ReadPairs(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<Pair> pairs;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols = absl::StrSplit(line, '\t');
    if (cols.size() != 5 || (cols[1] != "para" && cols[1] != "near") ||
        (cols[0] != "dev" && cols[0] != "holdout")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": want split, para|near, category, A, B"));
    }
    pairs.push_back({cols[0], cols[1], cols[2], cols[3], cols[4]});
  }
  return pairs;
}

float Dot(const std::vector<float>& a, const std::vector<float>& b) {
  float s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct Scored {
  const Pair* pair;
  float similarity;
  GuardDecision guard;
};

void Report(const std::vector<Scored>& scored, const std::string& split, float threshold,
            bool verbose) {
  auto rates = [&](float t, bool with_guard, int* para, int* para_hit, int* near,
                   int* near_hit) {
    *para = *para_hit = *near = *near_hit = 0;
    for (const Scored& s : scored) {
      if (split != "all" && s.pair->split != split) continue;
      const bool hit = s.similarity >= t && (!with_guard || s.guard.accept);
      if (s.pair->label == "para") {
        ++*para;
        *para_hit += hit;
      } else {
        ++*near;
        *near_hit += hit;
      }
    }
  };
  int p, ph, n, nh;
  std::printf("\n== split %s ==\n", split.c_str());
  std::printf("threshold  recall(no guard)  false-hit(no guard)  recall(guard)  false-hit(guard)\n");
  for (float t : {0.75f, 0.80f, 0.85f, 0.90f, 0.95f}) {
    rates(t, false, &p, &ph, &n, &nh);
    const double r0 = 100.0 * ph / std::max(p, 1), f0 = 100.0 * nh / std::max(n, 1);
    rates(t, true, &p, &ph, &n, &nh);
    const double r1 = 100.0 * ph / std::max(p, 1), f1 = 100.0 * nh / std::max(n, 1);
    std::printf("%9.2f  %15.1f%%  %18.1f%%  %12.1f%%  %15.1f%%%s\n", t, r0, f0, r1, f1,
                std::abs(t - threshold) < 1e-4 ? "   <-" : "");
  }
  rates(threshold, true, &p, &ph, &n, &nh);
  std::printf("at %.2f with the guard: %d/%d paraphrases hit, %d/%d near-misses hit\n", threshold,
              ph, p, nh, n);
  if (!verbose) return;
  for (const Scored& s : scored) {
    if (split != "all" && s.pair->split != split) continue;
    const bool hit = s.similarity >= threshold && s.guard.accept;
    const bool want = s.pair->label == "para";
    if (hit == want) continue;
    std::printf("  %s %-5s %-10s sim %.3f %-16s | %s | %s\n", want ? "MISS" : "FALSE",
                s.pair->split.c_str(), s.pair->category.c_str(), s.similarity,
                s.guard.accept ? "" : s.guard.reason.c_str(), s.pair->a.c_str(),
                s.pair->b.c_str());
  }
}

// Generated question prompts to fill the benchmark partition: distinct, varied, realistic.
std::vector<std::string> FillerPrompts(int n) {
  const std::vector<std::string> starts = {
      "How do I", "What is the best way to", "Can you explain how to", "Is it possible to",
      "Why does it fail when I", "Give me tips to", "What are common mistakes when I",
      "Write a short guide to"};
  const std::vector<std::string> verbs = {"configure", "debug", "optimize", "install",
                                          "learn", "clean", "repair", "measure", "plan",
                                          "compare", "choose", "store", "grow", "cook"};
  const std::vector<std::string> objects = {
      "a home network", "a sourdough starter", "a Kubernetes cluster", "a vegetable garden",
      "a Python web server", "a wedding budget", "a road bike", "a database index",
      "an aquarium", "a resume", "a podcast studio", "a solar panel", "a React app",
      "a mortgage", "a compost bin", "a camping trip", "a guitar amp", "a marathon plan",
      "an SQL query", "a small business website", "a coffee grinder", "a 3D printer",
      "a rental contract", "a birthday party", "a laptop battery", "a vintage car"};
  const std::vector<std::string> contexts = {
      "", " on a tight budget", " for beginners", " in winter", " without special tools",
      " for a family of four", " at work", " as fast as possible", " safely", " from scratch",
      " in a small apartment", " with kids around"};
  std::vector<std::string> out;
  for (size_t i = 0; static_cast<int>(out.size()) < n; ++i) {
    size_t k = i;
    const std::string& s = starts[k % starts.size()];
    k /= starts.size();
    const std::string& v = verbs[k % verbs.size()];
    k /= verbs.size();
    const std::string& o = objects[k % objects.size()];
    k /= objects.size();
    const std::string& c = contexts[k % contexts.size()];
    k /= contexts.size();
    std::string p = absl::StrCat(s, " ", v, " ", o, c, "?");
    if (k > 0) p = absl::StrCat(p, " (variant ", k, ")");
    out.push_back(std::move(p));
  }
  return out;
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

int RunBench(const Embedder& embedder, const std::vector<Pair>& pairs, int entries,
             int lookups, float threshold) {
  std::vector<std::string> stored, queries;
  for (const Pair& p : pairs) {
    if (p.label != "para") continue;
    stored.push_back(p.a);
    queries.push_back(p.b);
  }
  for (const std::string& f : FillerPrompts(entries - static_cast<int>(stored.size()))) {
    stored.push_back(f);
  }
  std::printf("\nembedding %zu prompts for the partition (2 threads)...\n", stored.size());
  std::vector<std::vector<float>> vecs(stored.size());
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        for (size_t i = t; i < stored.size(); i += 2) vecs[i] = *embedder.Embed(stored[i]);
      });
    }
    for (auto& th : threads) th.join();
  }
  const double embed_all_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto cache = *SemanticCache::Create(&embedder, SemanticCacheOptions{});
  const auto t1 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < stored.size(); ++i) {
    saola::v1::CachedResponse r;
    r.set_version(1);
    r.set_fingerprint(absl::StrCat(i));
    cache->Insert("bench", stored[i], vecs[i], std::move(r));
  }
  const double insert_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  const SemanticCacheStats st = cache->stats();
  std::printf("embedded in %.1f s, inserted in %.1f s: %lld entries, %lld HNSW partition(s)\n",
              embed_all_s, insert_s, static_cast<long long>(st.entries),
              static_cast<long long>(st.hnsw_partitions));

  std::vector<double> total_ms, embed_ms;
  int hits = 0;
  for (int i = 0; i < lookups; ++i) {
    const std::string& q = queries[i % queries.size()];
    const auto a = std::chrono::steady_clock::now();
    auto hit = cache->Lookup("bench", q, threshold, nullptr);
    const auto b = std::chrono::steady_clock::now();
    (void)embedder.Embed(q);
    const auto c = std::chrono::steady_clock::now();
    total_ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
    embed_ms.push_back(std::chrono::duration<double, std::milli>(c - b).count());
    hits += hit.has_value();
  }
  // Self-recall of the approximate index: a stored vector must find its own entry.
  int self = 0, probes = 0;
  for (size_t i = 0; i < stored.size(); i += 10, ++probes) {
    auto hit = cache->Lookup("bench", stored[i], 0.999f, nullptr);
    self += hit.has_value() && hit->cached_text == stored[i];
  }
  std::printf("lookup (embed + search + guard), %d lookups, 1 thread: p50 %.2f ms, p99 %.2f ms,"
              " max %.2f ms\n",
              lookups, Percentile(total_ms, 0.5), Percentile(total_ms, 0.99),
              Percentile(total_ms, 1.0));
  std::printf("  of which embedding alone: p50 %.2f ms, p99 %.2f ms\n",
              Percentile(embed_ms, 0.5), Percentile(embed_ms, 0.99));
  std::printf("  hit rate %.1f%% (paraphrase queries at %.2f); self-recall %d/%d\n",
              100.0 * hits / lookups, threshold, self, probes);
  return 0;
}

int Main(int argc, char** argv) {
  auto flags = cli::Flags::Parse(std::vector<std::string>(argv + 1, argv + argc),
                                 {"model-dir", "pairs", "threshold", "split", "entries",
                                  "lookups", "short-words", "short-similarity"},
                                 {"verbose", "bench"});
  if (!flags.ok()) {
    std::fprintf(stderr, "saola-semantic-eval: %s\n", flags.status().ToString().c_str());
    return 2;
  }
  const std::string src = SAOLA_SOURCE_DIR;
  const std::string model_dir = flags->Has("model-dir") ? *flags->String("model-dir")
                                                        : src + "/models/all-MiniLM-L6-v2";
  const std::string pairs_path =
      flags->Has("pairs") ? *flags->String("pairs") : src + "/bench/semantic/pairs.tsv";
  auto threshold = flags->Float("threshold", 0.85, 0.0, 1.0);
  auto entries = flags->Int("entries", 10000, 100, 1000000);
  auto lookups = flags->Int("lookups", 2000, 1, 10000000);
  const std::string split = flags->Has("split") ? *flags->String("split") : "all";
  if (!threshold.ok() || !entries.ok() || !lookups.ok()) {
    std::fprintf(stderr, "saola-semantic-eval: bad numeric flag\n");
    return 2;
  }
  auto embedder = MiniLmEmbedder::Load(model_dir);
  if (!embedder.ok()) {
    std::fprintf(stderr, "saola-semantic-eval: %s (run scripts/fetch-models)\n",
                 embedder.status().ToString().c_str());
    return 1;
  }
  auto pairs = ReadPairs(pairs_path);
  if (!pairs.ok()) {
    std::fprintf(stderr, "saola-semantic-eval: %s\n", pairs.status().ToString().c_str());
    return 1;
  }
  GuardOptions guard_options;
  auto short_words = flags->Int("short-words", guard_options.short_text_max_words, 0, 100);
  auto short_sim = flags->Float("short-similarity", guard_options.short_text_min_similarity, 0, 1);
  if (!short_words.ok() || !short_sim.ok()) {
    std::fprintf(stderr, "saola-semantic-eval: bad --short-* flag\n");
    return 2;
  }
  guard_options.short_text_max_words = static_cast<int>(*short_words);
  guard_options.short_text_min_similarity = static_cast<float>(*short_sim);
  std::vector<Scored> scored;
  FalseHitGuard guard(guard_options);
  for (const Pair& p : *pairs) {
    auto a = (*embedder)->Embed(p.a);
    auto b = (*embedder)->Embed(p.b);
    if (!a.ok() || !b.ok()) {
      std::fprintf(stderr, "embedding failed for: %s\n", p.a.c_str());
      return 1;
    }
    const float sim = Dot(*a, *b);
    // The cache checks the query (B) against the stored entry (A).
    scored.push_back({&p, sim, guard.Check(p.b, p.a, sim)});
  }
  std::map<std::string, std::pair<int, int>> counts;
  for (const Pair& p : *pairs) {
    (p.label == "para" ? counts[p.split].first : counts[p.split].second)++;
  }
  for (const auto& [s, c] : counts) {
    std::printf("split %-8s %d paraphrase pairs, %d near-miss pairs\n", s.c_str(), c.first,
                c.second);
  }
  const bool verbose = flags->Bool("verbose");
  if (split == "all") {
    for (const auto& [s, c] : counts) Report(scored, s, static_cast<float>(*threshold), verbose);
    Report(scored, "all", static_cast<float>(*threshold), false);
  } else {
    Report(scored, split, static_cast<float>(*threshold), verbose);
  }
  if (flags->Bool("bench")) {
    return RunBench(**embedder, *pairs, static_cast<int>(*entries), static_cast<int>(*lookups),
                    static_cast<float>(*threshold));
  }
  return 0;
}

}  // namespace
}  // namespace saola::cache

int main(int argc, char** argv) { return saola::cache::Main(argc, argv); }
