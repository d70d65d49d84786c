#include "worker/cli/loaded_model.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/cli/device_collectives.h"

namespace saola::cli {

LoadedModel::~LoadedModel() {
  if (group == nullptr || device_collectives == nullptr) return;
  model.reset();
  group->Stop([this] { device_collectives.reset(); });
}

namespace {

// OpenModel, on `m.backend` when it is set (a made backend is the only member `m` may have).
absl::StatusOr<LoadedModel> Open(LoadedModel m, const std::string& path, bool with_weights,
                                 int threads, int max_batch_tokens, model::ShardSpec shard,
                                 model::Communicator* communicator, Device device) {
  ASSIGN_OR_RETURN(m.file, model::GgufFile::Open(path));
  ASSIGN_OR_RETURN(model::TokenizerSpec spec, model::LoadTokenizerSpec(*m.file));
  ASSIGN_OR_RETURN(m.tokenizer, model::Tokenizer::Create(std::move(spec)));
  if (!with_weights) return m;
  if (m.backend == nullptr) {
    ASSIGN_OR_RETURN(m.backend, MakeBackend(device, threads));
  }
  model::LlamaModel::Options options;
  options.max_batch_tokens = max_batch_tokens;
  options.shard = shard;
  options.communicator = communicator;
  ASSIGN_OR_RETURN(m.model, model::LlamaModel::Load(*m.file, *m.backend, options));
  // Every token id the tokenizer can produce must have an embedding row (and every id the model
  // can sample, some text): a mismatch means the file is inconsistent.
  if (m.tokenizer->vocab_size() != m.model->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model: the tokenizer has %d tokens but the embedding table %d rows",
        m.tokenizer->vocab_size(), m.model->config().vocab_size));
  }
  return m;
}

}  // namespace

absl::StatusOr<LoadedModel> OpenModel(const std::string& path, bool with_weights, int threads,
                                      int max_batch_tokens, model::ShardSpec shard,
                                      model::Communicator* communicator, Device device) {
  return Open(LoadedModel(), path, with_weights, threads, max_batch_tokens, shard, communicator,
              device);
}

absl::StatusOr<LoadedModel> OpenModelShard(const std::string& path, int threads,
                                           int max_batch_tokens, model::ShardSpec shard,
                                           parallel::Collectives& host_collectives, Device device,
                                           std::unique_ptr<kernels::Backend> backend,
                                           absl::string_view setup, absl::Duration timeout) {
  if (device == Device::kCpu) {
    return OpenModel(path, /*with_weights=*/true, threads, max_batch_tokens, shard,
                     &host_collectives, device);
  }
  if (backend == nullptr) return absl::InternalError("OpenModelShard: no backend for the device");
  LoadedModel m;
  m.backend = std::move(backend);
  ASSIGN_OR_RETURN(m.device_collectives,
                   JoinDeviceCollectives(device, *m.backend, shard, setup, timeout));
  model::Communicator* communicator = m.device_collectives.get();
  return Open(std::move(m), path, /*with_weights=*/true, threads, max_batch_tokens, shard,
              communicator, device);
}

absl::StatusOr<TensorParallelArgs> ParseTensorParallelArgs(const Flags& flags) {
  TensorParallelArgs tp;
  ASSIGN_OR_RETURN(int64_t size, flags.Int("tp-size", 1, 1, 64));
  ASSIGN_OR_RETURN(int64_t timeout_s, flags.Int("tp-timeout-seconds", 30, 1, 86400));
  tp.tp_size = static_cast<int32_t>(size);
  tp.timeout = absl::Seconds(timeout_s);
  return tp;
}

absl::StatusOr<LoadedModel> OpenModelForTensorParallel(
    const std::string& path, int threads, int max_batch_tokens, const TensorParallelArgs& tp,
    std::function<void(const absl::Status&)> on_group_failure, Device device) {
  if (tp.tp_size <= 1) {
    return OpenModel(path, /*with_weights=*/true, threads, max_batch_tokens, {}, nullptr, device);
  }
  const int rank_threads = std::max(1, threads / tp.tp_size);
  // On a GPU: rank 0's device (checking there is one per rank before any rank starts) and the
  // NCCL id the group's setup message carries to the other ranks. Nothing on the CPU.
  std::unique_ptr<kernels::Backend> backend;
  std::string setup;
  if (device != Device::kCpu) {
    ASSIGN_OR_RETURN(backend, MakeRankBackend(device, rank_threads, 0, tp.tp_size));
    ASSIGN_OR_RETURN(setup, MakeDeviceGroupSetup(device));
  }
  parallel::ShardGroupOptions options;
  options.world_size = tp.tp_size;
  options.rank_argv = {"/proc/self/exe", "tp-rank", "--model", path, "--threads",
                       std::to_string(rank_threads), "--max-batch-tokens",
                       std::to_string(max_batch_tokens)};
  if (device == Device::kCuda) {
    options.rank_argv.insert(options.rank_argv.end(), {"--device", "cuda"});
  }
  options.timeout = tp.timeout;
  options.on_failure = std::move(on_group_failure);
  options.setup_message = setup;
  ASSIGN_OR_RETURN(auto group, parallel::ShardGroup::Start(std::move(options)));
  ASSIGN_OR_RETURN(LoadedModel m,
                   OpenModelShard(path, rank_threads, max_batch_tokens, {0, tp.tp_size},
                                  group->collectives(), device, std::move(backend),
                                  setup, tp.timeout));
  group->AttachModel(*m.model);
  m.group = std::move(group);
  return m;
}

int DefaultThreads() {
  return static_cast<int>(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, 1024));
}

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kPermissionDenied:
      return 2;
    default:
      return 1;
  }
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "saola-worker: %s\n", std::string(status.message()).c_str());
  return ExitCodeFor(status);
}

}  // namespace saola::cli
