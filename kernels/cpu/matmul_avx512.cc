// AVX-512 kernels (compiled with -mavx512{f,bw,vl,dq,vnni}): activation quantization
// (bit-exact with ggml's x86 quantize_row_q8_1), half / bfloat16 rounding, and the float-weight
// (F32 / F16 / BF16) matmuls. The integer kernels for Q8_0 / Q4_0 / Q4_1 weights live in
// matmul_rows_avx512.cc.
//
// Float weights: tiles of R = 4 rows x T = 4 tokens of FMAs, so each weight vector is loaded
// once per 4 tokens and each activation vector once per 4 rows; F16 in ggml_vec_dot_f16's exact
// order (F16Kernel).

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* temporaries.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu::internal {
namespace {

constexpr int kRowTile = 4;
constexpr int kTokenTile = 4;
constexpr int64_t kTokenChunk = 64;

const uint8_t* RowPtr(const Weight& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_stride_bytes;
}

// ------------------------------------------------------------------------------------------------
// Activation quantization (bit-exact with ggml's x86 quantize_row_q8_1, see quantize.h).

// Lane b of the result = op-reduction of the 16 lanes of v[b], for 16 vectors (a transposing
// reduction tree: 15 ops + 30 shuffles, instead of 16 separate horizontal reductions).
template <typename Op>
inline __m512 Reduce16(const __m512 v[16], Op op) {
  __m512 w1[8], w2[4], w3[2];
  for (int k = 0; k < 8; ++k) {  // lanes 0-7: vector 2k, 8-15: 2k + 1
    w1[k] = op(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
               _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
  }
  for (int k = 0; k < 4; ++k) {  // 128-bit chunk c: vector 4k + c
    w2[k] = op(_mm512_shuffle_f32x4(w1[2 * k], w1[2 * k + 1], 0x88),
               _mm512_shuffle_f32x4(w1[2 * k], w1[2 * k + 1], 0xDD));
  }
  for (int k = 0; k < 2; ++k) {  // chunk c: lanes 0-1 vector 8k + c, lanes 2-3 vector 8k + 4 + c
    w3[k] = op(_mm512_shuffle_ps(w2[2 * k], w2[2 * k + 1], 0x44),
               _mm512_shuffle_ps(w2[2 * k], w2[2 * k + 1], 0xEE));
  }
  // Lane 4c + e now holds vector c + 4e; put vector b in lane b.
  const __m512 r = op(_mm512_shuffle_ps(w3[0], w3[1], 0x88), _mm512_shuffle_ps(w3[0], w3[1], 0xDD));
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(perm, r);
}

// One block, as ggml's x86 quantize_row_q8_1 computes it.
inline void QuantizeBlockAvx512(const float* x, int8_t* qs, float* d_out, float* s_out,
                                int32_t* sum_out) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 v0 = _mm512_loadu_ps(x);
  const __m512 v1 = _mm512_loadu_ps(x + 16);
  const __m512 m = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
  const float amax = _mm512_reduce_max_ps(m);
  const float d = amax / 127.0f;
  const __m512 vid = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
  const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, vid),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512i q1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, vid),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtsepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtsepi32_epi8(q1));
  const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  *d_out = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
  *s_out = _cvtsh_ss(_cvtss_sh(d * static_cast<float>(sum), _MM_FROUND_TO_NEAREST_INT));
  *sum_out = sum;
}

// Up to sixteen blocks at once (count <= 16): the per-block scalar steps (amax, the two
// divisions, fp16 rounding, the sum) become vector steps over 16 blocks. Same arithmetic, so the
// same bits as QuantizeRowQ8_1.
inline void Quantize16BlocksAvx512(const float* x, int count, int8_t* qs, float* d_out,
                                   float* s_out, int32_t* sum_out) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 v[16];
  for (int b = 0; b < 16; ++b) {
    v[b] = b < count ? _mm512_max_ps(_mm512_andnot_ps(sign, _mm512_loadu_ps(x + b * 32)),
                                     _mm512_andnot_ps(sign, _mm512_loadu_ps(x + b * 32 + 16)))
                     : _mm512_setzero_ps();
  }
  const __m512 amax = Reduce16(v, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
  const __m512 d = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
  const __mmask16 nonzero = _mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_NEQ_OQ);
  alignas(64) float id[16];
  _mm512_store_ps(id, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(127.0f), amax));
  for (int b = 0; b < 16; ++b) {
    if (b >= count) {
      v[b] = _mm512_setzero_ps();
      continue;
    }
    const __m512 vid = _mm512_set1_ps(id[b]);
    const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + b * 32), vid),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i q1 = _mm512_cvt_roundps_epi32(
        _mm512_mul_ps(_mm512_loadu_ps(x + b * 32 + 16), vid),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + b * 32), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + b * 32 + 16), _mm512_cvtsepi32_epi8(q1));
    v[b] = _mm512_castsi512_ps(_mm512_add_epi32(q0, q1));
  }
  const __m512i sum = _mm512_castps_si512(Reduce16(v, [](__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }));
  constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __mmask16 valid = static_cast<__mmask16>(count >= 16 ? 0xffff : (1u << count) - 1);
  _mm512_mask_storeu_ps(d_out, valid, _mm512_cvtph_ps(_mm512_cvtps_ph(d, kRne)));
  const __m512 s = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sum));
  _mm512_mask_storeu_ps(s_out, valid, _mm512_cvtph_ps(_mm512_cvtps_ph(s, kRne)));
  _mm512_mask_storeu_epi32(sum_out, valid, sum);
}

void QuantizeActsAvx512(const float* x, int64_t ldx, int64_t t0, int64_t t1,
                        const QuantizedActs& a) {
  const size_t qs_bytes = a.d_offset;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xr = x + t * ldx;
    int8_t* qs = a.qs(t);
    float* dd = a.d(t);
    float* ss = a.s(t);
    int32_t* sums = a.sum(t);
    for (int64_t b = 0; b < a.nb; b += 16) {
      const int count = static_cast<int>(std::min<int64_t>(16, a.nb - b));
      if (count == 1) {
        QuantizeBlockAvx512(xr + b * 32, qs + b * 32, dd + b, ss + b, sums + b);
      } else {
        Quantize16BlocksAvx512(xr + b * 32, count, qs + b * 32, dd + b, ss + b, sums + b);
      }
    }
    // Zero the padding so kernels that read whole vectors past the last block see zeros.
    std::memset(qs + a.cols, 0, qs_bytes - static_cast<size_t>(a.cols));
  }
}

void ToF16Avx512(const float* x, uint16_t* out, int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), h);
  }
  for (; i < count; ++i) out[i] = Fp32ToFp16(x[i]);
}

void ToBf16Avx512(const float* x, uint16_t* out, int64_t count) {
  int64_t i = 0;
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i inf = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= count; i += 16) {
    const __m512i v = _mm512_castps_si512(_mm512_loadu_ps(x + i));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(v, abs_mask), inf);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(v, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(v, 16), _mm512_set1_epi32(64));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < count; ++i) out[i] = Fp32ToBf16(x[i]);
}

// ------------------------------------------------------------------------------------------------
// F32 / F16 / BF16 weights: float FMAs. F16 / BF16 activations arrive rounded to the weight's
// type (as ggml's vec_dot_type) and are widened back to float once per token chunk.

enum class FloatKind { kF32, kF16, kBF16 };

template <FloatKind K>
inline __m512 LoadWeight16(const uint8_t* row, int64_t k) {
  if constexpr (K == FloatKind::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else if constexpr (K == FloatKind::kF16) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k * 2)));
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k * 2));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <FloatKind K>
inline float LoadWeight1(const uint8_t* row, int64_t k) {
  if constexpr (K == FloatKind::kF32) {
    return reinterpret_cast<const float*>(row)[k];
  } else {
    uint16_t h;
    std::memcpy(&h, row + k * 2, 2);
    return K == FloatKind::kF16 ? Fp16ToFp32(h) : Bf16ToFp32(h);
  }
}

template <FloatKind K, int R, int T>
inline void FloatTile(const uint8_t* const* rows, int64_t cols, const float* x, int64_t ldx,
                      float* y, int64_t ldy) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 16 <= cols; k += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadWeight16<K>(rows[r], k);
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = _mm512_reduce_add_ps(acc[r][t]);
      for (int64_t kk = k; kk < cols; ++kk) sum += LoadWeight1<K>(rows[r], kk) * x[t * ldx + kk];
      y[t * ldy + r] = sum;
    }
  }
}

template <FloatKind K, int R>
inline void FloatTokenTiles(const uint8_t* const* rows, int64_t cols, const float* x,
                            int64_t count, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + kTokenTile <= count; t += kTokenTile) {
    FloatTile<K, R, kTokenTile>(rows, cols, x + t * cols, cols, y + t * ldy, ldy);
  }
  const float* xt = x + t * cols;
  float* yt = y + t * ldy;
  switch (count - t) {
    case 1: FloatTile<K, R, 1>(rows, cols, xt, cols, yt, ldy); break;
    case 2: FloatTile<K, R, 2>(rows, cols, xt, cols, yt, ldy); break;
    case 3: FloatTile<K, R, 3>(rows, cols, xt, cols, yt, ldy); break;
    default: break;
  }
}


template <FloatKind K>
void FloatKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t cols = w.cols;
  // F32 reads x in place (the driver passes rows of exactly cols floats).
  const float* x = K == FloatKind::kF32 ? a.f32 : static_cast<const float*>(a.packed);
  for (int64_t t0 = 0; t0 < a.n; t0 += kTokenChunk) {
    const int64_t count = std::min(kTokenChunk, a.n - t0);
    const float* xc = x + t0 * cols;
    float* yc = y + t0 * ldy;
    int64_t r = r0;
    for (; r + kRowTile <= r1; r += kRowTile) {
      const uint8_t* rows[kRowTile];
      for (int i = 0; i < kRowTile; ++i) rows[i] = RowPtr(w, r + i);
      FloatTokenTiles<K, kRowTile>(rows, cols, xc, count, yc + r, ldy);
    }
    for (; r < r1; ++r) {
      const uint8_t* rows[1] = {RowPtr(w, r)};
      FloatTokenTiles<K, 1>(rows, cols, xc, count, yc + r, ldy);
    }
  }
}

// F16 weights in ggml_vec_dot_f16's order (AVX-512 build; ggml_exact.h GgmlDotF16), so the result
// equals llama.cpp's bit for bit: per (row, token) four 16-lane accumulators, chunk j of every
// 64-element step into accumulator j, then (acc0 + acc2) + (acc1 + acc3), GCC's
// _mm512_reduce_add_ps widened to double, and the last cols % 64 products added in double.
template <int R, int T>
inline void F16Tile(const uint8_t* const* rows, int64_t cols, const float* x, float* y,
                    int64_t ldy) {
  __m512 acc[R][T][4];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      for (int j = 0; j < 4; ++j) acc[r][t][j] = _mm512_setzero_ps();
    }
  }
  const int64_t np = cols & ~int64_t{63};
  for (int64_t k = 0; k < np; k += 64) {
    for (int j = 0; j < 4; ++j) {
      __m512 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = LoadWeight16<FloatKind::kF16>(rows[r], k + 16 * j);
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(x + t * cols + k + 16 * j);
        for (int r = 0; r < R; ++r) acc[r][t][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][t][j]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      const __m512 s0 = _mm512_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][2]),
                                      _mm512_add_ps(acc[r][t][1], acc[r][t][3]));
      double sum = _mm512_reduce_add_ps(s0);
      for (int64_t kk = np; kk < cols; ++kk) {
        sum += static_cast<double>(LoadWeight1<FloatKind::kF16>(rows[r], kk) * x[t * cols + kk]);
      }
      y[t * ldy + r] = static_cast<float>(sum);
    }
  }
}

void F16Kernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t cols = w.cols;
  const float* x = static_cast<const float*>(a.packed);
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    const uint8_t* rows[2] = {RowPtr(w, r), RowPtr(w, r + 1)};
    int64_t t = 0;
    for (; t + 2 <= a.n; t += 2) F16Tile<2, 2>(rows, cols, x + t * cols, y + t * ldy + r, ldy);
    if (t < a.n) F16Tile<2, 1>(rows, cols, x + t * cols, y + t * ldy + r, ldy);
  }
  if (r < r1) {
    const uint8_t* rows[1] = {RowPtr(w, r)};
    for (int64_t t = 0; t < a.n; ++t) F16Tile<1, 1>(rows, cols, x + t * cols, y + t * ldy + r, ldy);
  }
}

}  // namespace

const IsaKernels& Avx512Kernels() {
  static const IsaKernels kernels = [] {
    IsaKernels k;
    k.f32 = Kernel{FloatKernel<FloatKind::kF32>};
    k.f16 = Kernel{F16Kernel, WidenedBytes, PackWidenedF16};
    k.bf16 = Kernel{FloatKernel<FloatKind::kBF16>, WidenedBytes, PackWidenedBf16};
    k.q8_0 = RowsAvx512Kernel(DType::kQ8_0);
    k.q4_0 = RowsAvx512Kernel(DType::kQ4_0);
    k.q4_1 = RowsAvx512Kernel(DType::kQ4_1);
    k.quantize = QuantizeActsAvx512;
    k.to_f16 = ToF16Avx512;
    k.to_bf16 = ToBf16Avx512;
    return k;
  }();
  return kernels;
}

}  // namespace saola::kernels::cpu::internal
