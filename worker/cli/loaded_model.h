// Opens a GGUF model for the CLI commands: the mapped file, the backend (--device), the tokenizer
// and (unless only the tokenizer is needed) the model.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "kernels/backend.h"
#include "worker/cli/device_backend.h"
#include "worker/model/gguf.h"
#include "worker/model/llama_model.h"
#include "worker/model/tokenizer.h"
#include "worker/parallel/collectives.h"
#include "worker/parallel/shard_group.h"

namespace saola::cli {

struct LoadedModel {
  LoadedModel() = default;
  LoadedModel(LoadedModel&&) = default;
  LoadedModel& operator=(LoadedModel&&) = default;
  /// With a group and a device communicator: drops the model, then stops the group, releasing
  /// the communicator once the other ranks are told to stop (ShardGroup::Stop), so that no rank
  /// waits on another's NCCL teardown. Otherwise the members go in reverse order.
  ~LoadedModel();

  /// Rank 0's shard group when --tp-size > 1 (declared first: destroyed after the model that uses
  /// its collectives); the step runner to give the engine or generator. Null for one rank.
  std::unique_ptr<parallel::ShardGroup> group;
  std::unique_ptr<model::GgufFile> file;
  std::unique_ptr<model::Tokenizer> tokenizer;
  std::unique_ptr<kernels::Backend> backend;
  /// The model's communicator on a GPU rank (NCCL on `backend`'s stream; device_collectives.h):
  /// declared between them so it goes after the model and before the backend. Null otherwise.
  std::unique_ptr<parallel::Collectives> device_collectives;
  std::unique_ptr<model::LlamaModel> model;  // null when opened for the tokenizer only
};

/// `shard` and `communicator` select one rank's slice of the weights (tensor parallelism);
/// `device` the backend (MakeBackend: `threads` threads on the CPU).
absl::StatusOr<LoadedModel> OpenModel(const std::string& path, bool with_weights, int threads,
                                      int max_batch_tokens, model::ShardSpec shard = {},
                                      model::Communicator* communicator = nullptr,
                                      Device device = Device::kCpu);

/// Loads the shard of one rank of a tensor-parallel group (rank 0 or a tp-rank process) whose
/// steps travel over `host_collectives`. On the CPU its model all-reduces over those too
/// (`backend` and `setup` unused: OpenModel); on CUDA over NCCL collectives joined from `setup`
/// (the group's setup message) on `backend`, from MakeRankBackend for this rank, waiting up to
/// `timeout` for the other ranks.
absl::StatusOr<LoadedModel> OpenModelShard(const std::string& path, int threads,
                                           int max_batch_tokens, model::ShardSpec shard,
                                           parallel::Collectives& host_collectives, Device device,
                                           std::unique_ptr<kernels::Backend> backend,
                                           absl::string_view setup, absl::Duration timeout);

/// Tensor-parallel flags shared by serve and generate.
struct TensorParallelArgs {
  int32_t tp_size = 1;                        // --tp-size
  absl::Duration timeout = absl::Seconds(30);  // --tp-timeout-seconds
};

/// Reads --tp-size (1..64) and --tp-timeout-seconds (1..86400).
absl::StatusOr<TensorParallelArgs> ParseTensorParallelArgs(const Flags& flags);

/// OpenModel, as rank 0 of a group of tp.tp_size processes when that is more than 1: starts the
/// other ranks (this binary's hidden tp-rank command), each with `threads` / tp_size threads (at
/// least 1) as this rank has, and loads rank 0's shard. `on_group_failure` is the group's
/// on_failure (shard_group.h). With --device cuda rank r drives GPU r and the models all-reduce
/// over NCCL (OpenModelShard); FAILED_PRECONDITION when there are fewer GPUs than ranks, or in a
/// build without CUDA.
absl::StatusOr<LoadedModel> OpenModelForTensorParallel(
    const std::string& path, int threads, int max_batch_tokens, const TensorParallelArgs& tp,
    std::function<void(const absl::Status&)> on_group_failure = nullptr,
    Device device = Device::kCpu);

/// One thread per available core, within the --threads bounds [1, 1024].
int DefaultThreads();

/// Exit code for a failed command: 2 for bad input (flags, files, requests), 1 otherwise.
int ExitCodeFor(const absl::Status& status);

/// Prints "saola-worker: <message>" on stderr and returns ExitCodeFor(status).
int Fail(const absl::Status& status);

}  // namespace saola::cli
