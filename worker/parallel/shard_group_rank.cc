#include "worker/parallel/shard_group_rank.h"

#include <array>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/model/kv_cache.h"
#include "worker/parallel/step_codec.h"

namespace saola::parallel {

absl::StatusOr<std::string> ReceiveShardGroupSetup(Collectives& collectives, size_t max_bytes) {
  std::array<uint8_t, 8> length_bytes;
  RETURN_IF_ERROR(collectives.Broadcast(length_bytes.data(), length_bytes.size(), /*root=*/0));
  uint64_t length = 0;
  for (size_t i = 0; i < length_bytes.size(); ++i) length |= uint64_t{length_bytes[i]} << (8 * i);
  if (length > max_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shard group setup: %d bytes from rank 0, expected at most %d", length, max_bytes));
  }
  std::string message(length, '\0');
  if (length > 0) {
    RETURN_IF_ERROR(collectives.Broadcast(message.data(), message.size(), /*root=*/0));
  }
  return message;
}

namespace {

// This rank's logits are dropped (rank 0's are the step's), so it need not compute them: the
// vocabulary projection and, on a GPU, the copy of [rows, vocab] floats to the host. Only when
// every num_logits is one rank 0 accepts; otherwise the batch is left as it came, so that this
// rank rejects it exactly as rank 0 does, before any collective.
void SkipLogits(model::StepBatch& batch) {
  for (const model::SequenceStep& s : batch.seqs) {
    if (s.num_logits < 0 || s.num_logits > s.num_tokens) return;
  }
  for (model::SequenceStep& s : batch.seqs) s.num_logits = 0;
}

}  // namespace

absl::Status RunShardRank(Collectives& collectives, model::LlamaModel& model,
                          kernels::Backend& backend) {
  std::unique_ptr<model::KvCacheStorage> kv;
  std::array<uint8_t, kStepHeaderBytes> header_bytes;
  std::vector<uint8_t> payload;
  DecodedStep step;
  while (true) {
    RETURN_IF_ERROR(collectives.Broadcast(header_bytes.data(), header_bytes.size(), /*root=*/0));
    ASSIGN_OR_RETURN(StepHeader header, DecodeStepHeader(header_bytes));
    if (header.kind == StepMessageKind::kStop) return absl::OkStatus();
    payload.resize(header.payload_bytes);
    if (!payload.empty()) {
      RETURN_IF_ERROR(collectives.Broadcast(payload.data(), payload.size(), /*root=*/0));
    }
    if (header.kind == StepMessageKind::kKeepAlive) continue;
    // Rank 0 encoded this step itself, so a payload that does not decode is a bug: stopping
    // here breaks the group (rank 0's next collective fails, naming this rank).
    RETURN_IF_ERROR(DecodeStep(payload, &step));
    if (kv == nullptr || kv->num_blocks() != step.num_kv_blocks ||
        kv->block_size() != step.block_size) {
      kv.reset();  // free the old share before allocating the new one
      ASSIGN_OR_RETURN(kv, model::KvCacheStorage::Create(
                               backend, model.KvShape(step.num_kv_blocks, step.block_size)));
    }
    SkipLogits(step.batch);
    absl::StatusOr<std::span<const float>> logits = model.Forward(step.batch, *kv);
    // A batch the model rejects was rejected by rank 0 too, before any collective: stay in step.
    if (!logits.ok() && logits.status().code() != absl::StatusCode::kInvalidArgument) {
      return logits.status();
    }
  }
}

}  // namespace saola::parallel
