// Device helpers shared by the CUDA kernels: warp reductions and reading one element of a
// ggml-layout weight row (kernels/dtype.h). Internal to kernels/cuda.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace saola::kernels::cuda::internal {

inline constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Blocks are 2-byte aligned in a row (every block size is even), so scales and packed quants are
// read as 16-bit words.
__device__ __forceinline__ float LoadHalf(const uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const uint16_t*>(p)));
}

__device__ __forceinline__ uint32_t Load4Bytes(const uint8_t* p) {
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16);
}

/// Element k of a weight row of type T (dequantized as ggml does).
template <DType T>
__device__ __forceinline__ float LoadElem(const uint8_t* row, int64_t k) {
  if constexpr (T == DType::kF32) {
    return reinterpret_cast<const float*>(row)[k];
  } else if constexpr (T == DType::kF16) {
    return __half2float(reinterpret_cast<const __half*>(row)[k]);
  } else if constexpr (T == DType::kBF16) {
    return __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(row)[k]) << 16);
  } else {
    const int e = static_cast<int>(k & 31);
    if constexpr (T == DType::kQ8_0) {
      const uint8_t* b = row + (k >> 5) * 34;
      return LoadHalf(b) * static_cast<float>(static_cast<int8_t>(b[2 + e]));
    } else if constexpr (T == DType::kQ4_0) {
      const uint8_t* b = row + (k >> 5) * 18;
      const uint8_t q = b[2 + (e & 15)];
      return LoadHalf(b) * static_cast<float>((e < 16 ? (q & 15) : (q >> 4)) - 8);
    } else {
      static_assert(T == DType::kQ4_1, "unsupported weight type");
      const uint8_t* b = row + (k >> 5) * 20;
      const uint8_t q = b[4 + (e & 15)];
      return LoadHalf(b) * static_cast<float>(e < 16 ? (q & 15) : (q >> 4)) + LoadHalf(b + 2);
    }
  }
}

/// Elements 4 * sub .. 4 * sub + 3 (sub in 0..7) of the quantized block at b.
template <DType T>
__device__ __forceinline__ void Dequant4(const uint8_t* b, int sub, float w[4]) {
  if constexpr (T == DType::kQ8_0) {
    const float d = LoadHalf(b);
    const uint32_t q = Load4Bytes(b + 2 + 4 * sub);
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = d * static_cast<float>(static_cast<int8_t>(q >> (8 * i)));
  } else if constexpr (T == DType::kQ4_0) {
    const float d = LoadHalf(b);
    const uint32_t q = Load4Bytes(b + 2 + 4 * (sub & 3));
    const int shift = sub < 4 ? 0 : 4;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = d * static_cast<float>(static_cast<int>((q >> (8 * i + shift)) & 15) - 8);
    }
  } else {
    static_assert(T == DType::kQ4_1, "unsupported quantized type");
    const float d = LoadHalf(b);
    const float m = LoadHalf(b + 2);
    const uint32_t q = Load4Bytes(b + 4 + 4 * (sub & 3));
    const int shift = sub < 4 ? 0 : 4;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = d * static_cast<float>((q >> (8 * i + shift)) & 15) + m;
    }
  }
}

/// Dispatches a functor templated on the weight type: f.template operator()<T>().
template <typename F>
void DispatchWeightType(DType type, F&& f) {
  switch (type) {
    case DType::kF32: f.template operator()<DType::kF32>(); break;
    case DType::kF16: f.template operator()<DType::kF16>(); break;
    case DType::kBF16: f.template operator()<DType::kBF16>(); break;
    case DType::kQ8_0: f.template operator()<DType::kQ8_0>(); break;
    case DType::kQ4_0: f.template operator()<DType::kQ4_0>(); break;
    case DType::kQ4_1: f.template operator()<DType::kQ4_1>(); break;
    default: break;
  }
}

}  // namespace saola::kernels::cuda::internal
