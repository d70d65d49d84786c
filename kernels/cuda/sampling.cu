// Greedy sampling on CUDA: the argmax of each logits row, the lowest id on ties (as the engine's
// CPU sampler, worker/engine/sampler.h). One block per row; each thread scans a strided share of
// the vocabulary, then a shared-memory tree picks the best (value, id) pair. NaN logits never win.
// Top-k / top-p sampling with a per-request seed is not on the GPU yet.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/launch.h"

namespace saola::kernels::cuda::internal {
namespace {

constexpr int kThreads = 1024;

// True if (v, i) beats (best_v, best_i): larger value, or the same value and a lower id.
__device__ __forceinline__ bool Better(float v, int32_t i, float best_v, int32_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

__global__ void __launch_bounds__(kThreads)
    ArgmaxKernel(const float* logits, int64_t vocab, int32_t* out) {
  __shared__ float best_v[kThreads];
  __shared__ int32_t best_i[kThreads];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float v = -INFINITY;
  int32_t idx = INT32_MAX;
  for (int64_t k = threadIdx.x; k < vocab; k += blockDim.x) {
    const float x = row[k];
    if (Better(x, static_cast<int32_t>(k), v, idx)) {  // false for NaN
      v = x;
      idx = static_cast<int32_t>(k);
    }
  }
  best_v[threadIdx.x] = v;
  best_i[threadIdx.x] = idx;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float ov = best_v[threadIdx.x + half];
      const int32_t oi = best_i[threadIdx.x + half];
      if (Better(ov, oi, best_v[threadIdx.x], best_i[threadIdx.x])) {
        best_v[threadIdx.x] = ov;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  // A row of only NaN / -inf logits yields id 0.
  if (threadIdx.x == 0) out[blockIdx.x] = best_i[0] == INT32_MAX ? 0 : best_i[0];
}

}  // namespace

void LaunchArgmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out, Stream stream) {
  if (rows <= 0 || vocab <= 0) return;
  ArgmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, out);
}

}  // namespace saola::kernels::cuda::internal
