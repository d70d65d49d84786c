// The exact attention row (kernels/cpu/attention_exact.h) with AVX-512 intrinsics, for head dims
// that are a multiple of 16: ggml's 16 lanes are one __m512, GCC's _mm512_reduce_add_ps is the
// Reduce16 tree, F16C converts the cache. Same bits as the scalar reference; other head dims use
// the template.
#include <immintrin.h>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() (a self-initialized variable) as the
// merge source of unmasked operations, which -Wall reports as uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/attention_exact.h"
#include "kernels/cpu/ggml_exact_avx512.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu::internal {
namespace {

// ggml_vec_dot_f16 of a K row with the f16-rounded query qf (hd % 16 == 0).
inline float DotF16(const uint16_t* k, const float* qf, int32_t hd) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  const int32_t np = hd & ~63;
  for (int32_t i = 0; i < np; i += 64) {
    s0 = _mm512_fmadd_ps(LoadHalf16(k + i), _mm512_loadu_ps(qf + i), s0);
    s1 = _mm512_fmadd_ps(LoadHalf16(k + i + 16), _mm512_loadu_ps(qf + i + 16), s1);
    s2 = _mm512_fmadd_ps(LoadHalf16(k + i + 32), _mm512_loadu_ps(qf + i + 32), s2);
    s3 = _mm512_fmadd_ps(LoadHalf16(k + i + 48), _mm512_loadu_ps(qf + i + 48), s3);
  }
  s0 = _mm512_add_ps(s0, s2);
  s1 = _mm512_add_ps(s1, s3);
  double sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  for (int32_t i = np; i < hd; ++i) sum += static_cast<double>(Fp16ToFp32(k[i]) * qf[i]);
  return static_cast<float>(sum);
}

// tinyBLAS order: one accumulator over steps of 16.
inline float DotTiny(const uint16_t* k, const float* qf, int32_t hd) {
  __m512 acc = _mm512_setzero_ps();
  for (int32_t i = 0; i < hd; i += 16) {
    acc = _mm512_fmadd_ps(LoadHalf16(k + i), _mm512_loadu_ps(qf + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// Lane-wise Reduce16 of 16 vectors (over d): out = tree(v[0..15]).
inline __m512 TreeReduce16(__m512* v) {
  for (int i = 0; i < 8; ++i) v[i] = _mm512_add_ps(v[i + 8], v[i]);
  for (int i = 0; i < 4; ++i) v[i] = _mm512_add_ps(v[i + 4], v[i]);
  return _mm512_add_ps(_mm512_add_ps(v[0], v[2]), _mm512_add_ps(v[1], v[3]));
}

void ExactAttentionVec(const ExactAttentionRow& r, float* scratch) {
  const int32_t hd = r.head_dim;
  const int32_t nk = r.num_keys;
  const int64_t padded = (static_cast<int64_t>(nk) + 15) / 16 * 16;
  float* qf = scratch;
  float* w = qf + hd;
  float* p16 = w + padded;
  float* acc = p16 + padded;
  for (int32_t d = 0; d < hd; d += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(r.q + d), _MM_FROUND_TO_NEAREST_INT);
    _mm512_storeu_ps(qf + d, _mm512_cvtph_ps(h));
  }
  auto slot_of = [&](int32_t p) {
    return static_cast<int64_t>(r.block_table[p / r.block_size]) * r.block_size +
           p % r.block_size;
  };
  const bool batched = r.batched;

  float max = -INFINITY;
  for (int32_t p = 0; p < nk; ++p) {
    const uint16_t* kp = r.k + slot_of(p) * r.kv_stride;
    const float s = batched ? DotTiny(kp, qf, hd) : DotF16(kp, qf, hd);
    w[p] = s * r.scale;
    max = w[p] > max ? w[p] : max;
  }

  double sum = 0.0;
  const __m512 vmax = _mm512_set1_ps(max);
  for (int64_t b = 0; b < padded; b += 16) {
    const int64_t left = nk - b;
    const __mmask16 live = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(live, w + b);
    const __m512 e = _mm512_maskz_mov_ps(live, GgmlExp16(_mm512_sub_ps(x, vmax)));
    _mm512_storeu_ps(w + b, e);
    sum += static_cast<double>(_mm512_reduce_add_ps(e));
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t b = 0; b < padded; b += 16) {
    const __m256i h =
        _mm512_cvtps_ph(_mm512_mul_ps(_mm512_loadu_ps(w + b), inv), _MM_FROUND_TO_NEAREST_INT);
    _mm512_storeu_ps(p16 + b, _mm512_cvtph_ps(h));
  }

  const int lanes = batched ? 16 : 64;
  const int64_t acc_floats = static_cast<int64_t>(lanes) * hd;
  for (int64_t i = 0; i < acc_floats; i += 16) _mm512_storeu_ps(acc + i, _mm512_setzero_ps());
  for (int32_t p = 0; p < nk; ++p) {
    const uint16_t* vp = r.v + slot_of(p) * r.kv_stride;
    float* a = acc + static_cast<int64_t>(p % lanes) * hd;
    const __m512 pp = _mm512_set1_ps(p16[p]);
    for (int32_t d = 0; d < hd; d += 16) {
      _mm512_storeu_ps(a + d, _mm512_fmadd_ps(LoadHalf16(vp + d), pp, _mm512_loadu_ps(a + d)));
    }
  }
  for (int32_t d = 0; d < hd; d += 16) {
    __m512 t[16];
    for (int l = 0; l < 16; ++l) {
      if (batched) {
        t[l] = _mm512_loadu_ps(acc + static_cast<int64_t>(l) * hd + d);
      } else {
        const __m512 s0 = _mm512_add_ps(_mm512_loadu_ps(acc + static_cast<int64_t>(l) * hd + d),
                                        _mm512_loadu_ps(acc + static_cast<int64_t>(32 + l) * hd + d));
        const __m512 s1 = _mm512_add_ps(_mm512_loadu_ps(acc + static_cast<int64_t>(16 + l) * hd + d),
                                        _mm512_loadu_ps(acc + static_cast<int64_t>(48 + l) * hd + d));
        t[l] = _mm512_add_ps(s0, s1);
      }
    }
    _mm512_storeu_ps(r.out + d, TreeReduce16(t));
  }
}

}  // namespace

void ExactAttentionAvx512(const ExactAttentionRow& row, float* scratch) {
  if (row.head_dim % 16 == 0) {
    ExactAttentionVec(row, scratch);
  } else {
    ExactAttention(row, scratch);
  }
}

}  // namespace saola::kernels::cpu::internal
