// AVX-512 loop of SiluMul (kernels/cpu/elementwise.cc): the exp and the division dominate, so the
// wider vectors pay off here (Add stays on the AVX2 loop; it is bound by memory).
#include <immintrin.h>

#include <cmath>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() (a self-initialized variable) as the
// merge source of unmasked operations, which -Wall reports as uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/ops_internal.h"
#include "kernels/cpu/ops_simd.h"

namespace saola::kernels::cpu::internal {

void SiluMulAvx512(const float* gate, const float* up, int64_t count, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));  // exp(-g)
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up + i)));
  }
  if (i < count) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (count - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(tail, gate + i);
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(out + i, tail, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(tail, up + i)));
  }
}

}  // namespace saola::kernels::cpu::internal
