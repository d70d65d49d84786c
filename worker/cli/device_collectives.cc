#include "worker/cli/device_collectives.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

#if defined(SAOLA_HAVE_CUDA)
#include "kernels/cuda/cuda_backend.h"
#include "worker/parallel/nccl_collectives.h"
#endif

namespace saola::cli {

absl::StatusOr<std::string> MakeDeviceGroupSetup(Device device) {
  if (device == Device::kCpu) return std::string();
#if defined(SAOLA_HAVE_CUDA)
  ASSIGN_OR_RETURN(ncclUniqueId id, parallel::CreateNcclUniqueId());
  return parallel::NcclUniqueIdBytes(id);
#else
  return absl::FailedPreconditionError(
      "--device cuda: built without CUDA (configure with -DSAOLA_CUDA=ON where nvcc is found)");
#endif
}

absl::StatusOr<std::unique_ptr<parallel::Collectives>> JoinDeviceCollectives(
    Device device, kernels::Backend& backend, model::ShardSpec shard, absl::string_view setup,
    absl::Duration timeout) {
  if (device == Device::kCpu) return std::unique_ptr<parallel::Collectives>();
#if defined(SAOLA_HAVE_CUDA)
  auto* cuda = dynamic_cast<kernels::cuda::CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InternalError("--device cuda: the rank's backend is not a CUDA backend");
  }
  ASSIGN_OR_RETURN(ncclUniqueId id, parallel::NcclUniqueIdFromBytes(setup));
  absl::StatusOr<std::unique_ptr<parallel::Collectives>> nccl = parallel::CreateNcclCollectives(
      shard.rank, shard.world_size, id, cuda->stream(), timeout);
  if (!nccl.ok()) {
    return absl::Status(nccl.status().code(),
                        absl::StrCat("--device cuda: rank ", shard.rank, " joining NCCL: ",
                                     nccl.status().message()));
  }
  return nccl;
#else
  return absl::FailedPreconditionError(
      "--device cuda: built without CUDA (configure with -DSAOLA_CUDA=ON where nvcc is found)");
#endif
}

}  // namespace saola::cli
