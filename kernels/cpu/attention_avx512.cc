// AVX-512 instantiation of the attention kernels (kernels/cpu/attention_kernel.h): 16 keys (rows
// kernel) or 16 query rows (lanes kernel) per vector, vcvtph2ps for the f16 cache.
#include <immintrin.h>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() (a self-initialized variable) as the
// merge source of unmasked operations, which -Wall reports as uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/attention_kernel.h"
#include "kernels/cpu/ops_simd.h"

namespace saola::kernels::cpu::internal {
namespace {

struct Avx512 {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kWidth = 16;
  static constexpr int kLaneTokens = 16;  // lanes kernel: 16 score accumulators per pass
  static constexpr int kPvRegs = 16;      // rows kernel: accumulator registers in P·V

  static V Zero() { return _mm512_setzero_ps(); }
  static V Set1(float x) { return _mm512_set1_ps(x); }
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V Max(V a, V b) { return _mm512_max_ps(a, b); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V Exp(V x) { return Exp16(x); }
  static float First(V v) { return _mm512_cvtss_f32(v); }
  static float HorizontalMax(V v) { return _mm512_reduce_max_ps(v); }
  static float HorizontalSum(V v) { return _mm512_reduce_add_ps(v); }

  // Lanes at index >= count take `fill`.
  static V MaskLanes(V v, int count, float fill) {
    const __mmask16 keep = count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
    return _mm512_mask_blend_ps(keep, _mm512_set1_ps(fill), v);
  }

  // out[i] = sum of the 16 lanes of x[i]: pairwise unpack/shuffle adds, each level halving the
  // number of vectors (15 adds and 30 shuffles for 16 sums).
  static V Reduce(V* x) {
    V t[8];
    for (int j = 0; j < 8; ++j) {
      // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3].
      t[j] = _mm512_add_ps(_mm512_unpacklo_ps(x[2 * j], x[2 * j + 1]),
                           _mm512_unpackhi_ps(x[2 * j], x[2 * j + 1]));
    }
    V u[4];
    for (int j = 0; j < 4; ++j) {
      // Per 128-bit lane: the lane sums of x[4j], x[4j+1], x[4j+2], x[4j+3].
      u[j] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * j], t[2 * j + 1], 0x44),
                           _mm512_shuffle_ps(t[2 * j], t[2 * j + 1], 0xee));
    }
    // Add the four 128-bit lanes of each u[j] and gather u[j]'s totals into lane j.
    const V w01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88),
                                _mm512_shuffle_f32x4(u[0], u[1], 0xdd));
    const V w23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88),
                                _mm512_shuffle_f32x4(u[2], u[3], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, 0x88),
                         _mm512_shuffle_f32x4(w01, w23, 0xdd));
  }

  static __m512i LoadInt(const int32_t* p) { return _mm512_loadu_si512(p); }
  // Lanes whose row position is at or past key_pos.
  static Mask Visible(__m512i pos, int32_t key_pos) {
    return _mm512_cmpge_epi32_mask(pos, _mm512_set1_epi32(key_pos));
  }
  static Mask NoLanes() { return 0; }
  static V Where(Mask keep, V v, float fill) {
    return _mm512_mask_blend_ps(keep, _mm512_set1_ps(fill), v);
  }

  static void ConvertHalves(const uint16_t* src, float* dst, int count) {
    for (int i = 0; i < count; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
  }
};

}  // namespace

void AttentionRowsAvx512(const AttentionRows& rows, float* acc, float* m, float* l,
                         float* scratch) {
  RunRowsKernel<Avx512>(rows, acc, m, l, scratch);
}

void AttentionLanesAvx512(const AttentionRows& rows, float* acc, float* m, float* l,
                          float* scratch) {
  static_assert(Avx512::kWidth == kAttentionLanesAvx512);
  RunLanesKernel<Avx512>(rows, acc, m, l, scratch);
}

}  // namespace saola::kernels::cpu::internal
