// AVX-512 VNNI matmul kernels (compiled with -mavx512{f,bw,vl,dq,vnni}).
//
// Quantized weights are used in place (mmap'd GGUF, never repacked); the work per weight byte is
// kept low by shaping the *activations* (which we own) to fit the weight bytes instead:
//
// Q4_0 / Q4_1, "group of three blocks": one unaligned 64-byte load at a block start holds three
// whole blocks, scales included (Q4_1: 3 x 20 = 60 bytes, Q4_0: 3 x 18 = 54). Without moving any
// byte, the nibbles become two vectors of "16 x nibble" values: hi16 = v & 0xF0 and
// lo16 = (v << 4) & 0xF0 (the 16-bit shift leaks only into the low nibble, which the mask drops).
// The activations are packed per group to sit under the weight bytes they multiply (zeros under
// scale bytes), so two vpdpbusd give, in each 32-bit lane, 16 x a partial sum of one block. A lane
// never mixes two blocks (block starts fall on even bytes and scale bytes carry zero activations),
// so one vpermw of the same loaded vector spreads each block's fp16 scale over its lanes, and one
// cvt + fma per group applies d_w * d_x / 16. Q4_1's m * s term rides along: the lane holding a
// block's (d, m) bytes starts at integer 1 with zero activations, and its scale lane is m * s.
// Q4_0's "- 8" becomes an initial -128 * sum(q_x) in one lane of the block.
//
// Q8_0, "pairs": two blocks' qs side by side in a zmm (ymm load + insert), flipped to unsigned
// with xor 0x80 for vpdpbusd (u8 x s8); the lanes start at -128 * sum(q_x) to undo the flip.
//
// The packed activations are built once per call by the driver (Kernel::pack) and shared by all
// threads. Every kernel computes a tile of R rows x T tokens per pass over the row's groups, so
// each weight vector is unpacked once per T tokens; decode (n = 1) uses R = 4 rows, larger n
// R x T = 4 x 4 (with AMX, matmul_amx.cc takes n >= 16). Tokens are walked in chunks whose packed
// activations stay in L2 while the rows stream by, and each row stream prefetches ahead.

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* temporaries.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu::internal {
namespace {

constexpr int kRowTile = 4;
constexpr int kTokenTile = 4;
constexpr int64_t kTokenChunk = 64;
// Weight bytes ahead of the current position that each row stream prefetches. Decode reads
// ~100 MB of weights per token from DRAM / a shared L3; the hardware prefetchers alone keep too
// few lines in flight (this doubles cold-cache GEMV throughput on Sapphire Rapids class cores).
constexpr int64_t kPrefetchBytes = 4096;

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
// Q4_0 / Q4_1: groups of three blocks.

// Activations for one group of three blocks of one token, laid out under the weight bytes.
struct alignas(64) Q4Group {
  int8_t lo[64];     // under each block's qs bytes: x[0..15] (the low nibbles' elements)
  int8_t hi[64];     // x[16..31]
  float xs[16];      // per lane: d_x / 16 (qs lanes), s (Q4_1's (d, m) lane), else 0
  int32_t init[16];  // per lane start value: Q4_1 1 in (d, m) lanes; Q4_0 -128 * sum(q_x)
};

// Layout facts of a Q4 type's group, as lane tables.
struct Q4Layout {
  int block_bytes;
  int qs_offset;
  bool has_m;
  // Per 32-bit lane of a 64-byte group load: the block (0..2) whose qs it holds, or -1.
  std::array<int, 16> qs_block;
  // Q4_1: per lane, the block whose (d, m) bytes it holds, or -1.
  std::array<int, 16> m_block;
  // vpermw indices: the fp16 word each lane's scale comes from.
  std::array<int16_t, 32> scale_word;
};

constexpr Q4Layout MakeQ4Layout(int block_bytes, int qs_offset, bool has_m) {
  Q4Layout l{block_bytes, qs_offset, has_m, {}, {}, {}};
  for (int lane = 0; lane < 16; ++lane) {
    l.qs_block[lane] = -1;
    l.m_block[lane] = -1;
    for (int j = 0; j < 3; ++j) {
      const int qs_begin = j * block_bytes + qs_offset;
      const int qs_end = qs_begin + 16;
      if (4 * lane < qs_end && 4 * lane + 4 > qs_begin) l.qs_block[lane] = j;
      if (has_m && 4 * lane == j * block_bytes) l.m_block[lane] = j;
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    int word = 0;
    if (lane < 16 && l.qs_block[lane] >= 0) word = l.qs_block[lane] * block_bytes / 2;
    if (lane < 16 && l.m_block[lane] >= 0) word = l.m_block[lane] * block_bytes / 2 + 1;
    l.scale_word[lane] = static_cast<int16_t>(word);
  }
  return l;
}

constexpr Q4Layout kQ4_0Layout = MakeQ4Layout(18, 2, false);
constexpr Q4Layout kQ4_1Layout = MakeQ4Layout(20, 4, true);

// Packs tokens [t0, t1) into groups[t * num_groups + g].
void PackQ4(const Q4Layout& l, const QuantizedActs& a, int64_t t0, int64_t t1, Q4Group* groups) {
  const int64_t num_groups = (a.nb + 2) / 3;
  for (int64_t i = t0; i < t1; ++i) {
    const int8_t* qs = a.qs(i);
    const float* d = a.d(i);
    const float* s = a.s(i);
    const int32_t* sum = a.sum(i);
    for (int64_t g = 0; g < num_groups; ++g) {
      Q4Group& p = groups[i * num_groups + g];
      std::memset(&p, 0, sizeof(p));
      const int valid = static_cast<int>(std::min<int64_t>(3, a.nb - g * 3));
      for (int j = 0; j < valid; ++j) {
        const int64_t b = g * 3 + j;
        std::memcpy(p.lo + j * l.block_bytes + l.qs_offset, qs + b * 32, 16);
        std::memcpy(p.hi + j * l.block_bytes + l.qs_offset, qs + b * 32 + 16, 16);
      }
      bool first_seen[3] = {false, false, false};
      for (int lane = 0; lane < 16; ++lane) {
        const int jq = l.qs_block[lane];
        if (jq >= 0 && jq < valid) {
          p.xs[lane] = d[g * 3 + jq] * (1.0f / 16.0f);
          if (!l.has_m && !first_seen[jq]) p.init[lane] = -128 * sum[g * 3 + jq];
          first_seen[jq] = true;
        }
        const int jm = l.m_block[lane];
        if (jm >= 0 && jm < valid) {
          p.xs[lane] = s[g * 3 + jm];
          p.init[lane] = 1;
        }
      }
    }
  }
}

// One tile: R rows x T tokens over all groups of the rows.
template <int R, int T>
inline void Q4Tile(const Q4Layout& l, const uint8_t* const* rows, int64_t nb,
                   const Q4Group* groups, int64_t num_groups, float* y, int64_t ldy) {
  const __m512i f0 = _mm512_set1_epi8(static_cast<char>(0xF0));
  const __m512i scale_idx = _mm512_loadu_si512(l.scale_word.data());
  const int group_bytes = 3 * l.block_bytes;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < num_groups; ++g) {
    // The row's last group is loaded with a mask: never read past the row.
    const bool last = g == num_groups - 1;
    const int valid = static_cast<int>(std::min<int64_t>(3, nb - g * 3));
    const __mmask64 mask = last ? (~0ull >> (64 - valid * l.block_bytes)) : ~0ull;
    __m512i lo[R], hi[R];
    __m512 wd[R];
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + g * group_bytes + kPrefetchBytes),
                   _MM_HINT_T0);
      const __m512i v = _mm512_maskz_loadu_epi8(mask, rows[r] + g * group_bytes);
      hi[r] = _mm512_and_si512(v, f0);
      lo[r] = _mm512_and_si512(_mm512_slli_epi16(v, 4), f0);
      wd[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(scale_idx, v)));
    }
    for (int t = 0; t < T; ++t) {
      const Q4Group& p = groups[t * num_groups + g];
      const __m512i xlo = _mm512_load_si512(p.lo);
      const __m512i xhi = _mm512_load_si512(p.hi);
      const __m512 xs = _mm512_load_ps(p.xs);
      for (int r = 0; r < R; ++r) {
        __m512i isum = _mm512_load_si512(p.init);
        isum = _mm512_dpbusd_epi32(isum, lo[r], xlo);
        isum = _mm512_dpbusd_epi32(isum, hi[r], xhi);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wd[r], xs), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

template <int R>
inline void Q4TokenTiles(const Q4Layout& l, const uint8_t* const* rows, int64_t nb,
                         const Q4Group* groups, int64_t num_groups, int64_t count, float* y,
                         int64_t ldy) {
  int64_t t = 0;
  for (; t + kTokenTile <= count; t += kTokenTile) {
    Q4Tile<R, kTokenTile>(l, rows, nb, groups + t * num_groups, num_groups, y + t * ldy, ldy);
  }
  const Q4Group* g = groups + t * num_groups;
  float* yt = y + t * ldy;
  switch (count - t) {
    case 1: Q4Tile<R, 1>(l, rows, nb, g, num_groups, yt, ldy); break;
    case 2: Q4Tile<R, 2>(l, rows, nb, g, num_groups, yt, ldy); break;
    case 3: Q4Tile<R, 3>(l, rows, nb, g, num_groups, yt, ldy); break;
    default: break;
  }
}

size_t Q4PackedBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * ((a.q.nb + 2) / 3)) * sizeof(Q4Group);
}

template <const Q4Layout& kLayout>
void Q4Pack(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  PackQ4(kLayout, a.q, t0, t1, static_cast<Q4Group*>(packed));
}

template <const Q4Layout& kLayout>
void Q4Kernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t nb = a.q.nb;
  const int64_t num_groups = (nb + 2) / 3;
  const Q4Group* all_groups = static_cast<const Q4Group*>(a.packed);
  for (int64_t t0 = 0; t0 < a.n; t0 += kTokenChunk) {
    const int64_t count = std::min(kTokenChunk, a.n - t0);
    const Q4Group* groups = all_groups + t0 * num_groups;
    float* yc = y + t0 * ldy;
    int64_t r = r0;
    for (; r + kRowTile <= r1; r += kRowTile) {
      const uint8_t* rows[kRowTile];
      for (int i = 0; i < kRowTile; ++i) rows[i] = RowPtr(w, r + i);
      Q4TokenTiles<kRowTile>(kLayout, rows, nb, groups, num_groups, count, yc + r, ldy);
    }
    for (; r < r1; ++r) {
      const uint8_t* rows[1] = {RowPtr(w, r)};
      Q4TokenTiles<1>(kLayout, rows, nb, groups, num_groups, count, yc + r, ldy);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Q8_0: pairs of blocks.

struct alignas(64) Q8Pair {
  float dx[16];      // d_x of the pair's first block in lanes 0-7, second in 8-15
  int32_t init[16];  // -128 * sum(q_x) in lanes 0 and 8
};

size_t Q8PackedBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * ((a.q.nb + 1) / 2)) * sizeof(Q8Pair);
}

// Packs tokens [t0, t1) into pairs[t * num_pairs + p].
void PackQ8(const Acts& acts, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  const QuantizedActs& a = acts.q;
  Q8Pair* pairs = static_cast<Q8Pair*>(packed);
  const int64_t num_pairs = (a.nb + 1) / 2;
  for (int64_t i = t0; i < t1; ++i) {
    const float* d = a.d(i);
    const int32_t* sum = a.sum(i);
    for (int64_t p = 0; p < num_pairs; ++p) {
      Q8Pair& q = pairs[i * num_pairs + p];
      std::memset(&q, 0, sizeof(q));
      for (int h = 0; h < 2; ++h) {
        const int64_t b = 2 * p + h;
        if (b >= a.nb) break;
        for (int lane = 0; lane < 8; ++lane) q.dx[h * 8 + lane] = d[b];
        q.init[h * 8] = -128 * sum[b];
      }
    }
  }
}

template <int R, int T>
inline void Q8Tile(const uint8_t* const* rows, int64_t nb, const QuantizedActs& a, int64_t t0,
                   const Q8Pair* pairs, int64_t num_pairs, float* y, int64_t ldy) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i pair_idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  const int8_t* xq[T];
  for (int t = 0; t < T; ++t) xq[t] = a.qs(t0 + t);
  for (int64_t p = 0; p < num_pairs; ++p) {
    const bool full = 2 * p + 1 < nb;
    __m512i wq[R];
    __m512 wd[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + p * 68;
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes), _MM_HINT_T0);
      const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      const __m512 da = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
      if (full) {
        const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 36));
        const __m512 db =
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 34)));
        wq[r] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1), flip);
        wd[r] = _mm512_permutex2var_ps(da, pair_idx, db);
      } else {
        // A lone last block: the upper half multiplies zero-scaled lanes (dx = 0 there).
        wq[r] = _mm512_xor_si512(_mm512_zextsi256_si512(qa), flip);
        wd[r] = _mm512_permutexvar_ps(pair_idx, da);
      }
    }
    for (int t = 0; t < T; ++t) {
      const Q8Pair& q = pairs[t * num_pairs + p];
      const __m512i x = _mm512_loadu_si512(xq[t] + p * 64);
      const __m512 dx = _mm512_load_ps(q.dx);
      for (int r = 0; r < R; ++r) {
        const __m512i isum = _mm512_dpbusd_epi32(_mm512_load_si512(q.init), wq[r], x);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wd[r], dx), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

template <int R>
inline void Q8TokenTiles(const uint8_t* const* rows, int64_t nb, const QuantizedActs& a,
                         int64_t t0, const Q8Pair* pairs, int64_t num_pairs, int64_t count,
                         float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + kTokenTile <= count; t += kTokenTile) {
    Q8Tile<R, kTokenTile>(rows, nb, a, t0 + t, pairs + t * num_pairs, num_pairs, y + t * ldy,
                          ldy);
  }
  const Q8Pair* pp = pairs + t * num_pairs;
  float* yt = y + t * ldy;
  switch (count - t) {
    case 1: Q8Tile<R, 1>(rows, nb, a, t0 + t, pp, num_pairs, yt, ldy); break;
    case 2: Q8Tile<R, 2>(rows, nb, a, t0 + t, pp, num_pairs, yt, ldy); break;
    case 3: Q8Tile<R, 3>(rows, nb, a, t0 + t, pp, num_pairs, yt, ldy); break;
    default: break;
  }
}

void Q8_0Kernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t nb = a.q.nb;
  const int64_t num_pairs = (nb + 1) / 2;
  const Q8Pair* all_pairs = static_cast<const Q8Pair*>(a.packed);
  for (int64_t t0 = 0; t0 < a.n; t0 += kTokenChunk) {
    const int64_t count = std::min(kTokenChunk, a.n - t0);
    const Q8Pair* pairs = all_pairs + t0 * num_pairs;
    float* yc = y + t0 * ldy;
    int64_t r = r0;
    for (; r + kRowTile <= r1; r += kRowTile) {
      const uint8_t* rows[kRowTile];
      for (int i = 0; i < kRowTile; ++i) rows[i] = RowPtr(w, r + i);
      Q8TokenTiles<kRowTile>(rows, nb, a.q, t0, pairs, num_pairs, count, yc + r, ldy);
    }
    for (; r < r1; ++r) {
      const uint8_t* rows[1] = {RowPtr(w, r)};
      Q8TokenTiles<1>(rows, nb, a.q, t0, pairs, num_pairs, count, yc + r, ldy);
    }
  }
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

// F16 / BF16 activations arrive rounded to the weight's type (as ggml's vec_dot_type); they are
// widened back to float once per call ([token][cols]) so the inner loop is the F32 one.
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

const IsaKernels& Avx512Kernels() {
  static const IsaKernels kernels = [] {
    IsaKernels k;
    k.f32 = Kernel{FloatKernel<FloatKind::kF32>};
    k.f16 = Kernel{FloatKernel<FloatKind::kF16>, WidenedBytes, PackWidened<FloatKind::kF16>};
    k.bf16 = Kernel{FloatKernel<FloatKind::kBF16>, WidenedBytes, PackWidened<FloatKind::kBF16>};
    k.q8_0 = Kernel{Q8_0Kernel, Q8PackedBytes, PackQ8};
    k.q4_0 = Kernel{Q4Kernel<kQ4_0Layout>, Q4PackedBytes, Q4Pack<kQ4_0Layout>};
    k.q4_1 = Kernel{Q4Kernel<kQ4_1Layout>, Q4PackedBytes, Q4Pack<kQ4_1Layout>};
    k.quantize = QuantizeActsAvx512;
    k.to_f16 = ToF16Avx512;
    k.to_bf16 = ToBf16Avx512;
    return k;
  }();
  return kernels;
}

}  // namespace saola::kernels::cpu::internal
