#include "worker/cli/device_backend.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_backend.h"

#if defined(SAOLA_HAVE_CUDA)
#include "kernels/cuda/cuda_backend.h"
#endif

namespace saola::cli {

absl::StatusOr<Device> ParseDevice(const Flags& flags) {
  if (!flags.Has("device")) return Device::kCpu;
  ASSIGN_OR_RETURN(std::string name, flags.String("device"));
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("--device must be cpu or cuda, not \"", name, "\""));
}

namespace {

// The CUDA backend on device `ordinal`; the caller has checked that it exists.
absl::StatusOr<std::unique_ptr<kernels::Backend>> MakeCudaBackend(int ordinal) {
#if defined(SAOLA_HAVE_CUDA)
  absl::StatusOr<std::unique_ptr<kernels::cuda::CudaBackend>> cuda =
      kernels::cuda::CudaBackend::Create(ordinal);
  if (!cuda.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("--device cuda: ", cuda.status().message()));
  }
  return std::unique_ptr<kernels::Backend>(std::move(*cuda));
#else
  return absl::FailedPreconditionError(
      "--device cuda: built without CUDA (configure with -DSAOLA_CUDA=ON where nvcc is found)");
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<kernels::Backend>> MakeBackend(Device device, int threads) {
  return MakeRankBackend(device, threads, /*rank=*/0, /*world_size=*/1);
}

absl::StatusOr<std::unique_ptr<kernels::Backend>> MakeRankBackend(Device device, int threads,
                                                                  int32_t rank,
                                                                  int32_t world_size) {
  if (device == Device::kCpu) return std::make_unique<kernels::cpu::CpuBackend>(threads);
#if defined(SAOLA_HAVE_CUDA)
  const int devices = kernels::cuda::CudaDeviceCount();
  if (devices == 0) return absl::FailedPreconditionError("--device cuda: no CUDA device");
  if (devices < world_size) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "--device cuda --tp-size %d: one GPU per rank needs %d CUDA devices, found %d",
        world_size, world_size, devices));
  }
#endif
  return MakeCudaBackend(rank);
}

}  // namespace saola::cli
