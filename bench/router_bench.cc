// saola-router-bench: what the router costs and what its caches and routing buy, measured with
// real processes on loopback: saola-worker serve (SmolLM2-135M, --threads 1 each), saola-router
// serve, and a redis-server for the Redis exact cache. The client is C++ gRPC (sync API, one
// channel per client thread), so client overhead stays small next to what is measured.
//
// Parts (--parts abcd selects them):
//
//   (a) Router added latency. One worker, one router in front of it. The same greedy request
//       (short chat prompt, --max-tokens tokens, ignore_eos, cache.bypass so nothing is cached)
//       is sent --requests times to the worker directly and --requests times through the
//       router, interleaved pair by pair (the order within a pair alternates), so drift in the
//       machine's load hits both series alike. TTFT and end-to-end p50/p99 for both, their
//       differences, and the median of the per-pair differences (the most drift-proof figure).
//       The worker's prefix cache holds the prompt after the first call, for both series alike.
//   (b) Exact-hit latency through the router: the memory backend and the Redis backend (a
//       redis-server on loopback started here). One entry is written (a miss), then --exact-hits
//       sequential hits; p50/p99/p99.9/max of the client-side end-to-end call time.
//   (c) Semantic-hit latency through the router (--semantic-cache): --semantic-entries prompts
//       from bench/semantic/pairs.tsv ("para" rows) are answered and stored, then
//       --semantic-hits lookups of their paraphrases (cache.semantic, temperature 0), round
//       robin; only paraphrases that hit when probed are used (the count is printed). A lookup
//       is an exact-cache miss, a MiniLM embedding and a FAISS search; a semantic hit is not
//       written back to the exact cache, so every lookup takes that path. Exact hits on the
//       same router are timed too, for scale.
//   (d) Routing policies on a multi-turn chat workload, for each worker count in --workers:
//       --conversations concurrent conversations (one client thread each) of --turns turns; each
//       conversation has its own ~250-token system message, and each turn resends the whole
//       conversation plus the previous answer and a new user message (--turn-tokens tokens,
//       ignore_eos, cache.bypass). Fresh workers and a fresh router per policy, so every policy
//       starts with empty KV caches; --rounds repeats every policy, its order rotated per round.
//       Reported per run: prompt tokens served from the workers' prefix
//       caches (Finish.usage.cached_prompt_tokens / prompt_tokens), TTFT p50/p99, end-to-end
//       p50, wall time, requests per worker (the workers' saola_requests_total) and the
//       router's saola_router_routing_decisions_total by reason.
//
// Everything shares the machine's cores: with 2 cores, 4 workers x 1 thread oversubscribe, and
// the router and client take CPU from the workers. The header of the output says so and prints
// the load average before and after each part.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/router_bench_policies.h"
#include "bench/router_bench_support.h"
#include "common/flags.h"
#include "tests/support/redis_server.h"

namespace saola::bench {
namespace {

using saola::v1::GenerateRequest;

constexpr char kUsage[] = R"(usage: saola-router-bench [flags]

  --parts LETTERS         which parts to run, any of abcd (default abcd)
  --requests N            (a) calls per series, direct and through the router (default 100)
  --max-tokens N          (a) tokens per call (default 8)
  --exact-hits N          (b) exact hits per backend (default 2000)
  --semantic-entries N    (c) entries stored (default 8)
  --semantic-hits N       (c) paraphrase lookups (default 500)
  --workers LIST          (d) worker counts, e.g. 2,4 (default 2,4)
  --policies LIST         (d) default prefix-aware,least-load,round-robin
  --conversations N       (d) concurrent conversations (default 12)
  --turns N               (d) turns per conversation (default 4)
  --turn-tokens N         (d) tokens generated per turn (default 16)
  --rounds N              (d) runs of every policy, order rotated per round (default 2)
  --kv-cache-mb N         KV cache per worker (default 256)
  --bin-dir DIR           where saola-worker and saola-router are (default: this binary's dir)
  --model PATH            default models/SmolLM2-135M-Instruct.Q4_1.gguf in the source tree
  --semantic-model-dir D  default models/all-MiniLM-L6-v2 in the source tree
  --pairs PATH            default bench/semantic/pairs.tsv in the source tree
  --log-dir DIR           the servers' stderr (default: a new /tmp/saola-router-bench-* dir)
)";

struct Options {
  std::string parts = "abcd";
  int requests = 100;
  int max_tokens = 8;
  int exact_hits = 2000;
  int semantic_entries = 8;
  int semantic_hits = 500;
  std::vector<int> worker_counts = {2, 4};
  std::vector<std::string> policies = {"prefix-aware", "least-load", "round-robin"};
  int conversations = 12;
  int turns = 4;
  int turn_tokens = 16;
  int rounds = 2;
  int kv_cache_mb = 256;
  std::string bin_dir;
  std::string model;
  std::string semantic_model_dir;
  std::string pairs;
  std::string log_dir;
};

absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args) {
  absl::StatusOr<cli::Flags> flags = cli::Flags::Parse(
      args,
      {"parts", "requests", "max-tokens", "exact-hits", "semantic-entries", "semantic-hits",
       "workers", "policies", "conversations", "turns", "turn-tokens", "rounds", "kv-cache-mb",
       "bin-dir", "model", "semantic-model-dir", "pairs", "log-dir"},
      {});
  if (!flags.ok()) return flags.status();
  Options o;
  const std::string source = SAOLA_SOURCE_DIR;
  o.bin_dir = std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
  o.model = source + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  o.semantic_model_dir = source + "/models/all-MiniLM-L6-v2";
  o.pairs = source + "/bench/semantic/pairs.tsv";
  for (auto [name, field] : std::initializer_list<std::pair<const char*, std::string*>>{
           {"parts", &o.parts},
           {"bin-dir", &o.bin_dir},
           {"model", &o.model},
           {"semantic-model-dir", &o.semantic_model_dir},
           {"pairs", &o.pairs},
           {"log-dir", &o.log_dir}}) {
    if (flags->Has(name)) *field = *flags->String(name);
  }
  if (o.parts.empty() || o.parts.find_first_not_of("abcd") != std::string::npos) {
    return absl::InvalidArgumentError("--parts: letters among abcd");
  }
  for (auto [name, field, max] : std::initializer_list<std::tuple<const char*, int*, int>>{
           {"requests", &o.requests, 100000},
           {"max-tokens", &o.max_tokens, 1024},
           {"exact-hits", &o.exact_hits, 1000000},
           {"semantic-entries", &o.semantic_entries, 80},
           {"semantic-hits", &o.semantic_hits, 1000000},
           {"conversations", &o.conversations, 256},
           {"turns", &o.turns, 32},
           {"turn-tokens", &o.turn_tokens, 512},
           {"rounds", &o.rounds, 100},
           {"kv-cache-mb", &o.kv_cache_mb, 1 << 16}}) {
    absl::StatusOr<int64_t> v = flags->Int(name, *field, 1, max);
    if (!v.ok()) return v.status();
    *field = static_cast<int>(*v);
  }
  if (flags->Has("workers")) {
    o.worker_counts.clear();
    for (absl::string_view s : absl::StrSplit(*flags->String("workers"), ',')) {
      int n = 0;
      if (!absl::SimpleAtoi(s, &n) || n < 1 || n > 16) {
        return absl::InvalidArgumentError("--workers: a list of counts in 1..16, e.g. 2,4");
      }
      o.worker_counts.push_back(n);
    }
  }
  if (flags->Has("policies")) {
    o.policies = absl::StrSplit(*flags->String("policies"), ',', absl::SkipEmpty());
  }
  if (o.log_dir.empty()) {
    std::string dir = "/tmp/saola-router-bench-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    o.log_dir = dir;
  }
  return o;
}

GenerateRequest ChatRequest(const std::string& content, int max_tokens) {
  GenerateRequest r;
  saola::v1::ChatMessage* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content(content);
  r.mutable_sampling()->set_temperature(0);
  r.set_max_tokens(max_tokens);
  return r;
}

// Milliseconds with 3 decimals; never "-0.000".
std::string Ms(double v) { return absl::StrFormat("%.3f", std::abs(v) < 0.0005 ? 0.0 : v); }

void PrintRule() { std::printf("%s\n", std::string(96, '-').c_str()); }

// ---------------------------------------------------------------------------------------------
// (a) Router added latency

absl::Status RunAddedLatency(const Options& o, const ServerProcess& worker,
                             const ServerProcess& router) {
  std::printf("\n(a) Router added latency: 1 worker (--threads 1), router in front of it; the "
              "same request\n    sent %d times direct and %d times via the router, interleaved; "
              "chat prompt, greedy,\n    %d tokens, ignore_eos, cache.bypass. load avg %s\n",
              o.requests, o.requests, o.max_tokens, LoadAverage().c_str());
  GenerateRequest request = ChatRequest("Write one sentence about the sea.", o.max_tokens);
  request.set_ignore_eos(true);
  request.mutable_cache()->set_bypass(true);
  LlmClient direct(worker.target());
  LlmClient routed(router.target());
  for (int i = 0; i < 5; ++i) {  // warm-up: connections, the worker's prefix cache
    direct.Generate(request);
    routed.Generate(request);
  }
  std::vector<double> ttft[2], e2e[2], ttft_diff, e2e_diff;
  int failures = 0;
  for (int i = 0; i < o.requests; ++i) {
    CallResult r[2];
    const int first = i % 2;
    for (int k : {first, 1 - first}) r[k] = (k == 0 ? direct : routed).Generate(request);
    if (!r[0].status.ok() || !r[1].status.ok() ||
        r[0].finish.usage().completion_tokens() != r[1].finish.usage().completion_tokens()) {
      ++failures;
      continue;
    }
    for (int k : {0, 1}) {
      ttft[k].push_back(r[k].ttft_ms);
      e2e[k].push_back(r[k].e2e_ms);
    }
    ttft_diff.push_back(r[1].ttft_ms - r[0].ttft_ms);
    e2e_diff.push_back(r[1].e2e_ms - r[0].e2e_ms);
  }
  if (ttft[0].empty()) return absl::InternalError("(a): every call failed");
  PrintRule();
  std::printf("%-28s %12s %12s %12s %12s\n", "ms", "TTFT p50", "TTFT p99", "e2e p50", "e2e p99");
  const char* names[2] = {"direct to worker", "through router"};
  for (int k : {0, 1}) {
    std::printf("%-28s %12s %12s %12s %12s\n", names[k], Ms(Percentile(ttft[k], 0.5)).c_str(),
                Ms(Percentile(ttft[k], 0.99)).c_str(), Ms(Percentile(e2e[k], 0.5)).c_str(),
                Ms(Percentile(e2e[k], 0.99)).c_str());
  }
  std::printf("%-28s %12s %12s %12s %12s\n", "router added (difference)",
              Ms(Percentile(ttft[1], 0.5) - Percentile(ttft[0], 0.5)).c_str(),
              Ms(Percentile(ttft[1], 0.99) - Percentile(ttft[0], 0.99)).c_str(),
              Ms(Percentile(e2e[1], 0.5) - Percentile(e2e[0], 0.5)).c_str(),
              Ms(Percentile(e2e[1], 0.99) - Percentile(e2e[0], 0.99)).c_str());
  std::printf("%-28s %12s %12s %12s %12s\n", "per-pair difference, p50",
              Ms(Percentile(ttft_diff, 0.5)).c_str(), "", Ms(Percentile(e2e_diff, 0.5)).c_str(),
              "");
  PrintRule();
  std::printf("pairs measured %zu, failed or mismatched %d; load avg after %s\n", ttft[0].size(),
              failures, LoadAverage().c_str());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// (b) Exact-hit latency

// Sends `request` until the router answers it from `source` (the write after a miss is
// asynchronous). False after ~10 s.
bool WaitForCacheSource(LlmClient& client, const GenerateRequest& request,
                        saola::v1::CacheSource source) {
  for (int i = 0; i < 200; ++i) {
    const CallResult r = client.Generate(request);
    if (r.status.ok() && r.finish.cache_source() == source) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

struct HitSeries {
  std::vector<double> e2e;  // calls answered by the expected cache
  int not_from_cache = 0;   // answered, but by the model (or another cache)
  int failed = 0;           // a non-OK status
};

HitSeries TimeHits(LlmClient& client, const std::vector<GenerateRequest>& requests, int n,
                   saola::v1::CacheSource source) {
  HitSeries s;
  for (int i = 0; i < std::min(n, 100); ++i) client.Generate(requests[i % requests.size()]);
  for (int i = 0; i < n; ++i) {
    const CallResult r = client.Generate(requests[i % requests.size()]);
    if (!r.status.ok()) {
      ++s.failed;
      continue;
    }
    if (r.finish.cache_source() != source) {
      ++s.not_from_cache;
      continue;
    }
    s.e2e.push_back(r.e2e_ms);
  }
  return s;
}

void PrintHitHeader(const char* what) {
  PrintRule();
  std::printf("%-24s %6s %9s %9s %9s %9s %9s %8s %6s\n", what, "hits", "p50", "p99", "p99.9",
              "max", "min", "misses", "failed");
}

void PrintHitRow(const std::string& name, const HitSeries& s) {
  std::printf("%-24s %6zu %9s %9s %9s %9s %9s %8d %6d\n", name.c_str(), s.e2e.size(),
              Ms(Percentile(s.e2e, 0.5)).c_str(), Ms(Percentile(s.e2e, 0.99)).c_str(),
              Ms(Percentile(s.e2e, 0.999)).c_str(),
              Ms(s.e2e.empty() ? 0 : *std::max_element(s.e2e.begin(), s.e2e.end())).c_str(),
              Ms(s.e2e.empty() ? 0 : *std::min_element(s.e2e.begin(), s.e2e.end())).c_str(),
              s.not_from_cache, s.failed);
}

absl::Status RunExactHits(const Options& o, Cluster& cluster, const ServerProcess& worker) {
  std::printf("\n(b) Exact-hit latency through the router: one entry (chat prompt, 16 tokens), "
              "then %d\n    sequential hits per backend; client-side end-to-end call time. "
              "load avg %s\n",
              o.exact_hits, LoadAverage().c_str());
  absl::StatusOr<std::unique_ptr<testing::RedisServer>> redis = testing::RedisServer::Start();
  if (!redis.ok()) return redis.status();
  const GenerateRequest request = ChatRequest("Name three primary colors.", 16);
  std::vector<std::pair<std::string, HitSeries>> rows;
  std::vector<double> backend_errors;
  for (const std::string backend : {"memory", "redis"}) {
    std::vector<std::string> flags;
    if (backend == "redis") flags = {"--redis", (*redis)->url()};
    absl::StatusOr<std::unique_ptr<ServerProcess>> router = cluster.StartRouter({&worker}, flags);
    if (!router.ok()) return router.status();
    LlmClient client((*router)->target());
    if (!WaitForCacheSource(client, request, saola::v1::EXACT)) {
      return absl::InternalError(absl::StrCat("(b) ", backend, ": no exact hit"));
    }
    rows.emplace_back(backend, TimeHits(client, {request}, o.exact_hits, saola::v1::EXACT));
    backend_errors.push_back(SumSeries(ScrapeMetrics((*router)->metrics_port()),
                                       "saola_router_exact_cache_errors_total"));
  }
  PrintHitHeader("backend (ms)");
  for (const auto& [name, s] : rows) PrintHitRow(name, s);
  PrintRule();
  std::printf("misses: answered by the model instead; the router's "
              "saola_router_exact_cache_errors_total: memory %.0f, redis %.0f\n",
              backend_errors[0], backend_errors[1]);
  const double redis_p99 = Percentile(rows[1].second.e2e, 0.99);
  std::printf("target: Redis p99 <= 2 ms: %s (%.3f ms); load avg after %s\n",
              redis_p99 <= 2.0 ? "met" : "MISSED", redis_p99, LoadAverage().c_str());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// (c) Semantic-hit latency

// The first `n` (stored, paraphrase) pairs labelled "para" in pairs.tsv.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadParaphrases(
    const std::string& path, int n) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string line;
  while (static_cast<int>(pairs.size()) < n && std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() == 5 && f[1] == "para") pairs.emplace_back(f[3], f[4]);
  }
  return pairs;
}

GenerateRequest SemanticRequest(const std::string& text) {
  GenerateRequest r = ChatRequest(text, 16);
  r.mutable_cache()->set_semantic(true);
  return r;
}

absl::Status RunSemanticHits(const Options& o, Cluster& cluster, const ServerProcess& worker) {
  std::printf("\n(c) Semantic-hit latency through the router (--semantic-cache, memory exact "
              "cache on):\n    %d entries from %s, then %d paraphrase lookups "
              "(cache.semantic, temperature 0). load avg %s\n",
              o.semantic_entries, std::filesystem::path(o.pairs).filename().c_str(),
              o.semantic_hits, LoadAverage().c_str());
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> pairs =
      ReadParaphrases(o.pairs, o.semantic_entries);
  if (!pairs.ok()) return pairs.status();
  absl::StatusOr<std::unique_ptr<ServerProcess>> router = cluster.StartRouter(
      {&worker}, {"--semantic-cache", "--semantic-model-dir", o.semantic_model_dir});
  if (!router.ok()) return router.status();
  LlmClient client((*router)->target());
  std::vector<GenerateRequest> hits;
  for (const auto& [stored, paraphrase] : *pairs) {
    const CallResult miss = client.Generate(SemanticRequest(stored));
    if (!miss.status.ok()) return absl::InternalError(miss.status.error_message());
    // The stored text answers from the exact cache once the write is done; the semantic entry
    // is written by the same path.
    WaitForCacheSource(client, SemanticRequest(stored), saola::v1::EXACT);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    GenerateRequest lookup = SemanticRequest(paraphrase);
    const CallResult probe = client.Generate(lookup);
    if (probe.status.ok() && probe.finish.cache_source() == saola::v1::SEMANTIC) {
      hits.push_back(lookup);
    }
  }
  if (hits.empty()) return absl::InternalError("(c): no paraphrase hit the semantic cache");
  HitSeries exact = TimeHits(client, {SemanticRequest(pairs->front().first)},
                             std::min(o.semantic_hits, 500), saola::v1::EXACT);
  HitSeries semantic = TimeHits(client, hits, o.semantic_hits, saola::v1::SEMANTIC);
  PrintHitHeader("lookup (ms)");
  PrintHitRow("semantic hit", semantic);
  PrintHitRow("exact hit (same router)", exact);
  PrintRule();
  std::printf("%zu of %zu paraphrases hit at the default threshold (0.85) and were used; "
              "load avg after %s\n",
              hits.size(), pairs->size(), LoadAverage().c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace saola::bench

int main(int argc, char** argv) {
  using namespace saola::bench;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  absl::StatusOr<Options> o = ParseOptions(args);
  if (!o.ok()) {
    std::fprintf(stderr, "saola-router-bench: %s\n%s", o.status().ToString().c_str(), kUsage);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string> all(argv, argv + argc);
  std::printf("command: %s\n", absl::StrJoin(all, " ").c_str());
  std::printf("machine: %u cores (nproc %ld); load avg at start %s\n",
              std::thread::hardware_concurrency(), sysconf(_SC_NPROCESSORS_ONLN),
              LoadAverage().c_str());
  std::printf("note: workers run --threads 1 each; client, router, workers (and redis) share the "
              "cores%s\n",
              std::thread::hardware_concurrency() <= 2 ? " (a 2-core machine)" : "");
  std::printf("model %s; server logs in %s\n", o->model.c_str(), o->log_dir.c_str());
  const auto start = std::chrono::steady_clock::now();
  int rc = 0;
  auto report = [&rc](const absl::Status& s) {
    if (!s.ok()) {
      std::printf("FAILED: %s\n", s.ToString().c_str());
      rc = 1;
    }
  };
  Cluster cluster({.bin_dir = o->bin_dir,
                   .model = o->model,
                   .log_dir = o->log_dir,
                   .kv_cache_mb = o->kv_cache_mb});
  if (o->parts.find_first_of("abc") != std::string::npos) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> worker = cluster.StartWorker();
    if (!worker.ok()) {
      report(worker.status());
    } else {
      if (o->parts.find('a') != std::string::npos) {
        absl::StatusOr<std::unique_ptr<ServerProcess>> router =
            cluster.StartRouter({worker->get()}, {});
        report(router.ok() ? RunAddedLatency(*o, **worker, **router) : router.status());
      }
      if (o->parts.find('b') != std::string::npos) report(RunExactHits(*o, cluster, **worker));
      if (o->parts.find('c') != std::string::npos) report(RunSemanticHits(*o, cluster, **worker));
    }
  }
  if (o->parts.find('d') != std::string::npos) {
    for (int n : o->worker_counts) {
      report(RunPolicies(cluster, {.num_workers = n,
                                   .policies = o->policies,
                                   .conversations = o->conversations,
                                   .turns = o->turns,
                                   .turn_tokens = o->turn_tokens,
                                   .rounds = o->rounds}));
    }
  }
  std::printf("\ntotal %.1f s; load avg at end %s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              LoadAverage().c_str());
  return rc;
}
