// AVX-512 VNNI kernels for Q8_0 / Q4_0 / Q4_1 weights, "rows in lanes": 16 weight rows per zmm,
// llama.cpp's per-lane block dots and float order bit for bit (see matmul_rows_avx512.h).
//
// Per block and 16 rows: the rows' bytes are transposed in registers into 8 VNNI vectors (4 loads
// + 12 inserts + 8 unpacks), the scales come from one gather of the rows' (d, m) dwords, and per
// token 8 vpdpbusd (activation dwords broadcast from memory) + 8 cvt + 8 fma fold the block into
// the 8 lane accumulators. Q4_0's "- 8" and Q8_0's "+ 128" (xor 0x80 makes the weights unsigned
// for vpdpbusd) are undone exactly by starting each lane's dot at -8 / -128 times the sum of the
// lane's 4 activation quants (packed once per call).
//
// One token (decode): each block is unpacked in registers and used at once. More tokens: a 16-row
// tile is unpacked once into an L1 buffer and reused by every token, two tokens per pass.
//
// Each tile's weight stream prefetches kPrefetchBytes ahead: decode reads ~100 MB of weights per
// token, and the hardware prefetchers alone keep too few lines in flight (this doubles cold-cache
// throughput on this class of machine).
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

// Per token, block and lane k: the integer start of the lane's dot, -8 (Q4_0) or -128 (Q8_0)
// times the sum of activation quants 4k .. 4k + 3. Layout [token][block][8].
size_t LaneCorrBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * a.q.nb) * 8 * sizeof(int32_t);
}

template <QType Q>
void PackLaneCorr(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  constexpr int32_t kMul = Q == QType::kQ4_0 ? -8 : -128;
  const __m256i ones = _mm256_set1_epi8(1);
  int32_t* corr = static_cast<int32_t*>(packed);
  for (int64_t t = t0; t < t1; ++t) {
    const int8_t* qs = a.q.qs(t);
    for (int64_t b = 0; b < a.q.nb; ++b) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + b * 32));
      const __m256i lane_sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, x);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr + (t * a.q.nb + b) * 8),
                          _mm256_mullo_epi32(lane_sums, _mm256_set1_epi32(kMul)));
    }
  }
}

// Folds one block of one token into the 8 lane accumulators. w: the block's 8 VNNI vectors,
// x: the token's 32 activation quants of the block, corr: its 8 lane corrections (Q4_0 / Q8_0).
template <QType Q>
inline void FoldBlock(const __m512i w[8], const int8_t* x, const int32_t* corr, __m512 dvec,
                      __m512 acc[8]) {
  for (int k = 0; k < 8; ++k) {
    int32_t xk;
    std::memcpy(&xk, x + 4 * k, 4);
    const __m512i start = Q == QType::kQ4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(corr[k]);
    const __m512i p = _mm512_dpbusd_epi32(start, w[k], _mm512_set1_epi32(xk));
    acc[k] = _mm512_fmadd_ps(dvec, _mm512_cvtepi32_ps(p), acc[k]);
  }
}

inline void PrefetchAhead(const uint8_t* const rows[kRows], int64_t off) {
  for (int r = 0; r < kRows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(rows[r] + off + kPrefetchBytes), _MM_HINT_T0);
  }
}

template <QType Q>
inline void StoreResult(const __m512 acc[8], __m512 summs, __mmask16 valid, float* y) {
  __m512 h = rows::Hsum8(acc);
  if constexpr (Q == QType::kQ4_1) h = _mm512_add_ps(h, summs);
  _mm512_mask_storeu_ps(y, valid, h);
}

// One token against one 16-row tile, unpacking each block in registers.
template <QType Q>
void DirectTile(const uint8_t* const rows[kRows], const RowGather& g, const QuantizedActs& a,
                const int32_t* corr, float* y) {
  const int64_t nb = a.nb;
  const int8_t* x = a.qs(0);
  const float* dx = a.d(0);
  const float* sx = a.s(0);
  __m512 acc[8];
  for (int k = 0; k < 8; ++k) acc[k] = _mm512_setzero_ps();
  __m512 summs = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    PrefetchAhead(rows, b * rows::kBlockBytes<Q>);
    __m512i w[8];
    rows::UnpackBlock<Q>(rows, b, w);
    __m512 dw, mw;
    rows::GatherScales<Q>(rows[0], b, g, &dw, &mw);
    if constexpr (Q == QType::kQ4_1) summs = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx[b]), summs);
    FoldBlock<Q>(w, x + b * 32, Q == QType::kQ4_1 ? nullptr : corr + b * 8,
                 _mm512_mul_ps(dw, _mm512_set1_ps(dx[b])), acc);
  }
  StoreResult<Q>(acc, summs, g.valid, y);
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
    rows::UnpackBlock<Q>(rows, b, v);
    for (int k = 0; k < 8; ++k) _mm512_store_si512(buf.w[b * 8 + k].bytes, v[k]);
    __m512 dw, mw;
    rows::GatherScales<Q>(rows[0], b, g, &dw, &mw);
    _mm512_storeu_ps(&buf.d[b * kRows], dw);
    _mm512_storeu_ps(&buf.m[b * kRows], mw);
  }
}

// T tokens (1 or 2) starting at t0 against a buffered tile.
template <QType Q, int T>
void BufferedTokens(const TileBuffer& buf, __mmask16 valid, const QuantizedActs& a, int64_t t0,
                    const int32_t* corr, float* y, int64_t ldy) {
  const int64_t nb = a.nb;
  __m512 acc[T][8];
  __m512 summs[T];
  for (int t = 0; t < T; ++t) {
    for (int k = 0; k < 8; ++k) acc[t][k] = _mm512_setzero_ps();
    summs[t] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m512i w[8];
    for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(buf.w[b * 8 + k].bytes);
    const __m512 dw = _mm512_loadu_ps(&buf.d[b * kRows]);
    const __m512 mw = _mm512_loadu_ps(&buf.m[b * kRows]);
    for (int t = 0; t < T; ++t) {
      const int64_t tok = t0 + t;
      if constexpr (Q == QType::kQ4_1) {
        summs[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s(tok)[b]), summs[t]);
      }
      FoldBlock<Q>(w, a.qs(tok) + b * 32,
                   Q == QType::kQ4_1 ? nullptr : corr + (tok * nb + b) * 8,
                   _mm512_mul_ps(dw, _mm512_set1_ps(a.d(tok)[b])), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) StoreResult<Q>(acc[t], summs[t], valid, y + t * ldy);
}

template <QType Q>
void RowsKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  static thread_local TileBuffer buf;
  const QuantizedActs& q = a.q;
  const int64_t nb = q.nb;
  const int32_t* corr = static_cast<const int32_t*>(a.packed);
  if (a.n > 1) {
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
    if (a.n == 1) {
      DirectTile<Q>(rows, g, q, corr, yr);
      continue;
    }
    UnpackTile<Q>(rows, g, nb, buf);
    int64_t t = 0;
    for (; t + 2 <= a.n; t += 2) BufferedTokens<Q, 2>(buf, g.valid, q, t, corr, yr + t * ldy, ldy);
    if (t < a.n) BufferedTokens<Q, 1>(buf, g.valid, q, t, corr, yr + t * ldy, ldy);
  }
}

}  // namespace

Kernel RowsAvx512Kernel(DType type) {
  switch (type) {
    case DType::kQ8_0:
      return Kernel{RowsKernel<QType::kQ8_0>, LaneCorrBytes, PackLaneCorr<QType::kQ8_0>};
    case DType::kQ4_0:
      return Kernel{RowsKernel<QType::kQ4_0>, LaneCorrBytes, PackLaneCorr<QType::kQ4_0>};
    case DType::kQ4_1: return Kernel{RowsKernel<QType::kQ4_1>};
    default: return Kernel{};
  }
}

}  // namespace saola::kernels::cpu::internal
