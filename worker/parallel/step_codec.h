// The messages rank 0 of a shard group broadcasts to the other ranks: one per step, and one to
// stop. Each message is two broadcasts: a fixed 16-byte header (magic, kind, payload size), then
// the payload (when there is one), so every rank knows how many bytes the second broadcast
// carries before it starts.
//
// A step's payload is int32 words (host byte order: the ranks are processes of one binary on one
// machine):
//   num_kv_blocks, block_size, num_tokens, num_seqs,
//   token_ids[num_tokens],
//   per sequence: num_tokens, context_len, num_logits, block_table_size,
//   the block tables, concatenated in sequence order.
// The KV shape travels with every step (8 bytes) so a rank allocates or resizes its share of the
// cache to match rank 0's without a separate setup message.
//
// Decoding checks every size against the bytes received; the model validates the batch itself
// (token ids, block ids, context lengths) before it touches the cache.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/step_batch.h"

namespace saola::parallel {

enum class StepMessageKind : uint32_t {
  kStep = 1,  // run this batch
  kStop = 2,       // leave the loop and exit cleanly
  kKeepAlive = 3,  // nothing to run; sent while idle so the ranks' waits do not time out
};

inline constexpr size_t kStepHeaderBytes = 16;
/// The largest payload a rank accepts (a step of 1M tokens and block-table entries is far more
/// than any batch; a bigger size means a corrupt header).
inline constexpr uint64_t kMaxStepPayloadBytes = uint64_t{64} << 20;

struct StepHeader {
  StepMessageKind kind = StepMessageKind::kStep;
  uint64_t payload_bytes = 0;
};

std::array<uint8_t, kStepHeaderBytes> EncodeStepHeader(const StepHeader& header);
/// INVALID_ARGUMENT for a wrong magic, an unknown kind or a payload over kMaxStepPayloadBytes.
absl::StatusOr<StepHeader> DecodeStepHeader(std::span<const uint8_t> bytes);

/// A decoded step: the batch, with its block tables pointing into `block_tables`.
struct DecodedStep {
  int32_t num_kv_blocks = 0;
  int32_t block_size = 0;
  model::StepBatch batch;
  std::vector<int32_t> block_tables;
};

/// Appends nothing: replaces `*payload` with the encoding of `batch` for a KV cache of
/// `num_kv_blocks` blocks of `block_size` slots.
void EncodeStep(const model::StepBatch& batch, int32_t num_kv_blocks, int32_t block_size,
                std::vector<uint8_t>* payload);

/// Decodes a step payload into `*out` (reusing its buffers). INVALID_ARGUMENT when a size is
/// negative, the token counts disagree, or the payload is shorter or longer than its sizes say.
absl::Status DecodeStep(std::span<const uint8_t> payload, DecodedStep* out);

}  // namespace saola::parallel
