// `saola-worker tp-rank`: hidden; one rank r > 0 of a tensor-parallel shard group, started by
// rank 0 (`serve` or `generate` with --tp-size N, see worker/parallel/shard_group.h) with the
// same model flags. It joins the group's host collectives, loads only its shard, and runs the
// steps rank 0 broadcasts until told to stop. With --device cuda it drives GPU r and its model
// all-reduces over NCCL, joined with the id rank 0 sends as the group's setup message. Exit 0 on
// stop; 1, with a message naming the rank, when the group breaks.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "worker/cli/commands.h"
#include "worker/cli/device_backend.h"
#include "worker/cli/device_collectives.h"
#include "worker/cli/loaded_model.h"
#include "worker/parallel/host_collectives.h"
#include "worker/parallel/shard_group_rank.h"

namespace saola::cli {
namespace {

absl::Status RunRank(const std::vector<std::string>& args, int64_t* rank_out) {
  ASSIGN_OR_RETURN(Flags flags, Flags::Parse(args,
                                             {"model", "threads", "max-batch-tokens", "tp-rank",
                                              "tp-size", "tp-group", "tp-timeout-seconds",
                                              "device"},
                                             {}));
  ASSIGN_OR_RETURN(std::string model_path, flags.String("model"));
  ASSIGN_OR_RETURN(int64_t threads, flags.Int("threads", 1, 1, 1024));
  ASSIGN_OR_RETURN(int64_t max_batch_tokens, flags.Int("max-batch-tokens", 128, 3, 16384));
  ASSIGN_OR_RETURN(int64_t world_size, flags.Int("tp-size", 2, 2, 1024));
  ASSIGN_OR_RETURN(int64_t rank, flags.Int("tp-rank", 1, 1, world_size - 1));
  *rank_out = rank;
  ASSIGN_OR_RETURN(std::string group, flags.String("tp-group"));
  ASSIGN_OR_RETURN(int64_t timeout_s, flags.Int("tp-timeout-seconds", 30, 1, 86400));
  ASSIGN_OR_RETURN(Device device, ParseDevice(flags));
  const model::ShardSpec shard{static_cast<int32_t>(rank), static_cast<int32_t>(world_size)};
  // On a GPU, this rank's device first (GPU r); then the group, whose setup message is the NCCL
  // id the model's collectives are joined with.
  std::unique_ptr<kernels::Backend> backend;
  if (device != Device::kCpu) {
    ASSIGN_OR_RETURN(backend, MakeRankBackend(device, static_cast<int>(threads), shard.rank,
                                              shard.world_size));
  }
  ASSIGN_OR_RETURN(auto collectives,
                   parallel::CreateHostCollectives({.group_name = group,
                                                    .rank = shard.rank,
                                                    .world_size = shard.world_size,
                                                    .timeout = absl::Seconds(timeout_s)}));
  std::string setup;
  if (device != Device::kCpu) {
    ASSIGN_OR_RETURN(setup, parallel::ReceiveShardGroupSetup(*collectives,
                                                             kMaxDeviceGroupSetupBytes));
  }
  ASSIGN_OR_RETURN(LoadedModel loaded,
                   OpenModelShard(model_path, static_cast<int>(threads),
                                  static_cast<int>(max_batch_tokens), shard, *collectives, device,
                                  std::move(backend), setup, absl::Seconds(timeout_s)));
  return parallel::RunShardRank(*collectives, *loaded.model, *loaded.backend);
}

}  // namespace

int RunTpRank(const std::vector<std::string>& args) {
  int64_t rank = -1;
  const absl::Status status = RunRank(args, &rank);
  if (status.ok()) return 0;
  std::fprintf(stderr, "saola-worker: tensor-parallel rank %lld: %s\n",
               static_cast<long long>(rank), std::string(status.message()).c_str());
  return 1;
}

}  // namespace saola::cli
