#include "worker/cli/device_backend.h"

#include <string>

#include "absl/strings/str_cat.h"
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

absl::StatusOr<std::unique_ptr<kernels::Backend>> MakeBackend(Device device, int threads) {
  if (device == Device::kCpu) return std::make_unique<kernels::cpu::CpuBackend>(threads);
#if defined(SAOLA_HAVE_CUDA)
  if (kernels::cuda::CudaDeviceCount() == 0) {
    return absl::FailedPreconditionError("--device cuda: no CUDA device");
  }
  absl::StatusOr<std::unique_ptr<kernels::cuda::CudaBackend>> cuda =
      kernels::cuda::CudaBackend::Create(0);
  if (!cuda.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("--device cuda: ", cuda.status().message()));
  }
  return std::unique_ptr<kernels::Backend>(std::move(*cuda));
#else
  return absl::FailedPreconditionError(
      "--device cuda: built without CUDA (configure with -DSAOLA_CUDA=ON where nvcc is found)");
#endif
}

}  // namespace saola::cli
