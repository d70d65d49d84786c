#include "cache/semantic/semantic_index.h"

#include <cmath>
#include <random>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace saola::cache {
namespace {

constexpr int kDim = 32;

std::vector<float> RandomUnit(std::mt19937* rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(kDim);
  double norm = 0;
  for (float& x : v) {
    x = normal(*rng);
    norm += double{x} * x;
  }
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

TEST(SemanticIndexTest, FlatSearchIsExactAndSorted) {
  SemanticIndex index(kDim, SemanticIndexOptions{});
  std::mt19937 rng(1);
  std::vector<std::vector<float>> vecs;
  for (int i = 0; i < 50; ++i) {
    vecs.push_back(RandomUnit(&rng));
    index.Add(100 + i, vecs.back());
  }
  EXPECT_FALSE(index.uses_hnsw());
  for (int i = 0; i < 50; ++i) {
    auto n = index.Search(vecs[i].data(), 4);
    ASSERT_EQ(n.size(), 4u);
    EXPECT_EQ(n[0].id, 100 + i);
    EXPECT_NEAR(n[0].similarity, 1.0f, 1e-5);
    for (size_t j = 1; j < n.size(); ++j) EXPECT_LE(n[j].similarity, n[j - 1].similarity);
  }
}

TEST(SemanticIndexTest, FlatRemoveDropsOnlyThoseIds) {
  SemanticIndex index(kDim, SemanticIndexOptions{});
  std::mt19937 rng(2);
  std::vector<std::vector<float>> vecs;
  for (int i = 0; i < 20; ++i) {
    vecs.push_back(RandomUnit(&rng));
    index.Add(i, vecs.back());
  }
  std::vector<int64_t> gone = {3, 7, 11, 999};
  index.Remove(gone);
  EXPECT_EQ(index.size(), 17);
  for (int i = 0; i < 20; ++i) {
    auto n = index.Search(vecs[i].data(), 20);
    EXPECT_EQ(n.size(), 17u);
    for (const auto& x : n) EXPECT_TRUE(x.id != 3 && x.id != 7 && x.id != 11);
    if (i != 3 && i != 7 && i != 11) {
      EXPECT_EQ(n[0].id, i);
    }
  }
}

TEST(SemanticIndexTest, SwitchesToHnswAtThresholdAndStillFindsEverything) {
  SemanticIndexOptions options;
  options.hnsw_min_entries = 64;
  SemanticIndex index(kDim, options);
  std::mt19937 rng(3);
  std::vector<std::vector<float>> vecs;
  for (int i = 0; i < 300; ++i) {
    vecs.push_back(RandomUnit(&rng));
    index.Add(i, vecs.back());
    EXPECT_EQ(index.uses_hnsw(), i + 1 >= 64) << i;
  }
  for (int i = 0; i < 300; ++i) {
    auto n = index.Search(vecs[i].data(), 1);
    ASSERT_EQ(n.size(), 1u);
    EXPECT_EQ(n[0].id, i);
    EXPECT_NEAR(n[0].similarity, 1.0f, 1e-4);  // inner product, not a distance
  }
}

TEST(SemanticIndexTest, HnswTombstonesAreSkippedAndTriggerRebuild) {
  SemanticIndexOptions options;
  options.hnsw_min_entries = 64;
  options.max_tombstone_fraction = 0.25;
  SemanticIndex index(kDim, options);
  std::mt19937 rng(4);
  std::vector<std::vector<float>> vecs;
  for (int i = 0; i < 200; ++i) {
    vecs.push_back(RandomUnit(&rng));
    index.Add(i, vecs.back());
  }
  const int64_t rebuilds_before = index.num_rebuilds();  // the flat -> HNSW switch
  // 40 removals: 20% of 200, below the fraction, so tombstones only.
  std::vector<int64_t> gone;
  for (int i = 0; i < 40; ++i) gone.push_back(i * 5);
  index.Remove(gone);
  EXPECT_EQ(index.num_tombstones(), 40);
  EXPECT_EQ(index.num_rebuilds(), rebuilds_before);
  absl::flat_hash_set<int64_t> removed(gone.begin(), gone.end());
  for (int i = 0; i < 200; ++i) {
    auto n = index.Search(vecs[i].data(), 4);
    ASSERT_FALSE(n.empty());
    for (const auto& x : n) EXPECT_FALSE(removed.contains(x.id)) << x.id;
    if (!removed.contains(i)) {
      EXPECT_EQ(n[0].id, i);
    }
  }
  // 20 more: 60 > 0.25 * 200 -> rebuild, tombstones gone, still HNSW (140 >= 64 / 2).
  std::vector<int64_t> more;
  for (int i = 0; i < 20; ++i) more.push_back(i * 5 + 1);
  index.Remove(more);
  EXPECT_EQ(index.num_rebuilds(), rebuilds_before + 1);
  EXPECT_EQ(index.num_tombstones(), 0);
  EXPECT_TRUE(index.uses_hnsw());
  EXPECT_EQ(index.size(), 140);
  removed.insert(more.begin(), more.end());
  for (int i = 0; i < 200; ++i) {
    auto n = index.Search(vecs[i].data(), 4);
    for (const auto& x : n) EXPECT_FALSE(removed.contains(x.id));
    if (!removed.contains(i)) {
      EXPECT_EQ(n[0].id, i);
    }
  }
}

TEST(SemanticIndexTest, ShrunkHnswPartitionGoesBackToFlat) {
  SemanticIndexOptions options;
  options.hnsw_min_entries = 64;
  SemanticIndex index(kDim, options);
  std::mt19937 rng(5);
  std::vector<std::vector<float>> vecs;
  for (int i = 0; i < 80; ++i) {
    vecs.push_back(RandomUnit(&rng));
    index.Add(i, vecs.back());
  }
  ASSERT_TRUE(index.uses_hnsw());
  std::vector<int64_t> gone;
  for (int i = 0; i < 60; ++i) gone.push_back(i);
  index.Remove(gone);  // 20 left < 64 / 2
  EXPECT_FALSE(index.uses_hnsw());
  for (int i = 60; i < 80; ++i) EXPECT_EQ(index.Search(vecs[i].data(), 1)[0].id, i);
  EXPECT_EQ(index.Vector(10), nullptr);
  ASSERT_NE(index.Vector(70), nullptr);
  EXPECT_EQ(*index.Vector(70), vecs[70]);
}

}  // namespace
}  // namespace saola::cache
