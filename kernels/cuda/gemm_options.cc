#include "kernels/cuda/gemm_options.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace saola::kernels::cuda {

absl::StatusOr<CudaGemmPath> ParseCudaGemmPath(std::string_view name) {
  if (name == "auto") return CudaGemmPath::kAuto;
  if (name == "tiled") return CudaGemmPath::kTiled;
  if (name == "cublas") return CudaGemmPath::kCublas;
  return absl::InvalidArgumentError(
      absl::StrCat("cuda gemm path \"", std::string(name), "\": want auto, tiled or cublas"));
}

std::string_view CudaGemmPathName(CudaGemmPath path) {
  switch (path) {
    case CudaGemmPath::kAuto: return "auto";
    case CudaGemmPath::kTiled: return "tiled";
    case CudaGemmPath::kCublas: return "cublas";
  }
  return "?";
}

absl::StatusOr<CudaGemmOptions> CudaGemmOptionsFromEnv() {
  CudaGemmOptions options;
  const char* env = std::getenv("SAOLA_CUDA_GEMM");
  if (env == nullptr) return options;
  absl::StatusOr<CudaGemmPath> path = ParseCudaGemmPath(env);
  if (!path.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SAOLA_CUDA_GEMM: ", path.status().message()));
  }
  options.path = *path;
  return options;
}

CudaGemmPath ChooseCudaGemmPath(const CudaGemmOptions& options, int64_t n) {
  if (options.path != CudaGemmPath::kAuto) return options.path;
  return n >= options.cublas_min_tokens ? CudaGemmPath::kCublas : CudaGemmPath::kTiled;
}

}  // namespace saola::kernels::cuda
