// AVX2 + FMA + F16C matmul kernels (compiled with -mavx2 -mfma -mf16c), for CPUs without
// AVX-512 VNNI.
//
// Quantized weights run "rows in lanes" like the AVX-512 kernels (matmul_rows_avx512.h): 8 weight
// rows per ymm, each 32-element block transposed in registers into the VNNI layout, and the exact
// block dots from vpmaddubsw (u8 x s8 pairs: nibble weights, or |w| with the sign moved onto x for
// Q8_0; neither can saturate) and vpmaddwd. The fold into float is the canonical one, so the
// results equal the AVX-512 / AMX / scalar paths bit for bit. Float weights use tiles of 4 rows x
// 2 tokens of FMAs.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu::internal {
namespace {

constexpr int kRowTile = 4;
constexpr int kTokenTile = 2;
constexpr int64_t kTokenChunk = 64;
// Weight bytes ahead that each row stream prefetches (see matmul_avx512.cc).
constexpr int64_t kPrefetchBytes = 4096;

const uint8_t* RowPtr(const Weight& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_stride_bytes;
}

inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float HsumPs(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int HsumEpi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// ------------------------------------------------------------------------------------------------
// Activation quantization: ggml's x86 quantize_row_q8_1, step for step.

void QuantizeActsAvx2(const float* x, int64_t ldx, int64_t t0, int64_t t1,
                      const QuantizedActs& a) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t t = t0; t < t1; ++t) {
    const float* xr = x + t * ldx;
    int8_t* qs = a.qs(t);
    for (int64_t b = 0; b < a.nb; ++b) {
      __m256 v[4];
      __m256 m = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(xr + b * 32 + i * 8);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
      }
      __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float amax = _mm_cvtss_f32(m4);
      const float d = amax / 127.0f;
      const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
      __m256i q[4];
      for (int i = 0; i < 4; ++i) {
        q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_ROUND_NEAREST));
      }
      const int sum =
          HsumEpi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
      const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
      const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
      const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), perm);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + b * 32), bytes);
      a.d(t)[b] = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
      a.s(t)[b] = _cvtsh_ss(_cvtss_sh(d * static_cast<float>(sum), _MM_FROUND_TO_NEAREST_INT));
      a.sum(t)[b] = sum;
    }
    std::memset(qs + a.cols, 0, a.d_offset - static_cast<size_t>(a.cols));
  }
}

void ToF16Avx2(const float* x, uint16_t* out, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < count; ++i) out[i] = Fp32ToFp16(x[i]);
}

// ------------------------------------------------------------------------------------------------
// Quantized weights, rows in lanes: 8 weight rows per ymm (see matmul_rows_avx512.h for the idea
// and the canonical fold; the per-lane float ops here are the same, so results are bit-identical
// to the AVX-512, AMX and scalar paths).

enum class QType { kQ8_0, kQ4_0, kQ4_1 };

template <QType Q>
constexpr int kBlockBytes = Q == QType::kQ8_0 ? 34 : (Q == QType::kQ4_0 ? 18 : 20);

template <QType Q>
constexpr int kQsOffset = Q == QType::kQ4_1 ? 4 : 2;

constexpr int kLanes = 8;  // rows per ymm

// out[j] (j < 4) lane r = dword j of the 16 bytes at `off` of row r (8 rows): 4 loads, 4
// inserts and a 4 x 4 dword transpose inside each 128-bit half (half h holds rows 4h..4h+3).
inline void LoadTransposed(const uint8_t* const rows[kLanes], int64_t off, __m256i out[4]) {
  __m256i z[4];
  for (int i = 0; i < 4; ++i) {
    z[i] = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + off))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 4] + off)), 1);
  }
  const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]);
  const __m256i t1 = _mm256_unpackhi_epi32(z[0], z[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]);
  const __m256i t3 = _mm256_unpackhi_epi32(z[2], z[3]);
  out[0] = _mm256_unpacklo_epi64(t0, t2);
  out[1] = _mm256_unpackhi_epi64(t0, t2);
  out[2] = _mm256_unpacklo_epi64(t1, t3);
  out[3] = _mm256_unpackhi_epi64(t1, t3);
}

// Block b of 8 rows in the VNNI layout (lane r of out[k] = elements 4k..4k+3 of row r): Q4 as
// unsigned nibbles, Q8_0 as |w| (with *sign = w for the sign trick).
template <QType Q>
inline void UnpackBlock(const uint8_t* const rows[kLanes], int64_t b, __m256i out[8],
                        __m256i sign[8]) {
  const int64_t off = b * kBlockBytes<Q> + kQsOffset<Q>;
  if constexpr (Q == QType::kQ8_0) {
    LoadTransposed(rows, off, sign);
    LoadTransposed(rows, off + 16, sign + 4);
    for (int k = 0; k < 8; ++k) out[k] = _mm256_sign_epi8(sign[k], sign[k]);
  } else {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256i o[4];
    LoadTransposed(rows, off, o);
    for (int j = 0; j < 4; ++j) {
      out[j] = _mm256_and_si256(o[j], low4);
      out[4 + j] = _mm256_and_si256(_mm256_srli_epi16(o[j], 4), low4);
    }
  }
}

// Block b's d_w (and m_w) of 8 rows: one dword gather at the block starts, fp16 halves widened.
template <QType Q>
inline void GatherScales(const uint8_t* row0, int64_t b, __m256i offsets, __m256i valid,
                         __m256* d, __m256* m) {
  const __m256i raw = _mm256_mask_i32gather_epi32(
      _mm256_setzero_si256(), reinterpret_cast<const int*>(row0 + b * kBlockBytes<Q>), offsets,
      valid, 1);
  // Low (d) and high (m) 16-bit halves of each dword, packed to 8 halves each.
  const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1,
                                        4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(raw, pick), 0xD8);
  *d = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
  *m = Q == QType::kQ4_1 ? _mm256_cvtph_ps(_mm256_extracti128_si256(packed, 1))
                         : _mm256_setzero_ps();
}

// The 8 rows' exact dots of one block with one token.
template <QType Q>
inline __m256i BlockDot(const __m256i w[8], const __m256i sign[8], const int8_t* x,
                        int32_t corr) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (Q == QType::kQ8_0) {
    __m256i isum = _mm256_set1_epi32(corr);
    for (int k = 0; k < 8; ++k) {
      int32_t xk;
      std::memcpy(&xk, x + 4 * k, 4);
      const __m256i xs = _mm256_sign_epi8(_mm256_set1_epi32(xk), sign[k]);
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(w[k], xs), ones));
    }
    return isum;
  } else {
    // Nibble x int8 pairs are <= 3810 in magnitude, so 8 of them sum exactly in int16.
    __m256i sum16 = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k) {
      int32_t xk;
      std::memcpy(&xk, x + 4 * k, 4);
      sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(xk)));
    }
    const __m256i isum = _mm256_madd_epi16(sum16, ones);
    return Q == QType::kQ4_0 ? _mm256_add_epi32(isum, _mm256_set1_epi32(corr)) : isum;
  }
}

template <QType Q>
inline __m256 Fold(__m256 acc, __m256i isum, __m256 dw, __m256 mw, float dx, float sx) {
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc);
  if constexpr (Q == QType::kQ4_1) acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(sx), acc);
  return acc;
}

// Per token and block, Q4_0's integer correction -8 * sum(q_x) (nibbles are dotted unsigned).
size_t CorrBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * a.q.nb) * sizeof(int32_t);
}

void PackCorrQ4_0(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  int32_t* corr = static_cast<int32_t*>(packed);
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t b = 0; b < a.q.nb; ++b) corr[t * a.q.nb + b] = -8 * a.q.sum(t)[b];
  }
}

// T tokens from t0 against 8 rows.
template <QType Q, int T>
void RowTile(const uint8_t* const rows[kLanes], __m256i offsets, __m256i valid_lanes, int valid,
             const QuantizedActs& a, int64_t t0, const int32_t* corr, float* y, int64_t ldy) {
  const int64_t nb = a.nb;
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < kLanes; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + b * kBlockBytes<Q> + kPrefetchBytes),
                   _MM_HINT_T0);
    }
    __m256i w[8], sign[8];
    UnpackBlock<Q>(rows, b, w, sign);
    __m256 dw, mw;
    GatherScales<Q>(rows[0], b, offsets, valid_lanes, &dw, &mw);
    for (int t = 0; t < T; ++t) {
      const int64_t tok = t0 + t;
      const int32_t c = Q == QType::kQ4_0 ? corr[tok * nb + b] : 0;
      const __m256i isum = BlockDot<Q>(w, sign, a.qs(tok) + b * 32, c);
      acc[t] = Fold<Q>(acc[t], isum, dw, mw, a.d(tok)[b], a.s(tok)[b]);
    }
  }
  for (int t = 0; t < T; ++t) {
    if (valid == kLanes) {
      _mm256_storeu_ps(y + t * ldy, acc[t]);
    } else {
      _mm256_maskstore_ps(y + t * ldy, valid_lanes, acc[t]);
    }
  }
}

template <QType Q>
void QuantKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int32_t* corr = static_cast<const int32_t*>(a.packed);
  for (int64_t r = r0; r < r1; r += kLanes) {
    const int valid = static_cast<int>(std::min<int64_t>(kLanes, r1 - r));
    const uint8_t* rows[kLanes];
    alignas(32) int32_t offsets[kLanes];
    alignas(32) int32_t lanes[kLanes];
    for (int i = 0; i < kLanes; ++i) {
      // Rows past the end read the first row; their lanes are never stored.
      rows[i] = static_cast<const uint8_t*>(w.data) +
                static_cast<size_t>(r + (i < valid ? i : 0)) * w.row_stride_bytes;
      offsets[i] = static_cast<int32_t>(i * w.row_stride_bytes);
      lanes[i] = i < valid ? -1 : 0;
    }
    const __m256i off = _mm256_load_si256(reinterpret_cast<const __m256i*>(offsets));
    const __m256i valid_lanes = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    float* yr = y + r;
    int64_t t = 0;
    for (; t + kTokenTile <= a.n; t += kTokenTile) {
      RowTile<Q, kTokenTile>(rows, off, valid_lanes, valid, a.q, t, corr, yr + t * ldy, ldy);
    }
    if (t < a.n) RowTile<Q, 1>(rows, off, valid_lanes, valid, a.q, t, corr, yr + t * ldy, ldy);
  }
}

// ------------------------------------------------------------------------------------------------
// F32 / F16 / BF16 weights.

enum class FloatKind { kF32, kF16, kBF16 };

template <FloatKind K>
inline __m256 LoadWeight8(const uint8_t* row, int64_t k) {
  if constexpr (K == FloatKind::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else if constexpr (K == FloatKind::kF16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k * 2)));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k * 2));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
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
inline void FloatTile(const uint8_t* const* rows, int64_t cols, const float* x, float* y,
                      int64_t ldy) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadWeight8<K>(rows[r], k);
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + t * cols + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = HsumPs(acc[r][t]);
      for (int64_t kk = k; kk < cols; ++kk) sum += LoadWeight1<K>(rows[r], kk) * x[t * cols + kk];
      y[t * ldy + r] = sum;
    }
  }
}

template <FloatKind K, int R>
inline void FloatTokenTiles(const uint8_t* const* rows, int64_t cols, const float* x,
                            int64_t count, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + kTokenTile <= count; t += kTokenTile) {
    FloatTile<K, R, kTokenTile>(rows, cols, x + t * cols, y + t * ldy, ldy);
  }
  if (t < count) FloatTile<K, R, 1>(rows, cols, x + t * cols, y + t * ldy, ldy);
}

// F16 / BF16 activations arrive rounded to the weight's type; they are widened to float once per
// call ([token][cols]) so the inner loop is the same as for F32.
size_t WidenedBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * cols) * sizeof(float);
}

template <FloatKind K>
void PackWidened(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  float* out = static_cast<float*>(packed);
  for (int64_t t = t0; t < t1; ++t) {
    const uint16_t* h = a.h16 + t * a.ld_h16;
    for (int64_t k = 0; k < cols; ++k) {
      out[t * cols + k] = K == FloatKind::kF16 ? Fp16ToFp32(h[k]) : Bf16ToFp32(h[k]);
    }
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

}  // namespace

const IsaKernels& Avx2Kernels() {
  static const IsaKernels kernels = [] {
    IsaKernels k;
    k.f32 = Kernel{FloatKernel<FloatKind::kF32>};
    k.f16 = Kernel{FloatKernel<FloatKind::kF16>, WidenedBytes, PackWidened<FloatKind::kF16>};
    k.bf16 = Kernel{FloatKernel<FloatKind::kBF16>, WidenedBytes, PackWidened<FloatKind::kBF16>};
    k.q8_0 = Kernel{QuantKernel<QType::kQ8_0>};
    k.q4_0 = Kernel{QuantKernel<QType::kQ4_0>, CorrBytes, PackCorrQ4_0};
    k.q4_1 = Kernel{QuantKernel<QType::kQ4_1>};
    k.quantize = QuantizeActsAvx2;
    k.to_f16 = ToF16Avx2;
    return k;
  }();
  return kernels;
}

}  // namespace saola::kernels::cpu::internal
