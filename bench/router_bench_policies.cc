// Part (d) of saola-router-bench: prefix-aware vs least-load vs round-robin on multi-turn chats.
//
// The workload: C conversations run at once, one client thread each, T turns in order within a
// conversation. Conversation c has its own system message (about 250 tokens of seeded words,
// different from the first block on, so no two conversations share a cached KV block). Turn t
// sends the system message, every earlier user message and answer, and a new user message, so
// its prompt extends turn t-1's prompt: a worker that served turn t-1 holds most of turn t's
// prompt in its prefix cache. Each turn is greedy, ignore_eos, turn_tokens long, cache.bypass
// (the router's response caches stay out of it).
//
// Per policy, fresh workers and a fresh router: every policy starts with empty KV caches and the
// same workload (greedy answers, so the same conversations up to batch-dependent rounding).
// `rounds` repeats every policy, rotating their order each round, so a burst of other load on a
// shared machine does not land on one policy only; every run is its own row.
//
// What is printed per policy:
//   cached    sum(Finish.usage.cached_prompt_tokens) / sum(prompt_tokens), all turns, and for
//             turns 2+ only (turn 1 cannot hit: its system message is new)
//   TTFT      p50, p99 over every request (client side, through the router), and p50 over
//             turns 2+ (turn 1 is the same cold burst of prefills under every policy)
//   e2e p50   client side
//   wall      first request sent to last answer received
//   per worker  requests each worker finished (its saola_requests_total)
//   decisions the router's saola_router_routing_decisions_total by reason
#include "bench/router_bench_policies.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace saola::bench {
namespace {

using saola::v1::GenerateRequest;

// Words that the SmolLM2 tokenizer mostly keeps whole, for the seeded system messages.
constexpr const char* kWords[] = {
    "river",   "garden",  "engine",  "market",  "winter",  "silver",  "harbor",  "forest",
    "station", "letter",  "window",  "mountain", "bridge", "copper",  "village", "library",
    "summer",  "castle",  "island",  "kitchen", "machine", "orange",  "planet",  "signal",
    "teacher", "valley",  "weather", "yellow",  "basket",  "candle",  "doctor",  "feather",
    "ground",  "hunter",  "jacket",  "ladder",  "meadow",  "needle",  "office",  "pepper",
    "rabbit",  "saddle",  "ticket",  "tunnel",  "wagon",   "anchor",  "barrel",  "cotton",
    "desert",  "farmer",  "glass",   "hammer",  "lantern", "mirror",  "parrot",  "quarry",
    "ribbon",  "shadow",  "timber",  "violin",  "whistle", "arrow",   "button",  "dragon"};
constexpr int kNumWords = sizeof(kWords) / sizeof(kWords[0]);

std::string SystemMessage(int conversation, std::mt19937& rng) {
  std::string text = absl::StrCat("Notes ", conversation, ":");
  for (int i = 0; i < 240; ++i) {
    absl::StrAppend(&text, " ", kWords[rng() % kNumWords]);
    if (i % 12 == 11) text += ".";
  }
  return text + " Answer questions about these notes briefly.";
}

struct TurnRecord {
  bool ok = false;
  int turn = 0;
  uint32_t prompt_tokens = 0;
  uint32_t cached_prompt_tokens = 0;
  double ttft_ms = 0;
  double e2e_ms = 0;
  std::string error;
};

// One conversation, turn after turn, on its own channel.
void RunConversation(const std::string& target, int conversation, const PolicyWorkload& w,
                     const std::atomic<bool>& go, std::vector<TurnRecord>* out) {
  std::mt19937 rng(1000 + conversation);
  GenerateRequest request;
  saola::v1::Chat* chat = request.mutable_chat();
  saola::v1::ChatMessage* system = chat->add_messages();
  system->set_role("system");
  system->set_content(SystemMessage(conversation, rng));
  request.mutable_sampling()->set_temperature(0);
  request.set_max_tokens(w.turn_tokens);
  request.set_ignore_eos(true);
  request.mutable_cache()->set_bypass(true);
  LlmClient client(target);
  while (!go.load()) std::this_thread::yield();
  for (int t = 1; t <= w.turns; ++t) {
    saola::v1::ChatMessage* user = chat->add_messages();
    user->set_role("user");
    user->set_content(absl::StrCat("Question ", t, ": what do the notes say about the ",
                                   kWords[rng() % kNumWords], "?"));
    const CallResult r = client.Generate(request, 300000);
    TurnRecord rec;
    rec.turn = t;
    rec.ok = r.status.ok();
    rec.error = r.status.error_message();
    rec.prompt_tokens = r.finish.usage().prompt_tokens();
    rec.cached_prompt_tokens = r.finish.usage().cached_prompt_tokens();
    rec.ttft_ms = r.ttft_ms;
    rec.e2e_ms = r.e2e_ms;
    out->push_back(rec);
    if (!rec.ok) return;
    saola::v1::ChatMessage* answer = chat->add_messages();
    answer->set_role("assistant");
    answer->set_content(r.text);
  }
}

struct PolicyRow {
  std::string policy;
  int round = 0;
  std::vector<TurnRecord> records;
  double wall_s = 0;
  std::vector<double> per_worker;
  std::string decisions;
};

absl::StatusOr<PolicyRow> RunOnePolicy(Cluster& cluster, const PolicyWorkload& w,
                                       const std::string& policy) {
  std::vector<std::unique_ptr<ServerProcess>> workers;
  std::vector<const ServerProcess*> raw;
  for (int i = 0; i < w.num_workers; ++i) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> worker = cluster.StartWorker();
    if (!worker.ok()) return worker.status();
    raw.push_back(worker->get());
    workers.push_back(*std::move(worker));
  }
  absl::StatusOr<std::unique_ptr<ServerProcess>> router =
      cluster.StartRouter(raw, {"--policy", policy});
  if (!router.ok()) return router.status();
  std::vector<double> before;
  for (const ServerProcess* p : raw) {
    before.push_back(SumSeries(ScrapeMetrics(p->metrics_port()), "saola_requests_total"));
  }

  std::vector<std::vector<TurnRecord>> records(w.conversations);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < w.conversations; ++c) {
    threads.emplace_back(RunConversation, (*router)->target(), c, std::cref(w), std::cref(go),
                         &records[c]);
  }
  const auto start = std::chrono::steady_clock::now();
  go.store(true);
  for (std::thread& t : threads) t.join();
  PolicyRow row;
  row.policy = policy;
  row.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (std::vector<TurnRecord>& c : records) {
    for (TurnRecord& r : c) {
      if (!r.ok) return absl::InternalError(absl::StrCat(policy, ": a request failed: ", r.error));
      row.records.push_back(r);
    }
  }
  // A worker counts a request once its stream ends; the client may see the end first.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (size_t i = 0; i < raw.size(); ++i) {
    row.per_worker.push_back(
        SumSeries(ScrapeMetrics(raw[i]->metrics_port()), "saola_requests_total") - before[i]);
  }
  const std::string router_metrics = ScrapeMetrics((*router)->metrics_port());
  std::vector<std::string> decisions;
  for (const char* reason : {"prefix_hit", "load_balance", "least_load", "round_robin"}) {
    const double n = SumSeries(router_metrics, "saola_router_routing_decisions_total",
                               absl::StrCat("reason=\"", reason, "\""));
    if (n > 0) decisions.push_back(absl::StrFormat("%s=%.0f", reason, n));
  }
  row.decisions = absl::StrJoin(decisions, " ");
  return row;
}

void PrintRow(const PolicyRow& row) {
  uint64_t prompt = 0, cached = 0, prompt_later = 0, cached_later = 0;
  std::vector<double> ttft, ttft_later, e2e;
  for (const TurnRecord& r : row.records) {
    prompt += r.prompt_tokens;
    cached += r.cached_prompt_tokens;
    if (r.turn >= 2) {
      prompt_later += r.prompt_tokens;
      cached_later += r.cached_prompt_tokens;
      ttft_later.push_back(r.ttft_ms);
    }
    ttft.push_back(r.ttft_ms);
    e2e.push_back(r.e2e_ms);
  }
  std::vector<std::string> per_worker;
  for (double n : row.per_worker) per_worker.push_back(absl::StrFormat("%.0f", n));
  const std::string ratio = absl::StrFormat(
      "%.3f (%llu/%llu)", prompt > 0 ? static_cast<double>(cached) / prompt : 0.0,
      static_cast<unsigned long long>(cached), static_cast<unsigned long long>(prompt));
  const std::string name = absl::StrCat(row.policy, " #", row.round + 1);
  std::printf("%-16s %-22s %8.3f %8.1f %8.1f %8.1f %8.1f %7.1f  %-12s %s\n", name.c_str(),
              ratio.c_str(),
              prompt_later > 0 ? static_cast<double>(cached_later) / prompt_later : 0.0,
              Percentile(ttft, 0.5), Percentile(ttft, 0.99), Percentile(ttft_later, 0.5),
              Percentile(e2e, 0.5), row.wall_s, absl::StrJoin(per_worker, "/").c_str(),
              row.decisions.c_str());
}

}  // namespace

absl::Status RunPolicies(Cluster& cluster, const PolicyWorkload& w) {
  const unsigned cores = std::thread::hardware_concurrency();
  std::printf("\n(d) Routing policies, %d workers x --threads 1 (%u cores%s): %d conversations "
              "x %d turns,\n    %d tokens per turn, ignore_eos, cache.bypass; fresh workers and "
              "router per run; %d round(s). load avg %s\n",
              w.num_workers, cores,
              static_cast<unsigned>(w.num_workers) > cores ? ", oversubscribed" : "",
              w.conversations, w.turns, w.turn_tokens, w.rounds, LoadAverage().c_str());
  std::vector<PolicyRow> rows;
  const int num_policies = static_cast<int>(w.policies.size());
  for (int round = 0; round < w.rounds; ++round) {
    for (int i = 0; i < num_policies; ++i) {
      const std::string& policy = w.policies[(i + round) % num_policies];
      absl::StatusOr<PolicyRow> row = RunOnePolicy(cluster, w, policy);
      if (!row.ok()) return row.status();
      row->round = round;
      rows.push_back(*std::move(row));
      std::printf("    ran %s #%d: %.1f s, load avg %s\n", policy.c_str(), round + 1,
                  rows.back().wall_s, LoadAverage().c_str());
    }
  }
  const std::string rule(136, '-');
  std::printf("%s\n", rule.c_str());
  std::printf("%-16s %-22s %8s %8s %8s %8s %8s %7s  %-12s %s\n", "policy #round",
              "cached/prompt tokens", "turns 2+", "TTFT p50", "TTFT p99", "TTFT p50", "e2e p50",
              "wall s", "req/worker", "routing decisions");
  std::printf("%-16s %-22s %8s %8s %8s %8s %8s\n", "", "", "cached", "ms", "ms", "t2+ ms", "ms");
  for (const std::string& policy : w.policies) {
    for (const PolicyRow& row : rows) {
      if (row.policy == policy) PrintRow(row);
    }
  }
  std::printf("%s\n", rule.c_str());
  std::printf("load avg after %s\n", LoadAverage().c_str());
  return absl::OkStatus();
}

}  // namespace saola::bench
