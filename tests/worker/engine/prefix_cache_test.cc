#include "worker/engine/prefix_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace saola::engine {
namespace {

constexpr int32_t kBlockSize = 2;
constexpr int32_t kRoot = PrefixCache::kRoot;

// The tree with the owner's refcounts kept alongside, as KvBlockPool keeps them.
class PrefixCacheTest : public ::testing::Test {
 protected:
  static constexpr int32_t kNumBlocks = 8;

  void Insert(int32_t block, int32_t parent, uint64_t hash) {
    const uint64_t parent_hash = parent == kRoot ? 1000 : tree_.hash(parent);
    const std::vector<int32_t> tokens = {block, block};
    refs_[block] = 1;
    tree_.Insert(block, parent, parent_hash, hash, tokens);
  }
  void Unpin(int32_t block, uint64_t tick) {
    refs_[block] = 0;
    tree_.Unpin(block, tick);
  }
  void Pin(int32_t block) {
    refs_[block] = 1;
    tree_.Pin(block);
  }
  int32_t Evict() {
    std::optional<PrefixCache::Evicted> e = tree_.EvictLeastRecentlyUsed();
    return e.has_value() ? e->block : -100;
  }
  std::string Check() const { return tree_.CheckInvariants(refs_); }

  PrefixCache tree_{kNumBlocks, kBlockSize};
  std::vector<int32_t> refs_ = std::vector<int32_t>(kNumBlocks, 0);
};

TEST_F(PrefixCacheTest, InsertedBlocksAreFoundByHash) {
  Insert(3, kRoot, 30);
  Insert(5, 3, 50);
  EXPECT_EQ(tree_.Find(30), 3);
  EXPECT_EQ(tree_.Find(50), 5);
  EXPECT_EQ(tree_.Find(70), PrefixCache::kNone);
  EXPECT_TRUE(tree_.IsCached(3));
  EXPECT_FALSE(tree_.IsCached(4));
  EXPECT_EQ(tree_.parent(5), 3);
  EXPECT_EQ(tree_.parent(3), kRoot);
  EXPECT_EQ(tree_.parent_hash(5), 30u);
  EXPECT_EQ(tree_.num_cached(), 2);
  EXPECT_EQ(tree_.num_unpinned(), 0);
  EXPECT_EQ(Check(), "");
}

TEST_F(PrefixCacheTest, TokensEqualComparesTheStoredBlock) {
  Insert(2, kRoot, 20);
  EXPECT_TRUE(tree_.TokensEqual(2, std::vector<int32_t>{2, 2}));
  EXPECT_FALSE(tree_.TokensEqual(2, std::vector<int32_t>{2, 3}));
  EXPECT_FALSE(tree_.TokensEqual(2, std::vector<int32_t>{2}));
}

TEST_F(PrefixCacheTest, PinnedBlocksAreNeverEvicted) {
  Insert(0, kRoot, 10);
  EXPECT_EQ(Evict(), -100);
  Unpin(0, 1);
  EXPECT_EQ(tree_.num_unpinned(), 1);
  Pin(0);
  EXPECT_EQ(tree_.num_unpinned(), 0);
  EXPECT_EQ(Evict(), -100);
  EXPECT_EQ(Check(), "");
}

TEST_F(PrefixCacheTest, EvictsLeastRecentlyUsedLeafFirst) {
  Insert(0, kRoot, 10);
  Insert(1, kRoot, 11);
  Insert(2, kRoot, 12);
  Unpin(1, 5);
  Unpin(2, 6);
  Unpin(0, 7);
  EXPECT_EQ(tree_.EvictionOrderOfLeaves(), (std::vector<int32_t>{1, 2, 0}));
  std::optional<PrefixCache::Evicted> e = tree_.EvictLeastRecentlyUsed();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->block, 1);
  EXPECT_EQ(e->hash, 11u);
  EXPECT_EQ(tree_.Find(11), PrefixCache::kNone);
  EXPECT_FALSE(tree_.IsCached(1));
  EXPECT_EQ(Evict(), 2);
  EXPECT_EQ(Evict(), 0);
  EXPECT_EQ(Evict(), -100);
  EXPECT_EQ(tree_.num_cached(), 0);
  EXPECT_EQ(Check(), "");
}

TEST_F(PrefixCacheTest, ParentBecomesLeafWhenItsLastChildIsEvicted) {
  //   root -> 0 -> 1 -> 2
  //             \-> 3
  Insert(0, kRoot, 10);
  Insert(1, 0, 11);
  Insert(2, 1, 12);
  Insert(3, 0, 13);
  Unpin(0, 1);  // oldest, but has children
  Unpin(1, 2);
  Unpin(3, 3);
  Unpin(2, 4);
  EXPECT_EQ(tree_.EvictionOrderOfLeaves(), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(Evict(), 3);
  EXPECT_EQ(Evict(), 2);
  EXPECT_EQ(tree_.EvictionOrderOfLeaves(), (std::vector<int32_t>{1}));
  EXPECT_EQ(Evict(), 1);
  EXPECT_EQ(Evict(), 0);
  EXPECT_EQ(Check(), "");
}

TEST_F(PrefixCacheTest, InsertingAChildTakesTheParentOutOfTheLeaves) {
  Insert(0, kRoot, 10);
  Unpin(0, 1);
  EXPECT_EQ(tree_.EvictionOrderOfLeaves(), (std::vector<int32_t>{0}));
  Insert(1, 0, 11);  // the tree allows it; the pool only links under a held parent
  EXPECT_TRUE(tree_.EvictionOrderOfLeaves().empty());
  Unpin(1, 2);
  EXPECT_EQ(Evict(), 1);
  EXPECT_EQ(Evict(), 0);
  EXPECT_EQ(Check(), "");
}

TEST_F(PrefixCacheTest, TouchChangesTheAgeSeenAtUnpin) {
  Insert(0, kRoot, 10);
  Insert(1, kRoot, 11);
  tree_.Touch(0, 9);
  Unpin(0, 10);
  Unpin(1, 3);
  EXPECT_EQ(Evict(), 1);
  EXPECT_EQ(Evict(), 0);
}

TEST_F(PrefixCacheTest, EvictedBlockCanBeInsertedAgain) {
  Insert(4, kRoot, 40);
  Unpin(4, 1);
  EXPECT_EQ(Evict(), 4);
  Insert(4, kRoot, 41);
  EXPECT_EQ(tree_.Find(41), 4);
  EXPECT_EQ(tree_.Find(40), PrefixCache::kNone);
  EXPECT_EQ(Check(), "");
}

TEST_F(PrefixCacheTest, SnapshotListsParentsBeforeChildren) {
  Insert(5, kRoot, 50);
  Insert(1, 5, 51);
  Insert(0, 1, 52);
  Insert(7, kRoot, 70);
  Insert(6, 7, 71);
  const std::vector<std::pair<uint64_t, uint64_t>> snap = tree_.Snapshot();
  ASSERT_EQ(snap.size(), 5u);
  // Sorted by depth, then block id.
  EXPECT_EQ(snap, (std::vector<std::pair<uint64_t, uint64_t>>{
                      {1000, 50}, {1000, 70}, {50, 51}, {70, 71}, {51, 52}}));
}

TEST_F(PrefixCacheTest, CheckInvariantsReportsARefcountMismatch) {
  Insert(0, kRoot, 10);
  refs_[0] = 0;  // the tree still thinks it pinned
  EXPECT_NE(Check(), "");
}

}  // namespace
}  // namespace saola::engine
