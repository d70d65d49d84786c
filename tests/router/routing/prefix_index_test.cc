#include "router/routing/prefix_index.h"

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "gtest/gtest.h"

namespace saola::routing {
namespace {

constexpr uint64_t kRoot = 0xabc;

// A batch with one stored chain (if `stored` is non-empty) and the given removals.
saola::v1::KvEventBatch Batch(bool reset, uint64_t sequence, std::vector<uint64_t> stored,
                              std::vector<uint64_t> removed = {}) {
  saola::v1::KvEventBatch batch;
  batch.set_reset(reset);
  batch.set_sequence(sequence);
  if (!stored.empty()) {
    saola::v1::KvBlocksStored* chain = batch.add_stored();
    chain->set_parent_hash(kRoot);
    for (uint64_t h : stored) chain->add_block_hashes(h);
  }
  for (uint64_t h : removed) batch.add_removed(h);
  return batch;
}

class PrefixIndexTest : public ::testing::Test {
 protected:
  PrefixIndex MakeIndex(int64_t max_blocks = 1 << 20) {
    return PrefixIndex({.history_ttl = absl::Seconds(60),
                        .pending_ttl = absl::Seconds(5),
                        .max_blocks_per_worker = max_blocks},
                       [this] { return now_; });
  }
  int32_t Match(const PrefixIndex& index, int32_t worker, std::initializer_list<uint64_t> h) {
    return index.MatchedBlocks(worker, std::vector<uint64_t>(h));
  }
  void Record(PrefixIndex& index, int32_t worker, std::initializer_list<uint64_t> h) {
    index.RecordRouted(worker, std::vector<uint64_t>(h));
  }

  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
};

TEST_F(PrefixIndexTest, UnknownWorkerAndEmptyQueryMatchNothing) {
  PrefixIndex index = MakeIndex();
  EXPECT_EQ(Match(index, 1, {1, 2, 3}), 0);
  index.ApplyEvents(1, Batch(true, 0, {1, 2}));
  EXPECT_EQ(Match(index, 1, {}), 0);
  EXPECT_EQ(Match(index, 2, {1, 2}), 0);
}

TEST_F(PrefixIndexTest, SnapshotThenStoredChainsExtendTheMatch) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {11, 12}));
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14}), 2);
  index.ApplyEvents(1, Batch(false, 1, {13}));
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14}), 3);
  // Two chains in one batch.
  saola::v1::KvEventBatch two = Batch(false, 2, {14});
  saola::v1::KvBlocksStored* other = two.add_stored();
  other->set_parent_hash(kRoot);
  other->add_block_hashes(21);
  index.ApplyEvents(1, two);
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14, 15}), 4);
  EXPECT_EQ(Match(index, 1, {21, 22}), 1);
  EXPECT_TRUE(index.Stats(1).events_live);
  EXPECT_EQ(index.Stats(1).num_cached, 5);
}

TEST_F(PrefixIndexTest, SnapshotReplacesEverything) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {11, 12, 13}));
  index.ApplyEvents(1, Batch(false, 1, {14}));
  index.ApplyEvents(1, Batch(true, 0, {31}));  // reconnected: a new snapshot
  EXPECT_EQ(Match(index, 1, {11, 12}), 0);
  EXPECT_EQ(Match(index, 1, {31}), 1);
  EXPECT_EQ(index.Stats(1).num_cached, 1);
}

TEST_F(PrefixIndexTest, RemovedBlockEndsTheLeadingRun) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {11, 12, 13, 14}));
  index.ApplyEvents(1, Batch(false, 1, {}, {12}));
  // 13 and 14 are still held, but after a gap the prefix is no longer reusable.
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14}), 1);
  EXPECT_EQ(Match(index, 1, {13, 14}), 2);
  // Stored is applied before removed within a batch.
  index.ApplyEvents(1, Batch(false, 2, {15}, {15}));
  EXPECT_EQ(Match(index, 1, {13, 14, 15}), 2);
}

TEST_F(PrefixIndexTest, OnlyALeadingRunCounts) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {12, 13}));
  EXPECT_EQ(Match(index, 1, {11, 12, 13}), 0);
}

TEST_F(PrefixIndexTest, BatchesBeforeASnapshotAreIgnored) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(false, 1, {11}));
  EXPECT_EQ(Match(index, 1, {11}), 0);
  EXPECT_FALSE(index.Stats(1).events_live);
}

TEST_F(PrefixIndexTest, SequenceGapDropsEventsUntilTheNextSnapshot) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {11}));
  index.ApplyEvents(1, Batch(false, 1, {12}));
  EXPECT_EQ(Match(index, 1, {11, 12}), 2);
  index.ApplyEvents(1, Batch(false, 3, {13}));  // 2 was lost
  EXPECT_FALSE(index.Stats(1).events_live);
  EXPECT_EQ(Match(index, 1, {11, 12, 13}), 0);
  index.ApplyEvents(1, Batch(false, 4, {11}));  // still not live: ignored
  EXPECT_EQ(Match(index, 1, {11}), 0);
  index.ApplyEvents(1, Batch(true, 0, {11, 12}));
  EXPECT_EQ(Match(index, 1, {11, 12, 13}), 2);
}

TEST_F(PrefixIndexTest, EventsLostFallsBackToRoutingHistory) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {11, 12, 13}));
  index.MarkEventsLost(1);
  EXPECT_FALSE(index.Stats(1).events_live);
  EXPECT_EQ(Match(index, 1, {11, 12, 13}), 0);  // events no longer trusted
  Record(index, 1, {11, 12, 13, 14});
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14, 15}), 4);
  now_ += absl::Seconds(59);  // history_ttl (60 s), not pending_ttl (5 s)
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14}), 4);
  now_ += absl::Seconds(1);
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14}), 0);
}

TEST_F(PrefixIndexTest, HistoryExpiresAfterItsTtlAndIsRefreshedByNewRouting) {
  PrefixIndex index = MakeIndex();
  Record(index, 2, {11, 12});  // a worker that never sent events
  now_ += absl::Seconds(30);
  Record(index, 2, {11, 12, 13});  // 11 and 12 refreshed
  now_ += absl::Seconds(40);       // 70 s after the first record, 40 s after the second
  EXPECT_EQ(Match(index, 2, {11, 12, 13}), 3);
  now_ += absl::Seconds(20);
  EXPECT_EQ(Match(index, 2, {11, 12, 13}), 0);
  // The next write sweeps the expired entries.
  Record(index, 2, {41});
  EXPECT_EQ(index.Stats(2).num_recent, 1);
}

TEST_F(PrefixIndexTest, PendingEntriesOnALiveWorkerUntilEventsConfirmThem) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {11}));
  Record(index, 1, {11, 12, 13, 14});
  EXPECT_EQ(index.Stats(1).num_recent, 3);  // 11 is already confirmed: not pending
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14}), 4);
  index.ApplyEvents(1, Batch(false, 1, {12, 13}));  // confirmed
  index.ApplyEvents(1, Batch(false, 2, {}, {14}));  // evicted before confirmation
  EXPECT_EQ(index.Stats(1).num_recent, 0);
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 14}), 3);
  // An unconfirmed pending entry lasts pending_ttl, not history_ttl.
  Record(index, 1, {11, 12, 13, 15});
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 15}), 4);
  now_ += absl::Seconds(5);
  EXPECT_EQ(Match(index, 1, {11, 12, 13, 15}), 3);
}

TEST_F(PrefixIndexTest, SnapshotDropsRoutingHistory) {
  PrefixIndex index = MakeIndex();
  Record(index, 1, {11, 12});
  EXPECT_EQ(Match(index, 1, {11, 12}), 2);
  index.ApplyEvents(1, Batch(true, 0, {}));
  EXPECT_EQ(Match(index, 1, {11, 12}), 0);
  EXPECT_EQ(index.Stats(1).num_recent, 0);
}

TEST_F(PrefixIndexTest, MemoryBoundEvictsOldestHistoryFirst) {
  PrefixIndex index = MakeIndex(/*max_blocks=*/8);
  Record(index, 1, {1, 2, 3, 4, 5});
  now_ += absl::Seconds(1);
  Record(index, 1, {21, 22, 23, 24, 25});
  EXPECT_EQ(index.Stats(1).num_recent, 8);
  EXPECT_EQ(Match(index, 1, {1, 2, 3, 4, 5}), 0);  // 1 and 2 were the oldest
  EXPECT_EQ(Match(index, 1, {3, 4, 5}), 3);
  EXPECT_EQ(Match(index, 1, {21, 22, 23, 24, 25}), 5);
  // A request longer than the bound records its leading blocks only.
  Record(index, 1, {31, 32, 33, 34, 35, 36, 37, 38, 39, 40});
  EXPECT_EQ(index.Stats(1).num_recent, 8);
  EXPECT_EQ(Match(index, 1, {31, 32, 33, 34, 35, 36, 37, 38, 39, 40}), 8);
}

TEST_F(PrefixIndexTest, MemoryBoundEvictsPendingBeforeDroppingStored) {
  PrefixIndex index = MakeIndex(/*max_blocks=*/4);
  index.ApplyEvents(1, Batch(true, 0, {11, 12}));
  Record(index, 1, {11, 12, 13, 14});  // 13, 14 pending: the index is full
  EXPECT_EQ(index.Stats(1).num_recent, 2);
  index.ApplyEvents(1, Batch(false, 1, {21, 22}));  // pending entries make room
  EXPECT_EQ(index.Stats(1).num_recent, 0);
  EXPECT_EQ(index.Stats(1).num_cached, 4);
  index.ApplyEvents(1, Batch(false, 2, {23, 24}));  // nothing left to evict: dropped
  EXPECT_EQ(index.Stats(1).num_cached, 4);
  EXPECT_EQ(index.Stats(1).num_dropped_stored, 2);
  EXPECT_EQ(Match(index, 1, {21, 22, 23}), 2);
  // A full index of cached blocks records no pending entries.
  Record(index, 1, {51, 52});
  EXPECT_EQ(index.Stats(1).num_recent, 0);
}

TEST_F(PrefixIndexTest, RepeatedRoutingDoesNotGrowWithoutBound) {
  PrefixIndex index = MakeIndex();
  std::vector<uint64_t> hashes = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int i = 0; i < 10'000; ++i) {
    now_ += absl::Milliseconds(1);
    index.RecordRouted(3, hashes);
  }
  EXPECT_EQ(index.Stats(3).num_recent, 8);
  EXPECT_EQ(index.MatchedBlocks(3, hashes), 8);
  now_ += absl::Seconds(60);
  EXPECT_EQ(index.MatchedBlocks(3, hashes), 0);
}

TEST_F(PrefixIndexTest, RemoveWorkerForgetsIt) {
  PrefixIndex index = MakeIndex();
  index.ApplyEvents(1, Batch(true, 0, {11}));
  Record(index, 2, {11});
  index.RemoveWorker(1);
  EXPECT_EQ(Match(index, 1, {11}), 0);
  EXPECT_FALSE(index.Stats(1).events_live);
  EXPECT_EQ(Match(index, 2, {11}), 1);
  index.RemoveWorker(7);  // unknown: nothing happens
}

}  // namespace
}  // namespace saola::routing
