// Kernel launchers of the CUDA backend, called by cuda_backend.cc on the backend's stream. Each
// enqueues its kernels and returns; the caller checks cudaGetLastError. Pointers are device
// memory unless named *_host. Internal to kernels/cuda.
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/attention_plan.h"

struct CUstream_st;

namespace saola::kernels::cuda::internal {

using Stream = CUstream_st*;

// matmul.cu
/// Token rows up to which LaunchMatMul runs the GEMV kernels (decode); above, the tiled GEMM.
inline constexpr int64_t kMaxGemvTokens = 8;
void LaunchMatMul(const Weight& w, const float* x, int64_t n, float* y, Stream stream);
/// Weight rows [r0, r0 + num_rows) dequantized to a dense row-major [num_rows, w.cols] float
/// matrix at `out` (16-byte aligned), for the cuBLAS GEMM (gemm_cublas.cc).
void LaunchDequantizeRows(const Weight& w, int64_t r0, int64_t num_rows, float* out,
                          Stream stream);
void LaunchEmbed(const Weight& table, const int32_t* ids, int64_t n, float* out, Stream stream);

// elementwise.cu
void LaunchRmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                   float* out, Stream stream);
void LaunchAddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n,
                      int64_t dim, float eps, float* out, Stream stream);
void LaunchAdd(float* x, const float* delta, int64_t n, int64_t dim, Stream stream);
void LaunchSiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out,
                   Stream stream);
/// theta_scale = powf(freq_base, -2 / rope_dim), computed by the caller as the CPU does.
void LaunchRope(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                int32_t head_dim, RopeMode mode, int32_t rope_dim, float theta_scale,
                float freq_scale, Stream stream);
void LaunchStoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
                   const KvLayer& kv, Stream stream);

// attention.cu. `workspace` holds num_partials * num_heads * (head_dim + 2) floats.
struct AttentionArgs {
  const float* q = nullptr;
  float* out = nullptr;
  KvLayer kv;
  int32_t num_heads = 0;
  float scale = 1.0f;
  const AttentionItem* items = nullptr;
  int32_t num_items = 0;
  const AttentionMerge* merges = nullptr;
  int32_t num_merges = 0;
  const int32_t* tables = nullptr;
  int32_t num_partials = 0;
  int32_t heads_per_block = 0;
  int32_t head_chunks = 0;
  float* workspace = nullptr;
};
void LaunchAttention(const AttentionArgs& args, Stream stream);

// sampling.cu
void LaunchArgmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out, Stream stream);

}  // namespace saola::kernels::cuda::internal
