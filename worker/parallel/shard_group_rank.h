// The loop of a shard group's rank r > 0 (the hidden `saola-worker tp-rank` command): receive
// each message rank 0 broadcasts (step_codec.h), run the steps on this rank's shard, repeat until
// rank 0 says stop. The rank's KV cache (its KV heads, the same number of blocks as rank 0's) is
// allocated from the shape each step carries, and reallocated when that shape changes.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/model/llama_model.h"
#include "worker/parallel/collectives.h"

namespace saola::parallel {

/// The setup message of a group started with ShardGroupOptions::setup_message; call once, right
/// after attaching `collectives` (the host backend), before RunShardRank. INVALID_ARGUMENT when
/// the length exceeds `max_bytes` (rank 0 sent something this rank does not expect).
absl::StatusOr<std::string> ReceiveShardGroupSetup(Collectives& collectives, size_t max_bytes);

/// Runs until rank 0 sends stop (OK) or the group breaks (the collectives' error: rank 0 died or
/// hangs, or another rank is gone). `collectives` carry the steps (host memory); `model`'s
/// communicator is the same collectives on the CPU, or the device's (NCCL) on a GPU.
absl::Status RunShardRank(Collectives& collectives, model::LlamaModel& model,
                          kernels::Backend& backend);

}  // namespace saola::parallel
