// How one Attention call is cut into thread-block work items (host side, no CUDA; unit-tested
// without a GPU).
//
// Paged attention on the GPU runs one thread block per (work item, KV head, chunk of that KV
// head's query heads). A work item is a run of queries of one sequence and a range of KV
// positions:
// * Prefill chunks (num_q > 1): consecutive queries, as many as fit kRowsPerBlock rows of
//   (query, query head) pairs, reading KV positions [0, last query's position]; causal masking
//   per row inside the kernel. The item writes its normalized output directly.
// * Decode (num_q == 1), flash-decoding: the context is split into runs of kDecodeSplitTokens
//   positions, one item each, so a long context is read by many thread blocks at once. Each item
//   writes a partial result (unnormalized sum of p·v, running max m and sum l) to a workspace
//   slot, and a merge step combines a query's slots: out = Σ acc_s e^(m_s - M) / Σ l_s e^(m_s - M).
//   A context that fits in one split is written directly, without a merge.
// Knobs: kRowsPerBlock (the (query, head) rows one block keeps in registers: 4 warps x 4 rows) and
// kDecodeSplitTokens (the KV run per decode item: shorter means more blocks for one long sequence,
// more partials to merge).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/backend.h"

namespace saola::kernels::cuda {

inline constexpr int32_t kRowsPerBlock = 16;
inline constexpr int32_t kDecodeSplitTokens = 256;

/// One work item (see the file comment). Plain data, copied to the device as is.
struct AttentionItem {
  int32_t q_row = 0;         // first query row of q/out
  int32_t num_q = 0;         // queries in this item
  int32_t first_pos = 0;     // position of the first query; query i sees positions <= first_pos + i
  int32_t kv_begin = 0;      // KV positions [kv_begin, kv_end) read by this item
  int32_t kv_end = 0;
  int32_t table_offset = 0;  // where the sequence's block table starts in AttentionPlan::tables
  int32_t partial = -1;      // -1: write out directly; else the workspace slot of this split
  int32_t reserved = 0;
};

/// One decode query whose splits must be merged: slots [first_partial, first_partial + count).
struct AttentionMerge {
  int32_t q_row = 0;
  int32_t first_partial = 0;
  int32_t num_partials = 0;
  int32_t reserved = 0;
};

struct AttentionPlan {
  std::vector<AttentionItem> items;
  std::vector<AttentionMerge> merges;
  std::vector<int32_t> tables;  // every sequence's block table, the blocks its context needs
  int32_t num_partials = 0;     // workspace slots used
  int32_t heads_per_block = 0;  // query heads of one KV head handled by one block
  int32_t head_chunks = 0;      // blocks per KV head per item: ceil(group / heads_per_block)
};

/// Plans a call with `group` = num_heads / num_kv_heads query heads per KV head. Sequences with
/// num_q <= 0 are skipped. Precondition: the AttentionSeq fields are consistent
/// (0 < num_q <= context_len, block tables cover context_len).
void PlanAttention(std::span<const AttentionSeq> seqs, int32_t block_size, int32_t group,
                   AttentionPlan& plan);

}  // namespace saola::kernels::cuda
