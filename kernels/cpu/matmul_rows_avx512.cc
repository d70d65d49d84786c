// AVX-512 VNNI kernels for Q8_0 / Q4_0 / Q4_1 weights, "rows in lanes" (see matmul_rows_avx512.h
// for the shared pieces and the canonical fold that makes every path bit-identical).
//
// A tile is 16 weight rows, one per 32-bit lane. For each 32-element block the 16 rows' bytes are
// transposed in registers into the VNNI layout (lane r of vector k = elements 4k..4k+3 of row r;
// 4 loads + 12 inserts + 8 unpacks for the 16 rows), and 8 vpdpbusd against the token's activation
// dwords broadcast from memory give the 16 rows' exact block dots. The block's scales come from
// one gather of the 16 rows' (d, m) dwords. Q4_0's "- 8" and Q8_0's "+ 128" (xor 0x80 makes the
// weights unsigned for vpdpbusd) are undone by starting the integer dot at -8 / -128 * sum(q_x).
//
// Few tokens (decode): each block is unpacked in registers and used by the T <= 3 tokens at once.
// Many tokens: a 16-row tile is unpacked once into an L1 buffer and reused by every token, 8
// tokens at a time (8 weight vectors + 8 accumulators in registers; per token and block: 8
// vpdpbusd + 3-4 ops of fold, ~40 multiply-adds per instruction).
//
// Each tile's weight stream prefetches kPrefetchBytes ahead: decode reads ~100 MB of weights per
// token, and the hardware prefetchers alone keep too few lines in flight.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "kernels/cpu/matmul_rows_avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/matmul_kernels.h"

namespace saola::kernels::cpu::internal {
namespace {

using rows::kRows;
using rows::QType;
using rows::RowGather;

constexpr int64_t kPrefetchBytes = 4096;
// Tokens at or above which a row tile is unpacked once into memory and reused.
constexpr int64_t kBufferedMinTokens = 4;
// Tokens per pass over a buffered row tile.
constexpr int kTokenTile = 8;

// Per token and block, the integer start of the block dot: Q4_0 -8 * sum(q_x), Q8_0 -128 * sum.
size_t CorrBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * a.q.nb) * sizeof(int32_t);
}

template <QType Q>
void PackCorr(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  int32_t* corr = static_cast<int32_t*>(packed);
  const int32_t k = Q == QType::kQ4_0 ? -8 : -128;
  for (int64_t t = t0; t < t1; ++t) {
    const int32_t* sum = a.q.sum(t);
    for (int64_t b = 0; b < a.q.nb; ++b) corr[t * a.q.nb + b] = k * sum[b];
  }
}

// The 16 rows' exact dots of block b with one token: 8 vpdpbusd against the token's dwords.
template <QType Q>
inline __m512i BlockDot(const __m512i w[8], const int8_t* x, int32_t corr) {
  __m512i isum = Q == QType::kQ4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(corr);
  for (int k = 0; k < 8; ++k) {
    int32_t xk;
    std::memcpy(&xk, x + 4 * k, 4);
    isum = _mm512_dpbusd_epi32(isum, w[k], _mm512_set1_epi32(xk));
  }
  return isum;
}

inline void PrefetchAhead(const uint8_t* const rows[kRows], int64_t off) {
  for (int r = 0; r < kRows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(rows[r] + off + kPrefetchBytes), _MM_HINT_T0);
  }
}

// Few tokens: T tokens starting at t0 against one 16-row tile, unpacking in registers.
template <QType Q, int T>
void DirectTile(const uint8_t* const rows[kRows], const RowGather& g, const QuantizedActs& a,
                int64_t t0, const int32_t* corr, float* y, int64_t ldy) {
  const int64_t nb = a.nb;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    PrefetchAhead(rows, b * rows::kBlockBytes<Q>);
    __m512i w[8];
    rows::UnpackBlock<Q, true>(rows, b, w);
    __m512 dw, mw;
    rows::GatherScales<Q>(rows[0], b, g, &dw, &mw);
    for (int t = 0; t < T; ++t) {
      const int64_t tok = t0 + t;
      const int32_t c = Q == QType::kQ4_1 ? 0 : corr[tok * nb + b];
      const __m512i isum = BlockDot<Q>(w, a.qs(tok) + b * 32, c);
      acc[t] = rows::Fold<Q>(acc[t], isum, dw, mw, a.d(tok)[b], a.s(tok)[b]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * ldy, g.valid, acc[t]);
}

// One 16-row tile unpacked into memory: [nb][8] VNNI vectors and [nb][16] scales.
struct alignas(64) Vec64 {
  uint8_t bytes[64];
};
struct TileBuffer {
  std::vector<Vec64> w;
  std::vector<float> d;
  std::vector<float> m;
};

template <QType Q>
void UnpackTile(const uint8_t* const rows[kRows], const RowGather& g, int64_t nb,
                TileBuffer& buf) {
  for (int64_t b = 0; b < nb; ++b) {
    PrefetchAhead(rows, b * rows::kBlockBytes<Q>);
    __m512i v[8];
    rows::UnpackBlock<Q, true>(rows, b, v);
    for (int k = 0; k < 8; ++k) _mm512_store_si512(buf.w[b * 8 + k].bytes, v[k]);
    __m512 dw, mw;
    rows::GatherScales<Q>(rows[0], b, g, &dw, &mw);
    _mm512_storeu_ps(&buf.d[b * kRows], dw);
    _mm512_storeu_ps(&buf.m[b * kRows], mw);
  }
}

// T tokens starting at t0 against a buffered tile.
template <QType Q, int T>
void BufferedTokens(const TileBuffer& buf, __mmask16 valid, const QuantizedActs& a, int64_t t0,
                    const int32_t* corr, float* y, int64_t ldy) {
  const int64_t nb = a.nb;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  const int8_t* xq[T];
  const float* dx[T];
  const float* sx[T];
  const int32_t* ct[T];
  for (int t = 0; t < T; ++t) {
    xq[t] = a.qs(t0 + t);
    dx[t] = a.d(t0 + t);
    sx[t] = a.s(t0 + t);
    ct[t] = Q == QType::kQ4_1 ? nullptr : corr + (t0 + t) * nb;
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m512i w[8];
    for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(buf.w[b * 8 + k].bytes);
    const __m512 dw = _mm512_loadu_ps(&buf.d[b * kRows]);
    const __m512 mw = _mm512_loadu_ps(&buf.m[b * kRows]);
    for (int t = 0; t < T; ++t) {
      const __m512i isum = BlockDot<Q>(w, xq[t] + b * 32, Q == QType::kQ4_1 ? 0 : ct[t][b]);
      acc[t] = rows::Fold<Q>(acc[t], isum, dw, mw, dx[t][b], sx[t][b]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * ldy, valid, acc[t]);
}

template <QType Q>
void RowsKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  static thread_local TileBuffer buf;
  const QuantizedActs& q = a.q;
  const int64_t nb = q.nb;
  const int32_t* corr = static_cast<const int32_t*>(a.packed);
  const bool buffered = a.n >= kBufferedMinTokens;
  if (buffered) {
    buf.w.resize(static_cast<size_t>(nb) * 8);
    buf.d.resize(static_cast<size_t>(nb) * kRows);
    buf.m.resize(static_cast<size_t>(nb) * kRows);
  }
  for (int64_t r = r0; r < r1; r += kRows) {
    const int count = static_cast<int>(std::min<int64_t>(kRows, r1 - r));
    // Rows past the end read the tile's first row; their lanes are never stored.
    const uint8_t* rows[kRows];
    for (int i = 0; i < kRows; ++i) {
      rows[i] = static_cast<const uint8_t*>(w.data) +
                static_cast<size_t>(r + (i < count ? i : 0)) * w.row_stride_bytes;
    }
    const RowGather g = rows::MakeRowGather(w.row_stride_bytes, count);
    float* yr = y + r;
    if (!buffered) {
      switch (a.n) {
        case 1: DirectTile<Q, 1>(rows, g, q, 0, corr, yr, ldy); break;
        case 2: DirectTile<Q, 2>(rows, g, q, 0, corr, yr, ldy); break;
        default: DirectTile<Q, 3>(rows, g, q, 0, corr, yr, ldy); break;
      }
      continue;
    }
    UnpackTile<Q>(rows, g, nb, buf);
    int64_t t = 0;
    for (; t + kTokenTile <= a.n; t += kTokenTile) {
      BufferedTokens<Q, kTokenTile>(buf, g.valid, q, t, corr, yr + t * ldy, ldy);
    }
    for (; t + 2 <= a.n; t += 2) BufferedTokens<Q, 2>(buf, g.valid, q, t, corr, yr + t * ldy, ldy);
    if (t < a.n) BufferedTokens<Q, 1>(buf, g.valid, q, t, corr, yr + t * ldy, ldy);
  }
}

}  // namespace

Kernel RowsAvx512Kernel(DType type) {
  switch (type) {
    case DType::kQ8_0: return Kernel{RowsKernel<QType::kQ8_0>, CorrBytes, PackCorr<QType::kQ8_0>};
    case DType::kQ4_0: return Kernel{RowsKernel<QType::kQ4_0>, CorrBytes, PackCorr<QType::kQ4_0>};
    case DType::kQ4_1: return Kernel{RowsKernel<QType::kQ4_1>};
    default: return Kernel{};
  }
}

}  // namespace saola::kernels::cpu::internal
