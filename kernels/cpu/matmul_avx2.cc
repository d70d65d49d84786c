// AVX2 + FMA + F16C matmul kernels (compiled with -mavx2 -mfma -mf16c), for CPUs without
// AVX-512 VNNI.
//
// Quantized weights run "rows in lanes" like the AVX-512 kernels (matmul_rows_avx512.h): 8 weight
// rows per ymm, each 32-element block transposed in registers into the VNNI layout, and the exact
// block dots from vpmaddubsw (u8 x s8 pairs: nibble weights, or |w| with the sign moved onto x for
// Q8_0; neither can saturate) and vpmaddwd, folded into float in llama.cpp's per-lane order, so the
// results equal the AVX-512 / scalar paths (and llama.cpp) bit for bit. F16 weights follow
// ggml_vec_dot_f16's AVX-512 order likewise; F32 / BF16 use tiles of 4 rows x 2 tokens of FMAs.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

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
// Quantized weights, rows in lanes: 8 weight rows per ymm, llama.cpp's per-lane block dots and
// float order (see matmul_rows_avx512.h), so results equal the AVX-512 and scalar paths bit for
// bit.

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

// One 8-row tile unpacked: per block 8 VNNI vectors (lane r of vector k = elements 4k..4k+3 of
// row r; Q4 nibbles unsigned, Q8_0 as |w|), for Q8_0 the signed bytes too, and the row scales.
struct alignas(32) Vec32 {
  uint8_t bytes[32];
};
struct TileBuffer {
  std::vector<Vec32> w;     // [nb][8]
  std::vector<Vec32> sign;  // [nb][8], Q8_0 only
  std::vector<float> d;     // [nb][8]
  std::vector<float> m;     // [nb][8]
};

template <QType Q>
void UnpackTile(const uint8_t* const rows[kLanes], int valid, int64_t nb, TileBuffer& buf) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t off = b * kBlockBytes<Q> + kQsOffset<Q>;
    for (int r = 0; r < kLanes; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + off + kPrefetchBytes), _MM_HINT_T0);
    }
    __m256i v[8];
    if constexpr (Q == QType::kQ8_0) {
      LoadTransposed(rows, off, v);
      LoadTransposed(rows, off + 16, v + 4);
      for (int k = 0; k < 8; ++k) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf.sign[b * 8 + k].bytes), v[k]);
        v[k] = _mm256_sign_epi8(v[k], v[k]);
      }
    } else {
      __m256i o[4];
      LoadTransposed(rows, off, o);
      for (int j = 0; j < 4; ++j) {
        v[j] = _mm256_and_si256(o[j], low4);
        v[4 + j] = _mm256_and_si256(_mm256_srli_epi16(o[j], 4), low4);
      }
    }
    for (int k = 0; k < 8; ++k) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf.w[b * 8 + k].bytes), v[k]);
    }
    for (int r = 0; r < kLanes; ++r) {
      const uint8_t* blk = rows[r] + b * kBlockBytes<Q>;
      buf.d[b * kLanes + r] = r < valid ? HalfAt(blk) : 0.0f;
      buf.m[b * kLanes + r] = r < valid && Q == QType::kQ4_1 ? HalfAt(blk + 2) : 0.0f;
    }
  }
}

// Per token, block and lane k, Q4_0's correction: -8 times the sum of activation quants
// 4k .. 4k + 3 (the nibbles are dotted unsigned). Layout [token][block][8].
size_t LaneCorrBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * a.q.nb) * 8 * sizeof(int32_t);
}

void PackLaneCorrQ4_0(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  int32_t* corr = static_cast<int32_t*>(packed);
  for (int64_t t = t0; t < t1; ++t) {
    const int8_t* qs = a.q.qs(t);
    for (int64_t b = 0; b < a.q.nb; ++b) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + b * 32));
      const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, x), ones16);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr + (t * a.q.nb + b) * 8),
                          _mm256_mullo_epi32(sums, _mm256_set1_epi32(-8)));
    }
  }
}

// One token against one unpacked 8-row tile.
template <QType Q>
void TokenTile(const TileBuffer& buf, const __m256i store_mask, int valid,
               const QuantizedActs& a, int64_t tok, const int32_t* corr, float* y) {
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t nb = a.nb;
  const int8_t* x = a.qs(tok);
  __m256 acc[8];
  for (int k = 0; k < 8; ++k) acc[k] = _mm256_setzero_ps();
  __m256 summs = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256 dvec =
        _mm256_mul_ps(_mm256_loadu_ps(&buf.d[b * kLanes]), _mm256_set1_ps(a.d(tok)[b]));
    if constexpr (Q == QType::kQ4_1) {
      summs = _mm256_fmadd_ps(_mm256_loadu_ps(&buf.m[b * kLanes]), _mm256_set1_ps(a.s(tok)[b]),
                              summs);
    }
    for (int k = 0; k < 8; ++k) {
      int32_t xk;
      std::memcpy(&xk, x + b * 32 + 4 * k, 4);
      __m256i xv = _mm256_set1_epi32(xk);
      const __m256i wk = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf.w[b * 8 + k].bytes));
      if constexpr (Q == QType::kQ8_0) {
        xv = _mm256_sign_epi8(
            xv, _mm256_load_si256(reinterpret_cast<const __m256i*>(buf.sign[b * 8 + k].bytes)));
      }
      __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wk, xv), ones);
      if constexpr (Q == QType::kQ4_0) {
        p = _mm256_add_epi32(p, _mm256_set1_epi32(corr[(tok * nb + b) * 8 + k]));
      }
      acc[k] = _mm256_fmadd_ps(dvec, _mm256_cvtepi32_ps(p), acc[k]);
    }
  }
  // ggml's hsum_float_8, for 8 rows at once.
  const __m256 a0 = _mm256_add_ps(acc[4], acc[0]);
  const __m256 a1 = _mm256_add_ps(acc[5], acc[1]);
  const __m256 a2 = _mm256_add_ps(acc[6], acc[2]);
  const __m256 a3 = _mm256_add_ps(acc[7], acc[3]);
  __m256 h = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
  if constexpr (Q == QType::kQ4_1) h = _mm256_add_ps(h, summs);
  if (valid == kLanes) {
    _mm256_storeu_ps(y, h);
  } else {
    _mm256_maskstore_ps(y, store_mask, h);
  }
}

template <QType Q>
void QuantKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  static thread_local TileBuffer buf;
  const int64_t nb = a.q.nb;
  buf.w.resize(static_cast<size_t>(nb) * 8);
  if (Q == QType::kQ8_0) buf.sign.resize(static_cast<size_t>(nb) * 8);
  buf.d.resize(static_cast<size_t>(nb) * kLanes);
  buf.m.resize(static_cast<size_t>(nb) * kLanes);
  const int32_t* corr = static_cast<const int32_t*>(a.packed);
  for (int64_t r = r0; r < r1; r += kLanes) {
    const int valid = static_cast<int>(std::min<int64_t>(kLanes, r1 - r));
    const uint8_t* rows[kLanes];
    alignas(32) int32_t lanes[kLanes];
    for (int i = 0; i < kLanes; ++i) {
      // Rows past the end read the first row; their lanes are never stored.
      rows[i] = static_cast<const uint8_t*>(w.data) +
                static_cast<size_t>(r + (i < valid ? i : 0)) * w.row_stride_bytes;
      lanes[i] = i < valid ? -1 : 0;
    }
    const __m256i store_mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    UnpackTile<Q>(rows, valid, nb, buf);
    for (int64_t t = 0; t < a.n; ++t) {
      TokenTile<Q>(buf, store_mask, valid, a.q, t, corr, y + t * ldy + r);
    }
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

// F16 weights in ggml_vec_dot_f16's AVX-512 order (ggml_exact.h GgmlDotF16), each 16-lane
// accumulator as two ymm: bit-identical to the AVX-512 and scalar paths.
void F16Row(const uint8_t* row, int64_t cols, const float* x, float* out) {
  __m256 acc[4][2];
  for (int j = 0; j < 4; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  const int64_t np = cols & ~int64_t{63};
  for (int64_t k = 0; k < np; k += 64) {
    for (int j = 0; j < 4; ++j) {
      for (int h = 0; h < 2; ++h) {
        const int64_t e = k + 16 * j + 8 * h;
        acc[j][h] = _mm256_fmadd_ps(LoadWeight8<FloatKind::kF16>(row, e), _mm256_loadu_ps(x + e),
                                    acc[j][h]);
      }
    }
  }
  // (acc0 + acc2) + (acc1 + acc3) per half, then GCC's _mm512_reduce_add_ps order:
  // a_i = x[i + 8] + x[i], b_i = a[i + 4] + a[i], (b0 + b2) + (b1 + b3).
  __m256 s[2];
  for (int h = 0; h < 2; ++h) {
    s[h] = _mm256_add_ps(_mm256_add_ps(acc[0][h], acc[2][h]), _mm256_add_ps(acc[1][h], acc[3][h]));
  }
  const __m256 a8 = _mm256_add_ps(s[1], s[0]);
  const __m128 b4 = _mm_add_ps(_mm256_extractf128_ps(a8, 1), _mm256_castps256_ps128(a8));
  const __m128 c2 = _mm_add_ps(b4, _mm_movehl_ps(b4, b4));
  double sum = _mm_cvtss_f32(_mm_add_ss(c2, _mm_movehdup_ps(c2)));
  for (int64_t kk = np; kk < cols; ++kk) {
    sum += static_cast<double>(LoadWeight1<FloatKind::kF16>(row, kk) * x[kk]);
  }
  *out = static_cast<float>(sum);
}

void F16Kernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const float* x = static_cast<const float*>(a.packed);
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t t = 0; t < a.n; ++t) F16Row(RowPtr(w, r), w.cols, x + t * w.cols, y + t * ldy + r);
  }
}

}  // namespace

const IsaKernels& Avx2Kernels() {
  static const IsaKernels kernels = [] {
    IsaKernels k;
    k.f32 = Kernel{FloatKernel<FloatKind::kF32>};
    k.f16 = Kernel{F16Kernel, WidenedBytes, PackWidenedF16};
    k.bf16 = Kernel{FloatKernel<FloatKind::kBF16>, WidenedBytes, PackWidenedBf16};
    k.q8_0 = Kernel{QuantKernel<QType::kQ8_0>};
    k.q4_0 = Kernel{QuantKernel<QType::kQ4_0>, LaneCorrBytes, PackLaneCorrQ4_0};
    k.q4_1 = Kernel{QuantKernel<QType::kQ4_1>};
    k.quantize = QuantizeActsAvx2;
    k.to_f16 = ToF16Avx2;
    return k;
  }();
  return kernels;
}

}  // namespace saola::kernels::cpu::internal
