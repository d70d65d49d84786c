// AVX2 loops of Add and SiluMul (kernels/cpu/elementwise.cc).
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/ops_internal.h"
#include "kernels/cpu/ops_simd.h"

namespace saola::kernels::cpu::internal {

void AddAvx2(float* x, const float* delta, int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(delta + i)));
    _mm256_storeu_ps(x + i + 8,
                     _mm256_add_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(delta + i + 8)));
  }
  for (; i + 8 <= count; i += 8) {
    _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(delta + i)));
  }
  for (; i < count; ++i) x[i] += delta[i];
}

void SiluMulAvx2(const float* gate, const float* up, int64_t count, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = Exp8(_mm256_xor_ps(g, sign));  // exp(-g)
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace saola::kernels::cpu::internal
