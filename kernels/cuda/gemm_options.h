// Which GEMM the CUDA backend's MatMul runs for prefill, and the knobs of the cuBLAS one.
//
// A matmul of n token rows runs one of three kernels (kernels/cuda/matmul.cu, gemm_cublas.h):
//   n <= kMaxGemvTokens (8)          GEMV, always: decode reads each weight once, no GEMM wins.
//   n >  8, path kTiled              the own tiled f32 GEMM (no tensor cores, no scratch).
//   n >  8, path kCublas             cuBLAS TF32 on dequantized weight tiles.
//   n >  8, path kAuto               kCublas when n >= cublas_min_tokens, else kTiled.
// The default threshold (64 tokens) is a guess from the shapes of the work, not a measurement:
// below a few dozen token rows the dequantize pass (weights written and read back as f32) costs
// about as much as the tiled kernel's whole GEMM, above it tensor cores pay for it. Measure the
// crossover on the target GPU with `saola-cuda-bench --sections gemm` (both paths timed per
// shape and n) and set it with CudaBackend::set_gemm_options.
//
// SAOLA_CUDA_GEMM=auto|tiled|cublas in the environment sets the starting path of every
// CudaBackend (CudaBackend::Create fails on any other value), to force one path end to end for
// a benchmark without rebuilding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace saola::kernels::cuda {

enum class CudaGemmPath { kAuto, kTiled, kCublas };

struct CudaGemmOptions {
  CudaGemmPath path = CudaGemmPath::kAuto;
  /// kAuto takes cuBLAS from this many token rows up.
  int64_t cublas_min_tokens = 64;
  /// Most bytes of dequantized f32 weights the cuBLAS path keeps at once; larger weights run in
  /// tiles of rows. At least one row is always dequantized, whatever the limit.
  size_t cublas_scratch_bytes = size_t{64} << 20;
};

/// "auto", "tiled" or "cublas"; INVALID_ARGUMENT otherwise.
absl::StatusOr<CudaGemmPath> ParseCudaGemmPath(std::string_view name);
std::string_view CudaGemmPathName(CudaGemmPath path);

/// The defaults with the path from SAOLA_CUDA_GEMM when it is set; INVALID_ARGUMENT (naming the
/// variable) when its value is not a path.
absl::StatusOr<CudaGemmOptions> CudaGemmOptionsFromEnv();

/// kTiled or kCublas (never kAuto) for a matmul of n > kMaxGemvTokens token rows.
CudaGemmPath ChooseCudaGemmPath(const CudaGemmOptions& options, int64_t n);

}  // namespace saola::kernels::cuda
