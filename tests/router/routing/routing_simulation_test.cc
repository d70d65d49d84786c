// A seeded discrete-event simulation of a multi-turn chat workload over simulated workers, run
// through each routing policy, and a multi-threaded smoke test of the policies.
//
// The workload: 64 conversations x 6 turns, 4 workers, 16-token blocks. Each turn's prompt is
// the previous prompt + the previous reply + a new user message, hashed with the real
// common::FullBlockHashes. Conversations start at random times in the first 10 s; a reply takes
// 10 ms a token (x 1.05 per request already running on the worker) after a prefill of 2 ms per
// uncached block; the next turn follows 0.5-5 s after the reply. Requests overlap (tens in
// flight); the simulation keeps each worker's in_flight exact, as the router's pool does.
//
// Each simulated worker has an LRU prefix cache of block hashes (2048 blocks, deepest blocks
// evicted first, as a radix cache evicts leaves) and publishes KvEvents (a snapshot at start,
// then a batch per change, 5 ms late) to the policy. "Cached blocks" is the ground truth: the
// leading blocks of the prompt the chosen worker really held when the request arrived.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/block_hash.h"
#include "gtest/gtest.h"
#include "router/routing/load.h"
#include "router/routing/routing_policy.h"

namespace saola::routing {
namespace {

constexpr int kWorkers = 4;
constexpr int kConversations = 64;
constexpr int kTurns = 6;
constexpr int kBlockSize = 16;
constexpr char kTenant[] = "sim";

// One worker's prefix cache: block hashes in LRU order, publishing what changes.
class SimWorkerCache {
 public:
  explicit SimWorkerCache(int capacity) : capacity_(capacity) {}

  // Leading blocks of `hashes` held now.
  int32_t Leading(const std::vector<uint64_t>& hashes) const {
    int32_t n = 0;
    while (n < static_cast<int32_t>(hashes.size()) && tick_of_.contains(hashes[n])) ++n;
    return n;
  }

  // Stores the chain (touching held blocks), evicting LRU blocks beyond capacity; the changes go
  // into `batch`. Parents are touched after their children, so the deepest blocks go first.
  void Store(const std::vector<uint64_t>& hashes, saola::v1::KvEventBatch& batch) {
    saola::v1::KvBlocksStored* run = nullptr;
    for (size_t i = 0; i < hashes.size(); ++i) {
      if (tick_of_.contains(hashes[i])) {
        run = nullptr;
        continue;
      }
      if (run == nullptr) {
        run = batch.add_stored();
        run->set_parent_hash(i == 0 ? TenantRootHash(kTenant) : hashes[i - 1]);
      }
      run->add_block_hashes(hashes[i]);
      tick_of_[hashes[i]] = 0;
    }
    for (size_t i = hashes.size(); i-- > 0;) Touch(hashes[i]);
    while (static_cast<int>(tick_of_.size()) > capacity_) {
      auto oldest = by_tick_.begin();
      batch.add_removed(oldest->second);
      tick_of_.erase(oldest->second);
      by_tick_.erase(oldest);
    }
  }

  double usage() const { return static_cast<double>(tick_of_.size()) / capacity_; }

 private:
  void Touch(uint64_t h) {
    uint64_t& tick = tick_of_[h];
    if (tick != 0) by_tick_.erase(tick);
    tick = ++clock_;
    by_tick_[tick] = h;
  }

  const int capacity_;
  uint64_t clock_ = 0;
  absl::flat_hash_map<uint64_t, uint64_t> tick_of_;  // 0: being inserted
  std::map<uint64_t, uint64_t> by_tick_;
};

struct SimConfig {
  std::string policy;
  uint64_t seed = 1;
  int system_prompt_tokens = 0;  // shared by every conversation (a hot prefix) when > 0
  int cache_blocks = 2048;
  bool kv_events = true;  // false: the workers publish nothing (routing history only)
};

struct SimResult {
  int64_t prompt_blocks = 0;
  int64_t cached_blocks = 0;  // ground truth on the chosen worker
  int64_t best_cached_blocks = 0;  // on the worker that held the most, for comparison
  int follow_ups = 0;
  int follow_ups_same_worker = 0;
  std::array<int, kWorkers> requests{};
  std::array<int, kWorkers> first_turns{};
  int max_in_flight_gap = 0;  // max over Picks of (max in_flight - min in_flight)
  int max_in_flight = 0;
  int bound_violations = 0;   // Picks whose choice broke the per-decision load bound
  std::map<std::string, int> reasons;

  double CachedRatio() const { return static_cast<double>(cached_blocks) / prompt_blocks; }
  double Stickiness() const { return static_cast<double>(follow_ups_same_worker) / follow_ups; }
  int MaxRequests() const { return *std::max_element(requests.begin(), requests.end()); }
  int MinRequests() const { return *std::min_element(requests.begin(), requests.end()); }
};

class Simulation {
 public:
  explicit Simulation(const SimConfig& config) : config_(config), rng_(config.seed) {
    auto policy = MakeRoutingPolicy(config.policy, options_);
    EXPECT_TRUE(policy.ok()) << policy.status();
    policy_ = std::move(*policy);
    for (int w = 0; w < kWorkers; ++w) caches_.emplace_back(config.cache_blocks);
    std::uniform_int_distribution<int32_t> token(3, 30'000);
    for (int i = 0; i < config.system_prompt_tokens; ++i) system_prompt_.push_back(token(rng_));
  }

  SimResult Run() {
    for (int w = 0; w < kWorkers && config_.kv_events; ++w) {
      saola::v1::KvEventBatch snapshot;
      snapshot.set_reset(true);
      policy_->OnKvEvents(w, snapshot);
    }
    conversations_.resize(kConversations);
    std::uniform_real_distribution<double> start(0, 10);
    for (int c = 0; c < kConversations; ++c) {
      conversations_[c].tokens = system_prompt_;
      At(start(rng_), [this, c] { Arrive(c); });
    }
    while (!events_.empty()) {
      Event e = events_.top();
      events_.pop();
      now_ = e.time;
      e.fn();
    }
    return result_;
  }

 private:
  struct Conversation {
    std::vector<int32_t> tokens;
    int turn = 0;
    int last_worker = -1;
  };
  struct Event {
    double time;
    uint64_t order;
    std::function<void()> fn;
    bool operator<(const Event& o) const {  // min-heap on (time, order)
      return time != o.time ? time > o.time : order > o.order;
    }
  };

  void At(double time, std::function<void()> fn) {
    events_.push({time, next_order_++, std::move(fn)});
  }

  void AppendRandom(std::vector<int32_t>& tokens, int lo, int hi) {
    std::uniform_int_distribution<int> len(lo, hi);
    std::uniform_int_distribution<int32_t> token(3, 30'000);
    for (int n = len(rng_); n > 0; --n) tokens.push_back(token(rng_));
  }

  // Publishes `batch` from worker w to the policy, 5 ms late, in order.
  void Publish(int w, saola::v1::KvEventBatch batch) {
    if (!config_.kv_events) return;
    if (batch.stored_size() == 0 && batch.removed_size() == 0) return;
    batch.set_sequence(++sequence_[w]);
    At(now_ + 0.005, [this, w, batch = std::move(batch)] { policy_->OnKvEvents(w, batch); });
  }

  void Arrive(int c) {
    Conversation& conv = conversations_[c];
    AppendRandom(conv.tokens, conv.turn == 0 ? 100 : 30, conv.turn == 0 ? 400 : 200);
    std::vector<uint64_t> hashes = FullBlockHashes(kTenant, conv.tokens, kBlockSize);

    std::vector<WorkerLoad> loads;
    for (int w = 0; w < kWorkers; ++w) {
      loads.push_back({.worker_id = w, .in_flight = in_flight_[w], .kv_usage = caches_[w].usage()});
    }
    const RouteRequest request{.tenant = kTenant, .block_hashes = hashes};
    const RouteDecision d = policy_->Pick(request, loads);
    policy_->OnRouted(d.worker_id, request);
    const int w = d.worker_id;

    // The per-decision bound of prefix_aware_policy.h: the chosen load is at most
    // max(min + abs, rel x min); least-load and round-robin are checked against it too.
    const auto [lo, hi] = std::minmax_element(in_flight_.begin(), in_flight_.end());
    const double bound = std::max<double>(*lo + options_.balance_abs_threshold,
                                          options_.balance_rel_threshold * *lo);
    if (config_.policy != "round-robin" && in_flight_[w] > bound) ++result_.bound_violations;
    ++in_flight_[w];
    result_.max_in_flight = std::max(result_.max_in_flight, in_flight_[w]);
    const auto [lo2, hi2] = std::minmax_element(in_flight_.begin(), in_flight_.end());
    result_.max_in_flight_gap = std::max(result_.max_in_flight_gap, *hi2 - *lo2);

    const int32_t cached = caches_[w].Leading(hashes);
    result_.prompt_blocks += static_cast<int64_t>(hashes.size());
    result_.cached_blocks += cached;
    int32_t best = 0;
    for (const SimWorkerCache& cache : caches_) best = std::max(best, cache.Leading(hashes));
    result_.best_cached_blocks += best;
    ++result_.requests[w];
    ++result_.reasons[d.reason];
    if (conv.turn == 0) {
      ++result_.first_turns[w];
    } else {
      ++result_.follow_ups;
      if (w == conv.last_worker) ++result_.follow_ups_same_worker;
    }
    conv.last_worker = w;

    std::uniform_int_distribution<int> reply_len(50, 300);
    const int reply_tokens = reply_len(rng_);
    const double slowdown = 1 + 0.05 * (in_flight_[w] - 1);
    const double prefill = 0.002 * static_cast<double>(hashes.size() - cached) * slowdown;
    const double decode = 0.010 * reply_tokens * slowdown;
    At(now_ + prefill, [this, w, hashes] {
      saola::v1::KvEventBatch batch;
      caches_[w].Store(hashes, batch);
      Publish(w, std::move(batch));
    });
    At(now_ + prefill + decode, [this, c, w, reply_tokens] {
      Conversation& conv = conversations_[c];
      AppendRandom(conv.tokens, reply_tokens, reply_tokens);
      saola::v1::KvEventBatch batch;  // the reply's full blocks are cached too
      caches_[w].Store(FullBlockHashes(kTenant, conv.tokens, kBlockSize), batch);
      Publish(w, std::move(batch));
      --in_flight_[w];
      if (++conv.turn < kTurns) {
        std::uniform_real_distribution<double> think(0.5, 5);
        At(now_ + think(rng_), [this, c] { Arrive(c); });
      }
    });
  }

  const SimConfig config_;
  const RoutingOptions options_;
  std::mt19937_64 rng_;
  std::unique_ptr<RoutingPolicy> policy_;
  std::vector<SimWorkerCache> caches_;
  std::vector<int32_t> system_prompt_;
  std::vector<Conversation> conversations_;
  std::array<int, kWorkers> in_flight_{};
  std::array<uint64_t, kWorkers> sequence_{};
  std::priority_queue<Event> events_;
  uint64_t next_order_ = 0;
  double now_ = 0;
  SimResult result_;
};

void Print(const std::string& name, const SimResult& r) {
  std::printf(
      "%-33s cached %5.1f%% (best worker %5.1f%%)  same-worker follow-ups %5.1f%%  requests/worker %d..%d  "
      "max in_flight %d  max in_flight gap %d  first turns %d/%d/%d/%d  reasons:",
      name.c_str(), 100 * r.CachedRatio(),
      100.0 * static_cast<double>(r.best_cached_blocks) / static_cast<double>(r.prompt_blocks), 100 * r.Stickiness(), r.MinRequests(),
      r.MaxRequests(), r.max_in_flight, r.max_in_flight_gap, r.first_turns[0], r.first_turns[1],
      r.first_turns[2], r.first_turns[3]);
  for (const auto& [reason, n] : r.reasons) std::printf(" %s=%d", reason.c_str(), n);
  std::printf("\n");
}

SimResult RunSim(const std::string& policy, int system_prompt_tokens, uint64_t seed,
                 bool kv_events = true, int cache_blocks = 2048) {
  SimResult r = Simulation({.policy = policy, .seed = seed,
                            .system_prompt_tokens = system_prompt_tokens,
                            .cache_blocks = cache_blocks, .kv_events = kv_events}).Run();
  Print(policy + (system_prompt_tokens > 0 ? " (hot prefix)" : "") +
            (kv_events ? "" : " (no events)") +
            (cache_blocks != 2048 ? " (cache " + std::to_string(cache_blocks) + ")" : "") +
            " seed " + std::to_string(seed),
        r);
  EXPECT_EQ(r.follow_ups, kConversations * (kTurns - 1));
  EXPECT_EQ(r.bound_violations, 0) << policy;
  return r;
}

constexpr uint64_t kSeeds[] = {1, 2, 3};

TEST(RoutingSimulationTest, PrefixAwareKeepsConversationsOnTheirWorkerWithoutPileUp) {
  for (uint64_t seed : kSeeds) {
    const SimResult prefix = RunSim("prefix-aware", 0, seed);
    const SimResult least = RunSim("least-load", 0, seed);
    const SimResult rr = RunSim("round-robin", 0, seed);
    // (a) Follow-up turns go where the conversation is cached.
    EXPECT_GE(prefix.Stickiness(), 0.90);
    EXPECT_GT(prefix.CachedRatio(), least.CachedRatio() + 0.3);
    EXPECT_GT(prefix.CachedRatio(), rr.CachedRatio() + 0.3);
    // (b) No pile-up: every decision kept the chosen worker within max(min + 4, 1.5 x min)
    // (checked in RunSim), and over the run no worker got 1.5x the requests of another.
    EXPECT_LE(prefix.MaxRequests(), 1.5 * prefix.MinRequests());
  }
}

TEST(RoutingSimulationTest, HotSharedSystemPromptDoesNotPileOnOneWorker) {
  // Every conversation starts with the same 1024-token (64-block) system prompt, which soon
  // every worker holds: a tie in match length that must spread by load.
  for (uint64_t seed : kSeeds) {
    const SimResult prefix = RunSim("prefix-aware", 1024, seed);
    const SimResult least = RunSim("least-load", 1024, seed);
    RunSim("round-robin", 1024, seed);
    EXPECT_GE(prefix.Stickiness(), 0.90);
    EXPECT_GT(prefix.CachedRatio(), least.CachedRatio());
    EXPECT_LE(prefix.MaxRequests(), 1.5 * prefix.MinRequests());
    // The first turns (which match only the system prompt) spread: no worker takes more than
    // 40% of them (25% is even).
    for (int n : prefix.first_turns) EXPECT_LE(n, 0.40 * kConversations);
  }
}

TEST(RoutingSimulationTest, WithoutKvEventsRoutingHistoryStillKeepsConversations) {
  for (uint64_t seed : kSeeds) {
    const SimResult prefix = RunSim("prefix-aware", 1024, seed, /*kv_events=*/false);
    EXPECT_GE(prefix.Stickiness(), 0.90);
    EXPECT_LE(prefix.MaxRequests(), 1.5 * prefix.MinRequests());
    for (int n : prefix.first_turns) EXPECT_LE(n, 0.40 * kConversations);
  }
}

TEST(RoutingSimulationTest, UnderCachePressureEventsTrackEvictions) {
  // 512 blocks a worker, about a third of what the workload stores there: blocks are evicted,
  // and removed events tell the policy so. With events the policy finds nearly every block that
  // some worker still holds; routing history cannot see evictions and guesses (it is printed for
  // comparison: it also changes which blocks survive, so the two runs' caches differ).
  for (uint64_t seed : kSeeds) {
    const SimResult events = RunSim("prefix-aware", 0, seed, true, 512);
    RunSim("prefix-aware", 0, seed, false, 512);
    const SimResult least = RunSim("least-load", 0, seed, true, 512);
    const SimResult rr = RunSim("round-robin", 0, seed, true, 512);
    EXPECT_GE(static_cast<double>(events.cached_blocks),
              0.97 * static_cast<double>(events.best_cached_blocks));
    EXPECT_GT(events.CachedRatio(), 2 * least.CachedRatio());
    EXPECT_GT(events.CachedRatio(), 2 * rr.CachedRatio());
  }
}

// Pick and OnRouted from several threads while another feeds events, loses streams and removes
// workers: no crash, no deadlock, every decision names a candidate. (Run under the default
// build; a TSan build would check the locking further.)
TEST(RoutingConcurrencyTest, PoliciesAreSafeToCallFromManyThreads) {
  for (const char* name : {"prefix-aware", "least-load", "round-robin"}) {
    RoutingOptions options;
    options.max_blocks_per_worker = 512;  // exercise eviction too
    auto made = MakeRoutingPolicy(name, options);
    ASSERT_TRUE(made.ok());
    RoutingPolicy& policy = **made;

    std::vector<std::vector<uint64_t>> prompts;
    for (int p = 0; p < 32; ++p) {
      std::vector<int32_t> tokens(16 * (4 + p % 8), p);
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] += static_cast<int32_t>(i / 64);
      prompts.push_back(FullBlockHashes("t", tokens, 16));
    }
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 rng(t);
        for (int i = 0; i < 20'000; ++i) {
          std::vector<WorkerLoad> workers;
          for (int w = 0; w < 4; ++w) {
            workers.push_back({.worker_id = w, .in_flight = static_cast<int32_t>(rng() % 8)});
          }
          const std::vector<uint64_t>& hashes = prompts[rng() % prompts.size()];
          const RouteRequest request{.tenant = "t", .block_hashes = hashes};
          const RouteDecision d = policy.Pick(request, workers);
          if (d.worker_id < 0 || d.worker_id >= 4 ||
              d.matched_blocks > static_cast<int32_t>(hashes.size())) {
            ++bad;
          }
          policy.OnRouted(d.worker_id, request);
        }
      });
    }
    threads.emplace_back([&] {
      std::mt19937 rng(99);
      std::array<uint64_t, 4> sequence{};
      while (!stop.load()) {
        const int w = static_cast<int>(rng() % 4);
        saola::v1::KvEventBatch batch;
        const uint32_t what = rng() % 100;
        if (what < 2) {
          policy.OnKvEventsLost(w);
          continue;
        }
        if (what < 3) {
          policy.OnWorkerRemoved(w);
          continue;
        }
        batch.set_reset(what < 8);
        batch.set_sequence(what < 8 ? (sequence[w] = 0) : ++sequence[w]);
        const std::vector<uint64_t>& hashes = prompts[rng() % prompts.size()];
        saola::v1::KvBlocksStored* chain = batch.add_stored();
        for (uint64_t h : hashes) chain->add_block_hashes(h);
        batch.add_removed(prompts[rng() % prompts.size()].back());
        policy.OnKvEvents(w, batch);
      }
    });
    for (int t = 0; t < 4; ++t) threads[t].join();
    stop = true;
    threads.back().join();
    EXPECT_EQ(bad.load(), 0) << name;
  }
}

}  // namespace
}  // namespace saola::routing
