// AVX2 loop of Add (kernels/cpu/elementwise.cc).
#include <immintrin.h>

#include "kernels/cpu/ops_internal.h"

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

}  // namespace saola::kernels::cpu::internal
