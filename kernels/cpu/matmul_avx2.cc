// AVX2 + FMA + F16C matmul kernels (compiled with -mavx2 -mfma -mf16c), for CPUs without
// AVX-512 VNNI.
//
// Integer dots follow ggml's AVX2 recipe, one 32-element block per ymm: vpmaddubsw (u8 x s8 ->
// s16 pairs, which cannot saturate for nibble weights or |w| <= 128 with the sign trick) then
// vpmaddwd with ones into 8 int32 lanes, converted and scaled by d_w * d_x. Tiles of R rows x T
// tokens reuse each unpacked weight block for T tokens and each activation block for R rows.
// Q4_0's "- 8" and Q4_1's "+ m" are applied per block as scalars against precomputed per-token
// terms (8 * d_x * sum(q_x) and s), which keeps the vector work identical for both.
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
// Quantized weights.

enum class QType { kQ8_0, kQ4_0, kQ4_1 };

template <QType Q>
constexpr int kBlockBytes = Q == QType::kQ8_0 ? 34 : (Q == QType::kQ4_0 ? 18 : 20);

// Unpacks one weight block to 32 bytes in element order; for Q8_0 returns |w| and sets *sign_src.
template <QType Q>
inline __m256i LoadBlock(const uint8_t* blk, __m256i* sign_src) {
  if constexpr (Q == QType::kQ8_0) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    *sign_src = w;
    return _mm256_sign_epi8(w, w);
  } else {
    constexpr int kQsOffset = Q == QType::kQ4_0 ? 2 : 4;
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQsOffset));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
  }
}

// Per-token, per-block scalars the Q4 kernels need besides d_x, packed once per call as
// [token][block]: Q4_0: -8 * d_x * sum(q_x); Q4_1: s.
size_t ExtrasBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * a.q.nb) * sizeof(float);
}

template <QType Q>
void PackExtras(const Acts& acts, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  const QuantizedActs& a = acts.q;
  float* extra = static_cast<float*>(packed);
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t b = 0; b < a.nb; ++b) {
      float e = 0.0f;
      if constexpr (Q == QType::kQ4_0) {
        e = -8.0f * a.d(t)[b] * static_cast<float>(a.sum(t)[b]);
      } else if constexpr (Q == QType::kQ4_1) {
        e = a.s(t)[b];
      }
      extra[t * a.nb + b] = e;
    }
  }
}

template <QType Q, int R, int T>
inline void QuantTile(const uint8_t* const* rows, const QuantizedActs& a, int64_t t0,
                      const float* extra, float* y, int64_t ldy) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][T];
  float acc_s[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      acc[r][t] = _mm256_setzero_ps();
      acc_s[r][t] = 0.0f;
    }
  }
  const int8_t* xq[T];
  const float* dx[T];
  for (int t = 0; t < T; ++t) {
    xq[t] = a.qs(t0 + t);
    dx[t] = a.d(t0 + t);
  }
  for (int64_t b = 0; b < a.nb; ++b) {
    __m256i w[R], sign_src[R];
    float dw[R], second[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + b * kBlockBytes<Q>;
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes), _MM_HINT_T0);
      w[r] = LoadBlock<Q>(blk, &sign_src[r]);
      dw[r] = HalfAt(blk);
      second[r] = Q == QType::kQ4_1 ? HalfAt(blk + 2) : dw[r];
    }
    for (int t = 0; t < T; ++t) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + b * 32));
      for (int r = 0; r < R; ++r) {
        const __m256i xs = Q == QType::kQ8_0 ? _mm256_sign_epi8(x, sign_src[r]) : x;
        const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w[r], xs), ones);
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw[r] * dx[t][b]),
                                    acc[r][t]);
        if constexpr (Q != QType::kQ8_0) acc_s[r][t] += second[r] * extra[t * a.nb + b];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = HsumPs(acc[r][t]) + acc_s[r][t];
  }
}

template <QType Q, int R>
inline void QuantTokenTiles(const uint8_t* const* rows, const QuantizedActs& a, int64_t t0,
                            int64_t count, const float* extra, float* y, int64_t ldy) {
  // Q8_0 has no extras (null).
  auto extra_at = [&](int64_t t) { return extra != nullptr ? extra + t * a.nb : nullptr; };
  int64_t t = 0;
  for (; t + kTokenTile <= count; t += kTokenTile) {
    QuantTile<Q, R, kTokenTile>(rows, a, t0 + t, extra_at(t), y + t * ldy, ldy);
  }
  if (t < count) QuantTile<Q, R, 1>(rows, a, t0 + t, extra_at(t), y + t * ldy, ldy);
}

template <QType Q>
void QuantKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const float* extras = static_cast<const float*>(a.packed);
  for (int64_t t0 = 0; t0 < a.n; t0 += kTokenChunk) {
    const int64_t count = std::min(kTokenChunk, a.n - t0);
    const float* extra = extras != nullptr ? extras + t0 * a.q.nb : nullptr;
    float* yc = y + t0 * ldy;
    int64_t r = r0;
    for (; r + kRowTile <= r1; r += kRowTile) {
      const uint8_t* rows[kRowTile];
      for (int i = 0; i < kRowTile; ++i) rows[i] = RowPtr(w, r + i);
      QuantTokenTiles<Q, kRowTile>(rows, a.q, t0, count, extra, yc + r, ldy);
    }
    for (; r < r1; ++r) {
      const uint8_t* rows[1] = {RowPtr(w, r)};
      QuantTokenTiles<Q, 1>(rows, a.q, t0, count, extra, yc + r, ldy);
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
    k.q4_0 = Kernel{QuantKernel<QType::kQ4_0>, ExtrasBytes, PackExtras<QType::kQ4_0>};
    k.q4_1 = Kernel{QuantKernel<QType::kQ4_1>, ExtrasBytes, PackExtras<QType::kQ4_1>};
    k.quantize = QuantizeActsAvx2;
    k.to_f16 = ToF16Avx2;
    return k;
  }();
  return kernels;
}

}  // namespace saola::kernels::cpu::internal
