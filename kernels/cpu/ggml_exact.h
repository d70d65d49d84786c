// Scalar building blocks that reproduce llama.cpp's CPU arithmetic bit for bit (ggml-cpu as
// built by scripts/build-llama-cpp: GCC 12, -O3 -march=native on an AVX-512 machine, so the
// AVX-512 branches of ggml-cpu/vec.h and simd-mappings.h, GCC's _mm512_reduce_add_ps, and FMA
// wherever ggml's intrinsics use it). The kernels and references that must match llama.cpp
// (matmul_ref.cc, attention, elementwise) are written in terms of these; a SIMD implementation
// must produce the same values lane for lane.
//
// The inline helpers are static: the SIMD translation units (compiled with -mavx2 / -mavx512f)
// include them too, and one shared copy could otherwise end up running on a machine without those
// instructions.
#pragma once

#include <cmath>
#include <cstdint>

namespace saola::kernels::cpu::internal {

/// GCC's _mm512_reduce_add_ps of 16 lanes: a_i = x[i + 8] + x[i] (i < 8), b_i = a[i + 4] + a[i]
/// (i < 4), c0 = b0 + b2, c1 = b1 + b3, result c0 + c1.
static inline float Reduce16(const float* x) {
  float a[8], b[4];
  for (int i = 0; i < 8; ++i) a[i] = x[i + 8] + x[i];
  for (int i = 0; i < 4; ++i) b[i] = a[i + 4] + a[i];
  return (b[0] + b[2]) + (b[1] + b[3]);
}

/// One lane of ggml_v_expf (the AVX-512 variant in ggml-cpu/vec.h): a polynomial exp with
/// _mm512_scalef_ps, flushing |n| > 192 to 0 or inf.
static inline float GgmlExpf(float x) {
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float j = std::fma(
      std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
      u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
  return std::ldexp(j, static_cast<int>(n));
}

/// One lane of ggml_v_silu (AVX-512): x / (1 + expf(0 - x)).
static inline float GgmlSilu(float x) { return x / (1.0f + GgmlExpf(0.0f - x)); }

/// ggml_vec_dot_f16 on AVX-512 (F32 accumulation): sum[4][16] lanes, element i + 16 j + l of each
/// 64-step into sum[j][l] by fmaf, then sum0 += sum2, sum1 += sum3, sum0 += sum1 lane-wise,
/// Reduce16(sum0) widened to double, leftovers (n % 64) added in double as float products.
float GgmlDotF16(const uint16_t* x, const uint16_t* y, int64_t n);

/// ggml_vec_dot_{q8_0_q8_0, q4_0_q8_0, q4_1_q8_1} on AVX2/AVX-512 VNNI (see matmul_ref.cc):
/// `blocks` one weight row, qs / dx / sx the activation quants, scales and Q8_1 sums.
template <typename Block>
float GgmlQuantDot(const Block* blocks, const int8_t* qs, const float* dx, const float* sx,
                   int64_t nb);

}  // namespace saola::kernels::cpu::internal
