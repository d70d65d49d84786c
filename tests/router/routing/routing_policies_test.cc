// Decisions of each routing policy on hand-made loads and caches, with exact worker ids and
// reasons, and the factory's errors.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/block_hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/routing/least_load_policy.h"
#include "router/routing/load.h"
#include "router/routing/prefix_aware_policy.h"
#include "router/routing/round_robin_policy.h"
#include "router/routing/routing_policy.h"

namespace saola::routing {
namespace {

WorkerLoad W(int32_t id, int32_t in_flight = 0, int32_t waiting = 0, double kv_usage = 0) {
  return {.worker_id = id, .in_flight = in_flight, .waiting = waiting, .kv_usage = kv_usage};
}

std::vector<int32_t> PickIds(RoutingPolicy& policy, const std::vector<WorkerLoad>& workers,
                             int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(policy.Pick({}, workers).worker_id);
  return ids;
}

// A snapshot batch holding `hashes` (one chain).
saola::v1::KvEventBatch Snapshot(const std::vector<uint64_t>& hashes) {
  saola::v1::KvEventBatch batch;
  batch.set_reset(true);
  saola::v1::KvBlocksStored* chain = batch.add_stored();
  for (uint64_t h : hashes) chain->add_block_hashes(h);
  return batch;
}

TEST(LoadTest, LoadIsInFlightPlusWaitingThenKvUsageInTenths) {
  EXPECT_EQ(LoadOf(W(1, 3, 2)), 5);
  EXPECT_EQ(LoadOf(W(1, -1, -4)), 0);
  EXPECT_LT(CompareLoad(W(1, 1, 0, 0.9), W(2, 2, 0, 0.0)), 0);
  EXPECT_EQ(CompareLoad(W(1, 1, 0, 0.52), W(2, 0, 1, 0.58)), 0);
  EXPECT_LT(CompareLoad(W(1, 1, 0, 0.49), W(2, 1, 0, 0.51)), 0);
  EXPECT_EQ(KvUsageBucket(W(1, 0, 0, 1.7)), 10);
  EXPECT_EQ(KvUsageBucket(W(1, 0, 0, std::nan(""))), 0);
}

TEST(RoundRobinPolicyTest, TakesEachWorkerInTurn) {
  RoundRobinPolicy policy;
  std::vector<WorkerLoad> workers = {W(7, 100), W(8), W(9)};
  EXPECT_THAT(PickIds(policy, workers, 4), ::testing::ElementsAre(7, 8, 9, 7));
  EXPECT_EQ(policy.Pick({}, workers).reason, "round_robin");
  workers.pop_back();  // a worker left: the rotation goes on over the rest
  EXPECT_THAT(PickIds(policy, workers, 2), ::testing::ElementsAre(8, 7));
}

TEST(LeastLoadPolicyTest, PicksTheLowestLoad) {
  LeastLoadPolicy policy;
  const RouteDecision d = policy.Pick({}, std::vector<WorkerLoad>{W(1, 3), W(2, 1, 1), W(3, 1)});
  EXPECT_EQ(d.worker_id, 3);
  EXPECT_EQ(d.reason, "least_load");
  EXPECT_EQ(d.matched_blocks, 0);
  // waiting counts like in_flight.
  EXPECT_EQ(policy.Pick({}, std::vector<WorkerLoad>{W(1, 0, 4), W(2, 3)}).worker_id, 2);
  // kv_usage decides between equal loads when it differs by a tenth bucket or more.
  EXPECT_EQ(policy.Pick({}, std::vector<WorkerLoad>{W(1, 2, 0, 0.8), W(2, 2, 0, 0.3)}).worker_id,
            2);
}

TEST(LeastLoadPolicyTest, TiesRotateInsteadOfPilingOnTheFirst) {
  LeastLoadPolicy policy;
  // Workers 1 and 3 tie (0.31 and 0.38 are the same tenth); worker 2 is busier.
  const std::vector<WorkerLoad> workers = {W(1, 1, 0, 0.31), W(2, 2), W(3, 1, 0, 0.38)};
  EXPECT_THAT(PickIds(policy, workers, 4), ::testing::ElementsAre(1, 3, 1, 3));
}

class PrefixAwarePolicyTest : public ::testing::Test {
 protected:
  PrefixAwarePolicyTest() : policy_(RoutingOptions{}, [this] { return now_; }) {}

  RouteDecision Pick(const std::vector<uint64_t>& hashes, const std::vector<WorkerLoad>& w) {
    return policy_.Pick({.tenant = "t", .block_hashes = hashes}, w);
  }
  void Route(int32_t worker_id, const std::vector<uint64_t>& hashes) {
    policy_.OnRouted(worker_id, {.tenant = "t", .block_hashes = hashes});
  }

  const std::vector<uint64_t> prompt_ = {101, 102, 103, 104};
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  PrefixAwarePolicy policy_;
};

TEST_F(PrefixAwarePolicyTest, NoMatchAnywhereGoesToTheLeastLoaded) {
  const RouteDecision d = Pick(prompt_, {W(1, 2), W(2, 1), W(3, 3)});
  EXPECT_EQ(d.worker_id, 2);
  EXPECT_EQ(d.reason, "least_load");
  EXPECT_EQ(d.matched_blocks, 0);
  // A prompt shorter than one block has no hashes: the same.
  EXPECT_EQ(Pick({}, {W(1, 2), W(2, 1)}).reason, "least_load");
}

TEST_F(PrefixAwarePolicyTest, LongestMatchWins) {
  policy_.OnKvEvents(1, Snapshot({101, 102}));
  policy_.OnKvEvents(2, Snapshot({101, 102, 103}));
  policy_.OnKvEvents(3, Snapshot({}));
  const RouteDecision d = Pick(prompt_, {W(1), W(2, 2), W(3)});
  EXPECT_EQ(d.worker_id, 2);
  EXPECT_EQ(d.reason, "prefix_hit");
  EXPECT_EQ(d.matched_blocks, 3);
}

TEST_F(PrefixAwarePolicyTest, EqualMatchesGoToTheLowerLoadThenRotate) {
  for (int32_t id : {1, 2, 3}) policy_.OnKvEvents(id, Snapshot({101, 102}));
  RouteDecision d = Pick(prompt_, {W(1, 3), W(2, 1), W(3, 2)});
  EXPECT_EQ(d.worker_id, 2);
  EXPECT_EQ(d.reason, "prefix_hit");
  EXPECT_EQ(d.matched_blocks, 2);
  // A hot prefix every worker holds, equal loads: spread, not always worker 1.
  std::vector<int32_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Pick(prompt_, {W(1), W(2), W(3)}).worker_id);
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(1, 2, 3));
}

TEST_F(PrefixAwarePolicyTest, LoadWinsOnlyWhenBothThresholdsAreExceeded) {
  policy_.OnKvEvents(1, Snapshot({101, 102, 103, 104}));
  // Defaults: abs 4, rel 1.5. Worker 1 holds the prompt.
  // 4 over an idle worker: not more than abs, the cache wins.
  EXPECT_EQ(Pick(prompt_, {W(1, 4), W(2, 0)}).reason, "prefix_hit");
  // 5 over an idle worker: more than abs and more than 1.5 x 0.
  RouteDecision d = Pick(prompt_, {W(1, 5), W(2, 0)});
  EXPECT_EQ(d.worker_id, 2);
  EXPECT_EQ(d.reason, "load_balance");
  EXPECT_EQ(d.matched_blocks, 0);
  // 28 vs 20: 8 more (> abs) but not more than 1.5 x 20 = 30: the cache wins.
  d = Pick(prompt_, {W(1, 20, 8), W(2, 20)});
  EXPECT_EQ(d.worker_id, 1);
  EXPECT_EQ(d.reason, "prefix_hit");
  EXPECT_EQ(d.matched_blocks, 4);
  // 31 vs 20: both exceeded.
  EXPECT_EQ(Pick(prompt_, {W(1, 31), W(2, 20)}).reason, "load_balance");
}

TEST_F(PrefixAwarePolicyTest, LoadBalanceKeepsTheLongestMatchAmongTheLeastLoaded) {
  policy_.OnKvEvents(1, Snapshot({101, 102, 103}));
  policy_.OnKvEvents(2, Snapshot({101}));
  policy_.OnKvEvents(3, Snapshot({}));
  const RouteDecision d = Pick(prompt_, {W(1, 10), W(3, 0), W(2, 0)});
  EXPECT_EQ(d.worker_id, 2);
  EXPECT_EQ(d.reason, "load_balance");
  EXPECT_EQ(d.matched_blocks, 1);
}

TEST_F(PrefixAwarePolicyTest, ARoutedRequestIsPendingUntilItsEventsArrive) {
  policy_.OnKvEvents(1, Snapshot({}));
  policy_.OnKvEvents(2, Snapshot({}));
  RouteDecision first = Pick(prompt_, {W(1), W(2)});
  EXPECT_EQ(first.reason, "least_load");
  Route(first.worker_id, prompt_);
  // The same prompt again before any event, the first still running: it follows the first.
  std::vector<WorkerLoad> loads = {W(1), W(2)};
  loads[first.worker_id == 1 ? 0 : 1].in_flight = 1;
  RouteDecision second = Pick(prompt_, loads);
  EXPECT_EQ(second.worker_id, first.worker_id);
  EXPECT_EQ(second.reason, "prefix_hit");
  EXPECT_EQ(second.matched_blocks, 4);
  // Never confirmed: after pending_ttl (10 s by default) it is forgotten.
  now_ += absl::Seconds(10);
  EXPECT_EQ(Pick(prompt_, {W(1), W(2)}).reason, "least_load");
}

TEST_F(PrefixAwarePolicyTest, WorkerWithoutEventsUsesRoutingHistory) {
  policy_.OnKvEvents(1, Snapshot({101, 102, 103, 104}));
  policy_.OnKvEventsLost(1);
  EXPECT_EQ(Pick(prompt_, {W(1), W(2)}).reason, "least_load");
  Route(2, prompt_);  // worker 2 never had a stream
  now_ += absl::Minutes(4);
  RouteDecision d = Pick(prompt_, {W(1), W(2)});
  EXPECT_EQ(d.worker_id, 2);
  EXPECT_EQ(d.reason, "prefix_hit");
  now_ += absl::Minutes(1);  // history_ttl: 5 min
  EXPECT_EQ(Pick(prompt_, {W(1), W(2)}).reason, "least_load");
}

TEST_F(PrefixAwarePolicyTest, RemovedWorkerIsForgotten) {
  policy_.OnKvEvents(1, Snapshot({101, 102}));
  policy_.OnWorkerRemoved(1);
  EXPECT_EQ(policy_.index().MatchedBlocks(1, prompt_), 0);
}

TEST_F(PrefixAwarePolicyTest, TenantsNeverShareAPrefix) {
  std::vector<int32_t> tokens(64);
  for (int i = 0; i < 64; ++i) tokens[i] = 1000 + i;
  const std::vector<uint64_t> a = FullBlockHashes("alice", tokens, 16);
  const std::vector<uint64_t> b = FullBlockHashes("bob", tokens, 16);
  Route(1, a);
  EXPECT_EQ(Pick(a, {W(1), W(2)}).worker_id, 1);
  EXPECT_EQ(Pick(a, {W(1), W(2)}).matched_blocks, 4);
  const RouteDecision d = Pick(b, {W(1), W(2)});
  EXPECT_EQ(d.reason, "least_load");
  EXPECT_EQ(d.matched_blocks, 0);
}

TEST(MakeRoutingPolicyTest, KnowsTheThreePolicies) {
  const RoutingOptions options;
  auto prefix = MakeRoutingPolicy("prefix-aware", options);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_NE(dynamic_cast<PrefixAwarePolicy*>(prefix->get()), nullptr);
  auto least = MakeRoutingPolicy("least-load", options);
  ASSERT_TRUE(least.ok());
  EXPECT_NE(dynamic_cast<LeastLoadPolicy*>(least->get()), nullptr);
  auto rr = MakeRoutingPolicy("round-robin", options);
  ASSERT_TRUE(rr.ok());
  EXPECT_NE(dynamic_cast<RoundRobinPolicy*>(rr->get()), nullptr);
}

TEST(MakeRoutingPolicyTest, UnknownNameIsInvalidArgument) {
  for (const std::string name : {"x", "", "prefix_aware", "Round-Robin"}) {
    auto policy = MakeRoutingPolicy(name, RoutingOptions{});
    ASSERT_FALSE(policy.ok());
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(policy.status().message(),
              "--policy: unknown policy '" + name + "' (prefix-aware, least-load, round-robin)");
  }
}

TEST(MakeRoutingPolicyTest, RejectsNonsenseOptions) {
  RoutingOptions bad_rel;
  bad_rel.balance_rel_threshold = 0.5;
  RoutingOptions bad_abs;
  bad_abs.balance_abs_threshold = -1;
  RoutingOptions bad_bound;
  bad_bound.max_blocks_per_worker = 0;
  RoutingOptions bad_ttl;
  bad_ttl.history_ttl = absl::Seconds(-1);
  for (const RoutingOptions& options : {bad_rel, bad_abs, bad_bound, bad_ttl}) {
    auto policy = MakeRoutingPolicy("prefix-aware", options);
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace saola::routing
