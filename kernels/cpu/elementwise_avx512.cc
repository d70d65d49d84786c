// AVX-512 row of SiluMul (kernels/cpu/elementwise.cc), bit-identical to SiluMulReference
// (ggml_vec_swiglu_f32 with ggml_v_expf / ggml_v_silu).
#include <immintrin.h>

#include <cmath>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() (a self-initialized variable) as the
// merge source of unmasked operations, which -Wall reports as uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/ggml_exact_avx512.h"
#include "kernels/cpu/ops_internal.h"
#include "kernels/cpu/ops_simd.h"

namespace saola::kernels::cpu::internal {

void SiluMulRowAvx512(const float* gate, const float* up, int64_t dim, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = GgmlExp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up + i)));
  }
  for (; i < dim; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace saola::kernels::cpu::internal
