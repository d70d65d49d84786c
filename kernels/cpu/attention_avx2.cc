// AVX2 instantiation of the attention kernels (kernels/cpu/attention_kernel.h): 8 keys (rows
// kernel) or 8 query rows (lanes kernel) per vector, F16C for the f16 cache.
#include <immintrin.h>

#include "kernels/cpu/attention_kernel.h"
#include "kernels/cpu/ops_simd.h"

namespace saola::kernels::cpu::internal {
namespace {

struct Avx2 {
  using V = __m256;
  using Mask = __m256;  // all-ones lanes
  static constexpr int kWidth = 8;
  static constexpr int kLaneTokens = 8;  // lanes kernel: 8 score accumulators per pass (16 ymm)
  static constexpr int kPvRegs = 8;      // rows kernel: accumulator registers in P·V

  static V Zero() { return _mm256_setzero_ps(); }
  static V Set1(float x) { return _mm256_set1_ps(x); }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V Max(V a, V b) { return _mm256_max_ps(a, b); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V Exp(V x) { return Exp8(x); }

  static float First(V v) { return _mm256_cvtss_f32(v); }
  static float HorizontalMax(V v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
  }
  static float HorizontalSum(V v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
  }

  // Lanes at index >= count take `fill`.
  static V MaskLanes(V v, int count, float fill) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(count), lane));
    return _mm256_blendv_ps(_mm256_set1_ps(fill), v, keep);
  }

  // out[i] = sum of the 8 lanes of x[i] (unpack/shuffle adds, then the two 128-bit halves).
  static V Reduce(V* x) {
    V t[4];
    for (int j = 0; j < 4; ++j) {
      t[j] = _mm256_add_ps(_mm256_unpacklo_ps(x[2 * j], x[2 * j + 1]),
                           _mm256_unpackhi_ps(x[2 * j], x[2 * j + 1]));
    }
    const V u0 = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], 0x44), _mm256_shuffle_ps(t[0], t[1], 0xee));
    const V u1 = _mm256_add_ps(_mm256_shuffle_ps(t[2], t[3], 0x44), _mm256_shuffle_ps(t[2], t[3], 0xee));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
  }

  static __m256i LoadInt(const int32_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  // Lanes whose row position is at or past key_pos.
  static Mask Visible(__m256i pos, int32_t key_pos) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(pos, _mm256_set1_epi32(key_pos - 1)));
  }
  static Mask NoLanes() { return _mm256_setzero_ps(); }
  static V Where(Mask keep, V v, float fill) {
    return _mm256_blendv_ps(_mm256_set1_ps(fill), v, keep);
  }

  static void ConvertHalves(const uint16_t* src, float* dst, int count) {
    for (int i = 0; i < count; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
  }
};

}  // namespace

void AttentionRowsAvx2(const AttentionRows& rows, float* acc, float* m, float* l,
                       float* scratch) {
  RunRowsKernel<Avx2>(rows, acc, m, l, scratch);
}

void AttentionLanesAvx2(const AttentionRows& rows, float* acc, float* m, float* l,
                        float* scratch) {
  static_assert(Avx2::kWidth == kAttentionLanesAvx2);
  RunLanesKernel<Avx2>(rows, acc, m, l, scratch);
}

}  // namespace saola::kernels::cpu::internal
