// AVX2 row kernels of RmsNorm / AddRmsNorm (kernels/cpu/norm.cc): float squares widened to double
// and summed in four double accumulators, then one scale-and-weight pass.
#include <immintrin.h>

#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu::internal {
namespace {

// acc0 += (double)sq[0..3], acc1 += (double)sq[4..7].
inline void AccumulateSquares(__m256 v, __m256d& acc0, __m256d& acc1) {
  const __m256 sq = _mm256_mul_ps(v, v);
  acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
  acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
}

inline double HorizontalSum(__m256d a, __m256d b, __m256d c, __m256d d) {
  const __m256d s = _mm256_add_pd(_mm256_add_pd(a, b), _mm256_add_pd(c, d));
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

}  // namespace

double SumSquaresAvx2(const float* x, int64_t dim) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    AccumulateSquares(_mm256_loadu_ps(x + i), a0, a1);
    AccumulateSquares(_mm256_loadu_ps(x + i + 8), a2, a3);
  }
  for (; i + 8 <= dim; i += 8) AccumulateSquares(_mm256_loadu_ps(x + i), a0, a1);
  double sum = HorizontalSum(a0, a1, a2, a3);
  for (; i < dim; ++i) sum += static_cast<double>(x[i] * x[i]);
  return sum;
}

double AddSumSquaresAvx2(float* residual, const float* delta, int64_t dim) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    const __m256 r0 = _mm256_add_ps(_mm256_loadu_ps(residual + i), _mm256_loadu_ps(delta + i));
    const __m256 r1 =
        _mm256_add_ps(_mm256_loadu_ps(residual + i + 8), _mm256_loadu_ps(delta + i + 8));
    _mm256_storeu_ps(residual + i, r0);
    _mm256_storeu_ps(residual + i + 8, r1);
    AccumulateSquares(r0, a0, a1);
    AccumulateSquares(r1, a2, a3);
  }
  for (; i + 8 <= dim; i += 8) {
    const __m256 r0 = _mm256_add_ps(_mm256_loadu_ps(residual + i), _mm256_loadu_ps(delta + i));
    _mm256_storeu_ps(residual + i, r0);
    AccumulateSquares(r0, a0, a1);
  }
  double sum = HorizontalSum(a0, a1, a2, a3);
  for (; i < dim; ++i) {
    residual[i] += delta[i];
    sum += static_cast<double>(residual[i] * residual[i]);
  }
  return sum;
}

void ScaleMulAvx2(const float* x, float scale, const float* weight, int64_t dim, float* out) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(y, _mm256_loadu_ps(weight + i)));
  }
  for (; i < dim; ++i) out[i] = (x[i] * scale) * weight[i];
}

}  // namespace saola::kernels::cpu::internal
