// The input of one model step: new tokens of several sequences, each appended to its own paged KV.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "kernels/row_sampling.h"

namespace saola::model {

/// One sequence's part of a step. Its new tokens are the next `num_tokens` entries of
/// StepBatch::token_ids and take positions [context_len - num_tokens, context_len).
struct SequenceStep {
  int32_t num_tokens = 0;
  /// Tokens in this sequence's KV once the step has run, the new ones included. A step that
  /// follows a rollback (rejected speculative tokens) simply starts at a smaller context_len:
  /// slots past it are overwritten.
  int32_t context_len = 0;
  /// Block ids holding positions [0, context_len): block_table[p / block_size].
  std::span<const int32_t> block_table;
  /// Logits wanted for the last `num_logits` new tokens (0: none, 1: next-token, num_tokens:
  /// every position, as speculative verification needs).
  int32_t num_logits = 1;
  /// Set (with num_logits == 1, on a backend that SamplesRows) to have the backend pick the next
  /// token with these settings: the step then returns the token, not the row of logits.
  std::optional<kernels::RowSampling> backend_sampling = std::nullopt;
};

struct StepBatch {
  std::vector<int32_t> token_ids;
  std::vector<SequenceStep> seqs;
};

}  // namespace saola::model
