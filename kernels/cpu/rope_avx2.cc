// AVX2 rotations of Rope (kernels/cpu/rope.cc); the angles come from the caller.
#include <immintrin.h>

#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu::internal {

void RopeNormRowAvx2(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                     const float* cos, const float* sin) {
  // Four pairs (x[2i], x[2i+1]) per vector: cos and sin are duplicated into both lanes of their
  // pair, the pair is swapped, and addsub gives (x0 c - x1 s, x1 c + x0 s).
  const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  for (int32_t h = 0; h < num_heads; ++h) {
    float* xh = x + static_cast<int64_t>(h) * head_dim;
    int32_t i = 0;
    for (; i + 4 <= half; i += 4) {
      const __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cos + i)), dup);
      const __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sin + i)), dup);
      const __m256 v = _mm256_loadu_ps(xh + 2 * i);
      const __m256 swapped = _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1));
      _mm256_storeu_ps(xh + 2 * i, _mm256_addsub_ps(_mm256_mul_ps(v, c), _mm256_mul_ps(swapped, s)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[2 * i];
      const float x1 = xh[2 * i + 1];
      xh[2 * i] = x0 * cos[i] - x1 * sin[i];
      xh[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
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
      _mm256_storeu_ps(xh + i, _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s)));
      _mm256_storeu_ps(xh + half + i, _mm256_add_ps(_mm256_mul_ps(x0, s), _mm256_mul_ps(x1, c)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[i];
      const float x1 = xh[i + half];
      xh[i] = x0 * cos[i] - x1 * sin[i];
      xh[i + half] = x0 * sin[i] + x1 * cos[i];
    }
  }
}

}  // namespace saola::kernels::cpu::internal
