// The host-side work split of the CUDA attention (kernels/cuda/attention_plan.h): exact items for
// decode splits, prefill chunks and GQA head chunks. Runs without a GPU.
#include "kernels/cuda/attention_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
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

// What the kernels do with a plan, checked on random batches: every (query row, head) is computed
// by exactly one thread block of at most kRowsPerBlock rows; a direct item reads exactly the
// query's causal prefix [0, position] (the kernel masks positions past the row's own); a split
// query's items partition [0, context_len) and its merge names exactly their workspace slots; the
// copied block tables are the sequences' own.
TEST(AttentionPlanTest, RandomBatchesCoverEveryRowOnceWithItsCausalPrefix) {
  std::mt19937 rng(20240611);
  for (int trial = 0; trial < 300; ++trial) {
    const int32_t block_size = std::uniform_int_distribution<int32_t>(1, 40)(rng);
    const int32_t group = std::uniform_int_distribution<int32_t>(1, 40)(rng);
    const int32_t num_seqs = std::uniform_int_distribution<int32_t>(1, 6)(rng);
    std::vector<std::vector<int32_t>> tables;
    std::vector<AttentionSeq> seqs;
    int32_t rows = 0;
    for (int32_t i = 0; i < num_seqs; ++i) {
      AttentionSeq s;
      const int kind = std::uniform_int_distribution<int>(0, 3)(rng);
      s.context_len = std::uniform_int_distribution<int32_t>(1, kind == 0 ? 3 * kDecodeSplitTokens + 40
                                                                          : 300)(rng);
      s.num_q = kind <= 1 ? 1 : std::uniform_int_distribution<int32_t>(0, s.context_len)(rng);
      s.q_begin = rows;
      rows += s.num_q;
      tables.emplace_back((s.context_len + block_size - 1) / block_size);
      for (int32_t& b : tables.back()) b = std::uniform_int_distribution<int32_t>(0, 1 << 20)(rng);
      s.block_table = tables.back().data();
      seqs.push_back(s);
    }
    AttentionPlan plan;
    PlanAttention(seqs, block_size, group, plan);
    SCOPED_TRACE(testing::Message() << "trial " << trial << ", group " << group);
    ASSERT_GE(plan.heads_per_block, 1);
    ASSERT_EQ(plan.head_chunks, (group + plan.heads_per_block - 1) / plan.heads_per_block);

    // Rows written directly, per (query row, head within the group); split coverage per row.
    std::vector<int> direct(static_cast<size_t>(rows) * group, 0);
    std::vector<std::vector<std::pair<int32_t, int32_t>>> ranges(rows);
    std::vector<std::vector<int32_t>> partials(rows);
    std::vector<int> slot_uses(plan.num_partials, 0);
    for (const AttentionItem& item : plan.items) {
      ASSERT_GE(item.num_q, 1);
      ASSERT_LE(item.q_row + item.num_q, rows);
      for (int32_t chunk = 0; chunk < plan.head_chunks; ++chunk) {
        const int32_t g_count =
            std::min(plan.heads_per_block, group - chunk * plan.heads_per_block);
        ASSERT_GE(g_count, 1);
        ASSERT_LE(item.num_q * g_count, kRowsPerBlock);  // the kernel's register rows
      }
      // The item's sequence: the one whose query rows contain it (all of them).
      const AttentionSeq* seq = nullptr;
      for (const AttentionSeq& s : seqs) {
        if (item.q_row >= s.q_begin && item.q_row < s.q_begin + s.num_q) seq = &s;
      }
      ASSERT_NE(seq, nullptr);
      ASSERT_LE(item.q_row + item.num_q, seq->q_begin + seq->num_q);
      EXPECT_EQ(item.first_pos, seq->context_len - seq->num_q + (item.q_row - seq->q_begin));
      for (int32_t b = 0; b < (seq->context_len + block_size - 1) / block_size; ++b) {
        ASSERT_EQ(plan.tables[item.table_offset + b], seq->block_table[b]);
      }
      ASSERT_LE(0, item.kv_begin);
      ASSERT_LT(item.kv_begin, item.kv_end);
      ASSERT_LE(item.kv_end, seq->context_len);
      if (item.partial < 0) {
        EXPECT_EQ(item.kv_begin, 0);
        // The last query's position is the last one read; earlier ones are masked per row.
        EXPECT_EQ(item.kv_end, item.first_pos + item.num_q);
        for (int32_t i = 0; i < item.num_q; ++i) {
          for (int32_t h = 0; h < group; ++h) ++direct[(item.q_row + i) * group + h];
        }
      } else {
        ASSERT_EQ(item.num_q, 1);
        ASSERT_LT(item.partial, plan.num_partials);
        ++slot_uses[item.partial];
        ranges[item.q_row].emplace_back(item.kv_begin, item.kv_end);
        partials[item.q_row].push_back(item.partial);
      }
    }
    for (int32_t used : slot_uses) EXPECT_EQ(used, 1);
    std::vector<int> merged(rows, 0);
    for (const AttentionMerge& m : plan.merges) {
      ASSERT_LT(m.q_row, rows);
      ++merged[m.q_row];
      std::vector<int32_t> slots(m.num_partials);
      for (int32_t i = 0; i < m.num_partials; ++i) slots[i] = m.first_partial + i;
      std::vector<int32_t> seen = partials[m.q_row];
      std::sort(seen.begin(), seen.end());
      EXPECT_EQ(seen, slots);
    }
    for (const AttentionSeq& s : seqs) {
      for (int32_t q = s.q_begin; q < s.q_begin + s.num_q; ++q) {
        if (merged[q] == 0) {
          EXPECT_TRUE(ranges[q].empty());
          for (int32_t h = 0; h < group; ++h) EXPECT_EQ(direct[q * group + h], 1) << "row " << q;
          continue;
        }
        EXPECT_EQ(merged[q], 1);
        EXPECT_EQ(s.num_q, 1);
        for (int32_t h = 0; h < group; ++h) EXPECT_EQ(direct[q * group + h], 0);
        std::sort(ranges[q].begin(), ranges[q].end());
        int32_t next = 0;
        for (const auto& [begin, end] : ranges[q]) {
          EXPECT_EQ(begin, next);
          next = end;
        }
        EXPECT_EQ(next, s.context_len);
      }
    }
  }
}

}  // namespace
}  // namespace saola::kernels::cuda
