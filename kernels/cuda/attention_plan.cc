#include "kernels/cuda/attention_plan.h"

#include <algorithm>

namespace saola::kernels::cuda {

void PlanAttention(std::span<const AttentionSeq> seqs, int32_t block_size, int32_t group,
                   AttentionPlan& plan) {
  plan.items.clear();
  plan.merges.clear();
  plan.tables.clear();
  plan.num_partials = 0;
  plan.heads_per_block = std::min(group, kRowsPerBlock);
  plan.head_chunks = (group + plan.heads_per_block - 1) / plan.heads_per_block;
  const int32_t queries_per_item = std::max(1, kRowsPerBlock / plan.heads_per_block);

  for (const AttentionSeq& s : seqs) {
    if (s.num_q <= 0) continue;
    const int32_t table_offset = static_cast<int32_t>(plan.tables.size());
    const int32_t num_blocks = (s.context_len + block_size - 1) / block_size;
    plan.tables.insert(plan.tables.end(), s.block_table, s.block_table + num_blocks);
    const int32_t first_pos = s.context_len - s.num_q;

    if (s.num_q == 1 && s.context_len > kDecodeSplitTokens) {
      AttentionMerge merge;
      merge.q_row = s.q_begin;
      merge.first_partial = plan.num_partials;
      for (int32_t begin = 0; begin < s.context_len; begin += kDecodeSplitTokens) {
        AttentionItem item;
        item.q_row = s.q_begin;
        item.num_q = 1;
        item.first_pos = first_pos;
        item.kv_begin = begin;
        item.kv_end = std::min(begin + kDecodeSplitTokens, s.context_len);
        item.table_offset = table_offset;
        item.partial = plan.num_partials++;
        plan.items.push_back(item);
      }
      merge.num_partials = plan.num_partials - merge.first_partial;
      plan.merges.push_back(merge);
      continue;
    }
    for (int32_t i = 0; i < s.num_q; i += queries_per_item) {
      AttentionItem item;
      item.q_row = s.q_begin + i;
      item.num_q = std::min(queries_per_item, s.num_q - i);
      item.first_pos = first_pos + i;
      item.kv_begin = 0;
      item.kv_end = item.first_pos + item.num_q;  // the last query's position, inclusive
      item.table_offset = table_offset;
      plan.items.push_back(item);
    }
  }
}

}  // namespace saola::kernels::cuda
