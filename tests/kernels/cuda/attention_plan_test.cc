// The host-side work split of the CUDA attention (kernels/cuda/attention_plan.h): exact items for
// decode splits, prefill chunks and GQA head chunks. Runs without a GPU.
#include "kernels/cuda/attention_plan.h"

#include <gtest/gtest.h>

#include <vector>

namespace saola::kernels::cuda {
namespace {

TEST(AttentionPlanTest, ShortDecodeIsOneDirectItem) {
  const std::vector<int32_t> table = {7, 3};
  const AttentionSeq seqs[] = {{4, 1, 20, table.data()}};
  AttentionPlan plan;
  PlanAttention(seqs, 16, 3, plan);
  ASSERT_EQ(plan.items.size(), 1u);
  const AttentionItem& it = plan.items[0];
  EXPECT_EQ(it.q_row, 4);
  EXPECT_EQ(it.num_q, 1);
  EXPECT_EQ(it.first_pos, 19);
  EXPECT_EQ(it.kv_begin, 0);
  EXPECT_EQ(it.kv_end, 20);
  EXPECT_EQ(it.partial, -1);
  EXPECT_TRUE(plan.merges.empty());
  EXPECT_EQ(plan.tables, table);
  EXPECT_EQ(plan.heads_per_block, 3);
  EXPECT_EQ(plan.head_chunks, 1);
}

TEST(AttentionPlanTest, LongDecodeSplitsIntoMergedPartials) {
  std::vector<int32_t> table(40);
  for (int i = 0; i < 40; ++i) table[i] = 39 - i;
  const int32_t context = 2 * kDecodeSplitTokens + 5;
  const AttentionSeq seqs[] = {{0, 1, context, table.data()}, {1, 1, 3, table.data()}};
  AttentionPlan plan;
  PlanAttention(seqs, 16, 1, plan);
  ASSERT_EQ(plan.items.size(), 4u);
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(plan.items[s].kv_begin, s * kDecodeSplitTokens);
    EXPECT_EQ(plan.items[s].kv_end, std::min((s + 1) * kDecodeSplitTokens, context));
    EXPECT_EQ(plan.items[s].partial, s);
    EXPECT_EQ(plan.items[s].first_pos, context - 1);
    EXPECT_EQ(plan.items[s].table_offset, 0);
  }
  EXPECT_EQ(plan.items[3].partial, -1);
  EXPECT_EQ(plan.items[3].q_row, 1);
  // The second sequence's table starts after the blocks the first one's context needs.
  const int32_t first_blocks = (context + 15) / 16;
  EXPECT_EQ(plan.items[3].table_offset, first_blocks);
  EXPECT_EQ(plan.tables.size(), static_cast<size_t>(first_blocks + 1));
  ASSERT_EQ(plan.merges.size(), 1u);
  EXPECT_EQ(plan.merges[0].q_row, 0);
  EXPECT_EQ(plan.merges[0].first_partial, 0);
  EXPECT_EQ(plan.merges[0].num_partials, 3);
  EXPECT_EQ(plan.num_partials, 3);
}

TEST(AttentionPlanTest, PrefillChunksFillBlockRowsAndStopAtTheirLastQuery) {
  std::vector<int32_t> table(8, 0);
  // 12 new tokens after 88 cached: positions 88..99. Group 3 -> 5 queries per item (15 rows).
  const AttentionSeq seqs[] = {{10, 12, 100, table.data()}};
  AttentionPlan plan;
  PlanAttention(seqs, 16, 3, plan);
  ASSERT_EQ(plan.items.size(), 3u);
  const int32_t expect_q[] = {5, 5, 2};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(plan.items[i].q_row, 10 + 5 * i);
    EXPECT_EQ(plan.items[i].num_q, expect_q[i]);
    EXPECT_EQ(plan.items[i].first_pos, 88 + 5 * i);
    EXPECT_EQ(plan.items[i].kv_begin, 0);
    EXPECT_EQ(plan.items[i].kv_end, 88 + 5 * i + expect_q[i]);
    EXPECT_EQ(plan.items[i].partial, -1);
  }
}

TEST(AttentionPlanTest, WideGroupsSplitIntoHeadChunks) {
  std::vector<int32_t> table(1, 0);
  const AttentionSeq seqs[] = {{0, 4, 4, table.data()}};
  AttentionPlan plan;
  PlanAttention(seqs, 16, 40, plan);  // 40 query heads on one KV head
  EXPECT_EQ(plan.heads_per_block, kRowsPerBlock);
  EXPECT_EQ(plan.head_chunks, 3);
  ASSERT_EQ(plan.items.size(), 4u);  // one query per item
  EXPECT_EQ(plan.items[3].first_pos, 3);
  EXPECT_EQ(plan.items[3].kv_end, 4);
}

TEST(AttentionPlanTest, SkipsEmptySequences) {
  std::vector<int32_t> table(1, 0);
  const AttentionSeq seqs[] = {{0, 0, 4, table.data()}};
  AttentionPlan plan;
  PlanAttention(seqs, 16, 1, plan);
  EXPECT_TRUE(plan.items.empty());
  EXPECT_TRUE(plan.tables.empty());
}

}  // namespace
}  // namespace saola::kernels::cuda
