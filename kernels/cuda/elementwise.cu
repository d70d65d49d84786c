// Row-wise and element-wise ops on CUDA: RMSNorm (alone and fused with the residual add), add,
// SiLU·mul, RoPE and the f16 KV store. One thread block per token row for the norms (a block-wide
// sum of squares), a flat grid for the rest. Semantics follow the CPU references in
// kernels/cpu/ops.h up to float rounding order: the norms sum squares in float per thread and
// across the block (the CPU sums in double); RoPE builds theta_i = pos * theta_scale^i by repeated
// multiplication as ggml does and uses full-precision cosf/sinf; the KV store rounds to nearest
// even (__float2half_rn), bit-identical to the CPU.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/launch.h"

namespace saola::kernels::cuda::internal {
namespace {

constexpr int kNormThreads = 256;
constexpr int kFlatThreads = 256;

unsigned FlatBlocks(int64_t count) {
  return static_cast<unsigned>((count + kFlatThreads - 1) / kFlatThreads);
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float BlockSum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  v = WarpSum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int num_warps = blockDim.x / 32;
    float s = lane < num_warps ? partial[lane] : 0.0f;
    s = WarpSum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// out may alias x: each thread reads its elements before the block sum and writes them after.
__global__ void __launch_bounds__(kNormThreads)
    RmsNormKernel(const float* x, const float* weight, int64_t dim, float eps, float* out) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = x[base + i];
    ss += v * v;
  }
  const float mean = BlockSum(ss) / static_cast<float>(dim);
  const float scale = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    out[base + i] = (x[base + i] * scale) * weight[i];
  }
}

// out may alias delta (not residual): each element is read and written by the same thread.
__global__ void __launch_bounds__(kNormThreads)
    AddRmsNormKernel(float* residual, const float* delta, const float* weight, int64_t dim,
                     float eps, float* out) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = residual[base + i] + delta[base + i];
    residual[base + i] = v;
    ss += v * v;
  }
  const float mean = BlockSum(ss) / static_cast<float>(dim);
  const float scale = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    out[base + i] = (residual[base + i] * scale) * weight[i];
  }
}

__global__ void AddKernel(float* x, const float* delta, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] += delta[i];
}

__global__ void SiluMulKernel(const float* gate, const float* up, int64_t count, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const float g = gate[i];
  out[i] = g / (1.0f + expf(-g)) * up[i];
}

// One thread per rotated pair: (token, head, pair i < rope_dim / 2).
__global__ void RopeKernel(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                           int32_t head_dim, bool neox, int32_t half, float theta_scale,
                           float freq_scale) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = n * num_heads * half;
  if (idx >= total) return;
  const int32_t i = static_cast<int32_t>(idx % half);
  const int64_t token_head = idx / half;
  const int64_t token = token_head / num_heads;
  float theta = static_cast<float>(positions[token]);
  for (int32_t j = 0; j < i; ++j) theta *= theta_scale;
  float s, c;
  sincosf(freq_scale * theta, &s, &c);
  float* xh = x + token_head * head_dim;
  const int32_t i0 = neox ? i : 2 * i;
  const int32_t i1 = neox ? i + half : 2 * i + 1;
  const float x0 = xh[i0];
  const float x1 = xh[i1];
  xh[i0] = fmaf(x0, c, -(x1 * s));
  xh[i1] = fmaf(x0, s, x1 * c);
}

// One thread per (token, element of its kv row).
__global__ void StoreKvKernel(const float* k, const float* v, const int32_t* slots, int64_t n,
                              int64_t row, __half* k_cache, __half* v_cache) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n * row) return;
  const int64_t token = idx / row;
  const int64_t e = idx % row;
  const int64_t dst = static_cast<int64_t>(slots[token]) * row + e;
  k_cache[dst] = __float2half_rn(k[idx]);
  v_cache[dst] = __float2half_rn(v[idx]);
}

}  // namespace

void LaunchRmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                   float* out, Stream stream) {
  if (n <= 0 || dim <= 0) return;
  RmsNormKernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(x, weight, dim, eps, out);
}

void LaunchAddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n,
                      int64_t dim, float eps, float* out, Stream stream) {
  if (n <= 0 || dim <= 0) return;
  AddRmsNormKernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(residual, delta, weight,
                                                                          dim, eps, out);
}

void LaunchAdd(float* x, const float* delta, int64_t n, int64_t dim, Stream stream) {
  const int64_t count = n * dim;
  if (count <= 0) return;
  AddKernel<<<FlatBlocks(count), kFlatThreads, 0, stream>>>(x, delta, count);
}

void LaunchSiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out,
                   Stream stream) {
  const int64_t count = n * dim;
  if (count <= 0) return;
  SiluMulKernel<<<FlatBlocks(count), kFlatThreads, 0, stream>>>(gate, up, count, out);
}

void LaunchRope(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                int32_t head_dim, RopeMode mode, int32_t rope_dim, float theta_scale,
                float freq_scale, Stream stream) {
  const int32_t half = rope_dim / 2;
  const int64_t total = n * num_heads * half;
  if (total <= 0) return;
  RopeKernel<<<FlatBlocks(total), kFlatThreads, 0, stream>>>(
      x, positions, n, num_heads, head_dim, mode == RopeMode::kNeox, half, theta_scale,
      freq_scale);
}

void LaunchStoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
                   const KvLayer& kv, Stream stream) {
  const int64_t row = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
  if (n <= 0 || row <= 0) return;
  StoreKvKernel<<<FlatBlocks(n * row), kFlatThreads, 0, stream>>>(
      k, v, slots, n, row, reinterpret_cast<__half*>(kv.k), reinterpret_cast<__half*>(kv.v));
}

}  // namespace saola::kernels::cuda::internal
