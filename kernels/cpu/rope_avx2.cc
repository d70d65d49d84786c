// AVX2 rotations of Rope (kernels/cpu/rope.cc); the angles come from the caller.
#include <immintrin.h>

#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu::internal {

void RopeNormRowAvx2(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                     const float* cos, const float* sin) {
  // Four pairs (x[2i], x[2i+1]) per vector: x0 and x1 are duplicated across their pair, cos/sin
  // interleaved, and fmaddsub gives (fma(x0, c, -(x1 s)), fma(x0, s, x1 c)): the rounding of
  // ggml's rotate_pairs as GCC compiles it (see RopeReference).
  for (int32_t h = 0; h < num_heads; ++h) {
    float* xh = x + static_cast<int64_t>(h) * head_dim;
    int32_t i = 0;
    for (; i + 4 <= half; i += 4) {
      const __m128 c4 = _mm_loadu_ps(cos + i);
      const __m128 s4 = _mm_loadu_ps(sin + i);
      const __m256 cs = _mm256_set_m128(_mm_unpackhi_ps(c4, s4), _mm_unpacklo_ps(c4, s4));
      const __m256 sc = _mm256_set_m128(_mm_unpackhi_ps(s4, c4), _mm_unpacklo_ps(s4, c4));
      const __m256 v = _mm256_loadu_ps(xh + 2 * i);
      const __m256 x0 = _mm256_moveldup_ps(v);
      const __m256 x1 = _mm256_movehdup_ps(v);
      _mm256_storeu_ps(xh + 2 * i, _mm256_fmaddsub_ps(x0, cs, _mm256_mul_ps(x1, sc)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[2 * i];
      const float x1 = xh[2 * i + 1];
      xh[2 * i] = __builtin_fmaf(x0, cos[i], -(x1 * sin[i]));
      xh[2 * i + 1] = __builtin_fmaf(x0, sin[i], x1 * cos[i]);
    }
  }
}

void RopeNeoxRowAvx2(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                     const float* cos, const float* sin) {
  for (int32_t h = 0; h < num_heads; ++h) {
    float* xh = x + static_cast<int64_t>(h) * head_dim;
    int32_t i = 0;
    for (; i + 8 <= half; i += 8) {
      const __m256 c = _mm256_loadu_ps(cos + i);
      const __m256 s = _mm256_loadu_ps(sin + i);
      const __m256 x0 = _mm256_loadu_ps(xh + i);
      const __m256 x1 = _mm256_loadu_ps(xh + half + i);
      _mm256_storeu_ps(xh + i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
      _mm256_storeu_ps(xh + half + i, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[i];
      const float x1 = xh[i + half];
      xh[i] = __builtin_fmaf(x0, cos[i], -(x1 * sin[i]));
      xh[i + half] = __builtin_fmaf(x0, sin[i], x1 * cos[i]);
    }
  }
}

}  // namespace saola::kernels::cpu::internal
