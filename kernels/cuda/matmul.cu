// Weight-only quantized matmul and embedding lookup on CUDA: y[n, rows] = x[n, cols] · wᵀ.
//
// Two paths here, picked by the number of token rows n, and a third in gemm_cublas.cc (cuBLAS on
// dequantized tiles; CudaBackend picks it or the tiled GEMM for prefill, gemm_options.h):
// * GEMV (n <= kMaxGemvTokens, decode): one warp per output row, the packed weight row read once
//   and dequantized in registers. For the quantized types each lane takes 4 elements of a
//   32-element block (8 lanes per block, 4 blocks per warp step), so the activation reads of a
//   warp are 128 contiguous bytes per token (float4 when x is 16-byte aligned) and the block's
//   scale is shared by its 8 lanes through L1. The NT token rows are template-unrolled so every
//   weight element feeds NT FMAs from registers. Float weights (F32/F16/BF16) use a plain strided
//   loop. Weights are 2-byte aligned blocks (18/20/34 bytes), so they are read as 16-bit words;
//   repacking on upload into 16-byte-aligned scale and quant planes would allow 128-bit loads
//   (not done yet).
// * Tiled GEMM (prefill): 64 weight rows x 64 tokens per 256-thread block, k in steps of 32 (one
//   quant block); each step dequantizes the weight tile into shared memory as floats, so the
//   dequantization is paid once per 64 tokens, and each thread accumulates a 4 x 4 register tile.
// * Dequantize (for the cuBLAS path, gemm_cublas.cc): weight rows written out as a dense f32
//   matrix, one thread per 4 elements of a quant block (one float4 store), grid-stride.
// The kernels here compute in float32 on dequantized weights and unquantized activations (the
// CPU backend instead quantizes activations to Q8 as llama.cpp does; the cuBLAS path rounds both
// operands to TF32, gemm_cublas.h); the tests bound each difference.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/launch.h"

namespace saola::kernels::cuda::internal {
namespace {

constexpr int kGemvWarps = 4;
constexpr int kTileRows = 64;
constexpr int kTileTokens = 64;
constexpr int kTileK = 32;
constexpr int kGemmThreads = 256;

// A constant, so device code may use it (GetDTypeInfo is a host function).
template <DType T>
inline constexpr int kBlockBytes = GetDTypeInfo(T).block_bytes;

template <bool kVec>
__device__ __forceinline__ void LoadX4(const float* p, float v[4]) {
  if constexpr (kVec) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    v[0] = f.x;
    v[1] = f.y;
    v[2] = f.z;
    v[3] = f.w;
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = p[i];
  }
}

template <DType T, int NT, bool kVec>
__global__ void __launch_bounds__(kGemvWarps * 32)
    GemvQuantKernel(const uint8_t* w, size_t stride, int64_t rows, int64_t cols, const float* x,
                    float* y) {
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp;
  if (row >= rows) return;
  const uint8_t* wr = w + row * stride;
  const int64_t nb = cols / 32;
  const int sub = lane % 8;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  for (int64_t b = lane / 8; b < nb; b += 4) {
    float wv[4];
    Dequant4<T>(wr + b * kBlockBytes<T>, sub, wv);
    const int64_t k = b * 32 + 4 * sub;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float xv[4];
      LoadX4<kVec>(x + t * cols + k, xv);
      acc[t] += wv[0] * xv[0] + wv[1] * xv[1] + wv[2] * xv[2] + wv[3] * xv[3];
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float s = WarpSum(acc[t]);
    if (lane == 0) y[t * rows + row] = s;
  }
}

template <DType T, int NT>
__global__ void __launch_bounds__(kGemvWarps * 32)
    GemvFloatKernel(const uint8_t* w, size_t stride, int64_t rows, int64_t cols, const float* x,
                    float* y) {
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp;
  if (row >= rows) return;
  const uint8_t* wr = w + row * stride;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  for (int64_t k = lane; k < cols; k += 32) {
    const float wv = LoadElem<T>(wr, k);
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] += wv * x[t * cols + k];
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float s = WarpSum(acc[t]);
    if (lane == 0) y[t * rows + row] = s;
  }
}

template <DType T>
__global__ void __launch_bounds__(kGemmThreads)
    GemmTiledKernel(const uint8_t* w, size_t stride, int64_t rows, int64_t cols, const float* x,
                    int64_t n, float* y) {
  // +4 keeps rows 16-byte aligned while shifting banks between k rows.
  __shared__ float ws[kTileK][kTileRows + 4];
  __shared__ float xs[kTileK][kTileTokens + 4];
  const int tid = threadIdx.x;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
  const int64_t tok0 = static_cast<int64_t>(blockIdx.y) * kTileTokens;
  const int ty = tid / 16;  // rows ty*4 .. ty*4+3 of the tile
  const int tx = tid % 16;  // tokens tx*4 .. tx*4+3
  // Loader mapping: 64 tile rows (or tokens) x 4 parts of 8 k each.
  const int load_r = tid / 4;
  const int load_k = (tid % 4) * 8;
  float acc[4][4] = {};

  for (int64_t k0 = 0; k0 < cols; k0 += kTileK) {
    {
      const int64_t r = row0 + load_r;
      const uint8_t* wr = w + r * stride;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int64_t k = k0 + load_k + i;
        ws[load_k + i][load_r] = (r < rows && k < cols) ? LoadElem<T>(wr, k) : 0.0f;
      }
      const int64_t t = tok0 + load_r;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int64_t k = k0 + load_k + i;
        xs[load_k + i][load_r] = (t < n && k < cols) ? x[t * cols + k] : 0.0f;
      }
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = ws[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = xs[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t t = tok0 + tx * 4 + j;
    if (t >= n) continue;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = row0 + ty * 4 + i;
      if (r < rows) y[t * rows + r] = acc[i][j];
    }
  }
}

// Rows of w (already offset to the first row) as a dense [num_rows, cols] float matrix.
template <DType T>
__global__ void DequantizeRowsKernel(const uint8_t* w, size_t stride, int64_t num_rows,
                                     int64_t cols, float* out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (T == DType::kF32 || T == DType::kF16 || T == DType::kBF16) {
    const int64_t total = num_rows * cols;
    for (int64_t i = first; i < total; i += step) {
      const int64_t r = i / cols;
      out[i] = LoadElem<T>(w + r * stride, i - r * cols);
    }
  } else {
    // cols % 32 == 0, so element group i (4 floats) is out[4i..4i+3] and rows stay 16-byte
    // aligned for the float4 store.
    const int64_t groups_per_row = cols / 4;
    const int64_t total = num_rows * groups_per_row;
    for (int64_t i = first; i < total; i += step) {
      const int64_t r = i / groups_per_row;
      const int64_t g = i - r * groups_per_row;
      float v[4];
      Dequant4<T>(w + r * stride + (g / 8) * kBlockBytes<T>, static_cast<int>(g % 8), v);
      reinterpret_cast<float4*>(out)[i] = make_float4(v[0], v[1], v[2], v[3]);
    }
  }
}

template <DType T>
__global__ void EmbedKernel(const uint8_t* table, size_t stride, int64_t cols, const int32_t* ids,
                            float* out) {
  const int64_t i = blockIdx.x;
  const uint8_t* row = table + static_cast<int64_t>(ids[i]) * stride;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[i * cols + c] = LoadElem<T>(row, c);
}

template <DType T, int NT>
void LaunchGemv(const Weight& w, const float* x, float* y, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((w.rows + kGemvWarps - 1) / kGemvWarps));
  const auto* data = static_cast<const uint8_t*>(w.data);
  if constexpr (T == DType::kF32 || T == DType::kF16 || T == DType::kBF16) {
    GemvFloatKernel<T, NT><<<grid, kGemvWarps * 32, 0, stream>>>(data, w.row_stride_bytes, w.rows,
                                                                 w.cols, x, y);
  } else {
    if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
      GemvQuantKernel<T, NT, true><<<grid, kGemvWarps * 32, 0, stream>>>(
          data, w.row_stride_bytes, w.rows, w.cols, x, y);
    } else {
      GemvQuantKernel<T, NT, false><<<grid, kGemvWarps * 32, 0, stream>>>(
          data, w.row_stride_bytes, w.rows, w.cols, x, y);
    }
  }
}

template <DType T>
void LaunchMatMulTyped(const Weight& w, const float* x, int64_t n, float* y, cudaStream_t stream) {
  switch (n) {
    case 1: LaunchGemv<T, 1>(w, x, y, stream); return;
    case 2: LaunchGemv<T, 2>(w, x, y, stream); return;
    case 3: LaunchGemv<T, 3>(w, x, y, stream); return;
    case 4: LaunchGemv<T, 4>(w, x, y, stream); return;
    case 5: LaunchGemv<T, 5>(w, x, y, stream); return;
    case 6: LaunchGemv<T, 6>(w, x, y, stream); return;
    case 7: LaunchGemv<T, 7>(w, x, y, stream); return;
    case 8: LaunchGemv<T, 8>(w, x, y, stream); return;
    default: break;
  }
  static_assert(kMaxGemvTokens == 8, "the switch above covers 1..kMaxGemvTokens");
  const dim3 grid(static_cast<unsigned>((w.rows + kTileRows - 1) / kTileRows),
                  static_cast<unsigned>((n + kTileTokens - 1) / kTileTokens));
  GemmTiledKernel<T><<<grid, kGemmThreads, 0, stream>>>(
      static_cast<const uint8_t*>(w.data), w.row_stride_bytes, w.rows, w.cols, x, n, y);
}

}  // namespace

void LaunchMatMul(const Weight& w, const float* x, int64_t n, float* y, Stream stream) {
  if (n <= 0 || w.rows <= 0) return;
  DispatchWeightType(w.type, [&]<DType T>() { LaunchMatMulTyped<T>(w, x, n, y, stream); });
}

void LaunchDequantizeRows(const Weight& w, int64_t r0, int64_t num_rows, float* out,
                          Stream stream) {
  if (num_rows <= 0 || w.cols <= 0) return;
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride beyond this; plenty to fill a GPU
  DispatchWeightType(w.type, [&]<DType T>() {
    const int64_t per_thread = GetDTypeInfo(T).block_elems == 1 ? 1 : 4;
    const int64_t work = num_rows * w.cols / per_thread;
    const auto blocks =
        static_cast<unsigned>(std::min<int64_t>(kMaxBlocks, (work + kThreads - 1) / kThreads));
    DequantizeRowsKernel<T><<<blocks, kThreads, 0, stream>>>(
        static_cast<const uint8_t*>(w.data) + r0 * static_cast<int64_t>(w.row_stride_bytes),
        w.row_stride_bytes, num_rows, w.cols, out);
  });
}

void LaunchEmbed(const Weight& table, const int32_t* ids, int64_t n, float* out, Stream stream) {
  if (n <= 0 || table.cols <= 0) return;
  DispatchWeightType(table.type, [&]<DType T>() {
    const int threads = static_cast<int>(std::min<int64_t>(256, (table.cols + 31) / 32 * 32));
    EmbedKernel<T><<<static_cast<unsigned>(n), threads, 0, stream>>>(
        static_cast<const uint8_t*>(table.data), table.row_stride_bytes, table.cols, ids, out);
  });
}

}  // namespace saola::kernels::cuda::internal
