// The prefill GEMM through cuBLAS: y[n, rows] = x[n, cols] · wᵀ for a weight kept packed
// (F16/BF16/Q8_0/Q4_0/Q4_1) by dequantizing tiles of its rows into a dense f32 scratch matrix and
// running one cublasGemmEx per tile on tensor cores.
//
//   for r0 in 0, T, 2T, ... (T = tile rows):
//     scratch[0:R, :] = dequantize(w rows r0 .. r0+R)          LaunchDequantizeRows (matmul.cu)
//     y[:, r0:r0+R]   = x · scratchᵀ                            cublasGemmEx, TF32 tensor cores
//
// Layout: cuBLAS is column-major. Row-major scratch [R, cols] is the column-major cols x R
// matrix scratchᵀ (lda = cols), row-major x [n, cols] is the column-major cols x n matrix xᵀ
// (ldb = cols), and row-major y [n, rows] is the column-major rows x n matrix yᵀ (ldc = rows).
// So yᵀ[r0:r0+R, :] = scratch · xᵀ is GEMM(op(A) = T, op(B) = N, m = R, n, k = cols) writing at
// y + r0 with ldc = rows: the column block of y that belongs to the tile, no transpose pass.
// F32 weights are already dense (lda = row stride / 4) and skip the dequantization and scratch.
//
// Format: TF32 (CUBLAS_COMPUTE_32F_FAST_TF32 on f32 operands, f32 accumulation). Activations stay
// f32 as the backend holds them, so nothing converts x, and nothing can overflow: residual-stream
// activations and the down projection's input (silu(gate) * up) reach 1e3..1e4 in real models
// (outlier features), close to or past f16's 65504 after a product, while TF32 keeps f32's 8-bit
// exponent. bf16 has that range too but a 7-bit mantissa (2^-8 relative per operand, 8x TF32's);
// TF32 rounds each operand to 11 significant bits (unit roundoff 2^-11, or 2^-10 if the hardware
// truncates), so every product is within 2^-9 relative and |y - exact| <= (2^-9 + cols * 2^-24) *
// sum_k |x_k w_k| (the second term: f32 accumulation). The cost: the scratch holds 4 bytes per
// weight (bf16 would hold 2) and TF32 tensor throughput is half of bf16's; at SmolLM2's sizes the
// GEMMs are small enough that neither dominates. A bf16 variant is the next step if
// saola-cuda-bench shows the large-n GEMMs compute-bound.
//
// Knobs (CudaGemmOptions, gemm_options.h): cublas_scratch_bytes bounds the scratch (64 MiB by
// default: every SmolLM2 matrix but the vocabulary projection fits in one tile; a 7B model's
// 14336 x 4096 FFN weight runs in 4). Tiles are a multiple of 16 rows when they can be, so each
// tile's column block of y starts 64-byte aligned. The scratch is grow-only and reused by every
// tile and every call: the stream orders tile t+1's dequantization after tile t's GEMM.
// Internal to kernels/cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

struct CUstream_st;
struct cublasContext;

namespace saola::kernels::cuda::internal {

class CublasGemm {
 public:
  /// A cuBLAS handle on the current device, its work queued on `stream`.
  static absl::StatusOr<std::unique_ptr<CublasGemm>> Create(CUstream_st* stream);
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  /// Enqueues y[n, w.rows] = x[n, w.cols] · wᵀ (device pointers) in tiles of at most
  /// `scratch_limit_bytes` of dequantized weights. Precondition: w.type is one the CUDA matmul
  /// supports. Errors are those of the launches and cuBLAS calls made so far.
  absl::Status Run(const Weight& w, const float* x, int64_t n, float* y,
                   size_t scratch_limit_bytes);

  /// Weight rows per dequantized tile: all `rows` when they fit in `limit_bytes` as f32, else the
  /// most that fit rounded down to a multiple of 16 (when at least 16 fit), and never below 1.
  static int64_t TileRows(int64_t rows, int64_t cols, size_t limit_bytes);

  /// Bytes of scratch held now (it only grows).
  size_t scratch_bytes() const { return scratch_bytes_; }

 private:
  CublasGemm(cublasContext* handle, CUstream_st* stream) : handle_(handle), stream_(stream) {}
  absl::Status EnsureScratch(size_t bytes);
  // yᵀ[0:m, :] (ldc) = A(op T: m x k, lda) · xᵀ (k x n).
  absl::Status Gemm(const float* a, int64_t lda, int64_t m, int64_t n, int64_t k, const float* x,
                    float* y, int64_t ldc);

  cublasContext* handle_;
  CUstream_st* stream_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace saola::kernels::cuda::internal
