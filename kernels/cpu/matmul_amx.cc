// AMX-INT8 GEMM for many tokens (prefill), for Q8_0, Q4_0 and Q4_1 weights.
//
// Tiles per 32-element block b (K = 32, so every int32 product belongs to one block and can get
// that block's two scales afterwards), in a 2 x 2 arrangement of 32 tokens x 32 rows per step:
//   A0, A1 = activations, 16 tokens x 32 int8 each, loaded straight from QuantizedActs (row
//            stride = the activation row stride), no packing;
//   B0, B1 = weights, 16 rows each in the VNNI layout B[k/4][row][4] (8 x 64 bytes), unpacked
//            once per 32-row step into a per-thread buffer and reused by every token step:
//            Q4_1 as nibbles (u8, tdpbsud), Q4_0 as nibble - 8 and Q8_0 as is (s8, tdpbssd);
//   C00..C11 = 16 tokens x 16 rows int32.
// The four products of a block are independent, so the tile unit pipelines them. After each
// block the C tiles go to memory, and the vector units fold the *previous two* blocks (their tile
// stores have landed by then) into a float accumulator in L1:
//   acc[t][r] += cvt(C[t][r]) * d_x[t] * d_w[r]  (+ Q4_1's s[t] * m_w[r]).
// The fold (3-4 vector ops per 16 products) is the bound, ~10x fewer ops per multiply-add than
// the VNNI GEMM.
//
// The tile state is configured at the start of every call and released at the end, so threads
// that never reach this path never carry the 8 KB AMX state. The config is written with inline
// asm (ldtilecfg with a memory operand): GCC 12 may drop stores to a stack config that it does not
// see the intrinsic read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu::internal {
namespace {

constexpr int kTile = 16;  // rows per B tile, tokens per A tile
constexpr int kStep = 32;  // rows and tokens per step (2 x 2 tiles)

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

// tmm0/1: A (16 x 32 bytes), tmm2/3: B (8 x 64 bytes), tmm4..7: C (16 x 64 bytes).
void ConfigureTiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int i : {0, 1}) {
    cfg.rows[i] = kTile;
    cfg.colsb[i] = 32;
  }
  for (int i : {2, 3}) {
    cfg.rows[i] = 8;
    cfg.colsb[i] = 64;
  }
  for (int i : {4, 5, 6, 7}) {
    cfg.rows[i] = kTile;
    cfg.colsb[i] = 64;
  }
  asm volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
}

enum class QType { kQ8_0, kQ4_0, kQ4_1 };

template <QType Q>
constexpr int kBlockBytes = Q == QType::kQ8_0 ? 34 : (Q == QType::kQ4_0 ? 18 : 20);

// Per-thread buffers.
struct Scratch {
  std::vector<uint8_t> b;     // [nb][2][512]: VNNI weight tiles of the 32-row step
  std::vector<float> d;       // [nb][32] row scales
  std::vector<float> m;       // [nb][32] Q4_1 row offsets
  std::vector<int8_t> a_pad;  // [32][nb * 32] tokens of a partial token step
  std::vector<int32_t> c;     // [2 blocks][4 tiles][16][16] tile stores
  std::vector<float> acc;     // [32 tokens][32 rows]
};

// Four 128-bit pieces of 16 rows, one per zmm lane: z[i] lane L = piece of row i + 4 L; after the
// 4 x 4 dword transpose inside each lane, out[j] holds dword j of rows 0..15 in order.
inline void Transpose4x4Lanes(const __m512i z[4], __m512i out[4]) {
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Loads 16 bytes at offset `off` of block b of the 16 rows into the lane order above.
inline void LoadPieces(const uint8_t* const rows[kTile], int64_t off, __m512i z[4]) {
  for (int i = 0; i < 4; ++i) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 4] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 8] + off)), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 12] + off)), 3);
    z[i] = v;
  }
}

// Unpacks rows [r0, r0 + count) (count <= 32) of w into s: per block, two VNNI tiles (rows 0-15,
// 16-31: B[k4][row][4] = elements 4 k4 .. 4 k4 + 3 of the row) and the row scales. Missing rows
// read row r0 (any valid row) and get zero scales, so they contribute nothing.
template <QType Q>
void UnpackWeights(const Weight& w, int64_t r0, int count, int64_t nb, Scratch& s) {
  const uint8_t* rows[kStep];
  for (int r = 0; r < kStep; ++r) {
    rows[r] = static_cast<const uint8_t*>(w.data) +
              static_cast<size_t>(r0 + (r < count ? r : 0)) * w.row_stride_bytes;
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // Byte offsets of the rows from row r0 (for the scale gathers); rows past count are masked off
  // and get zero scales.
  __m512i row_offsets[2];
  __mmask16 valid[2];
  for (int half = 0; half < 2; ++half) {
    alignas(64) int32_t offsets[kTile];
    for (int i = 0; i < kTile; ++i) {
      offsets[i] = static_cast<int32_t>((half * kTile + i) * static_cast<int64_t>(w.row_stride_bytes));
    }
    row_offsets[half] = _mm512_load_si512(offsets);
    const int in_half = std::clamp(count - half * kTile, 0, kTile);
    valid[half] = static_cast<__mmask16>(in_half >= 16 ? 0xffff : (1u << in_half) - 1);
  }
  if constexpr (Q != QType::kQ4_1) std::fill(s.m.begin(), s.m.end(), 0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t blk = b * kBlockBytes<Q>;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* const* hr = rows + half * kTile;
      uint8_t* out = s.b.data() + (b * 2 + half) * 512;
      __m512i z[4], o[4];
      if constexpr (Q == QType::kQ8_0) {
        for (int part = 0; part < 2; ++part) {
          LoadPieces(hr, blk + 2 + part * 16, z);
          Transpose4x4Lanes(z, o);
          for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + (part * 4 + j) * 64, o[j]);
        }
      } else {
        LoadPieces(hr, blk + (Q == QType::kQ4_0 ? 2 : 4), z);
        Transpose4x4Lanes(z, o);
        for (int j = 0; j < 4; ++j) {
          __m512i lo = _mm512_and_si512(o[j], low4);
          __m512i hi = _mm512_and_si512(_mm512_srli_epi16(o[j], 4), low4);
          if constexpr (Q == QType::kQ4_0) {
            lo = _mm512_sub_epi8(lo, _mm512_set1_epi8(8));
            hi = _mm512_sub_epi8(hi, _mm512_set1_epi8(8));
          }
          _mm512_storeu_si512(out + j * 64, lo);
          _mm512_storeu_si512(out + (4 + j) * 64, hi);
        }
      }
    }
    // Scales: one dword gather per 16 rows reads (d, m) (or d and two qs bytes) at the block start.
    for (int half = 0; half < 2; ++half) {
      const __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid[half],
                                                      row_offsets[half], rows[0] + blk, 1);
      _mm512_storeu_ps(s.d.data() + b * kStep + half * kTile,
                       _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw)));
      if constexpr (Q == QType::kQ4_1) {
        _mm512_storeu_ps(s.m.data() + b * kStep + half * kTile,
                         _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16))));
      }
    }
  }
}

// Loads block b's tiles and issues its four products into tmm4..7 (C[token half][row half]).
template <QType Q>
inline void IssueBlock(const int8_t* a_base, size_t a_stride, const uint8_t* b_tiles, int64_t b) {
  _tile_loadd(0, a_base + b * 32, a_stride);
  _tile_loadd(1, a_base + kTile * a_stride + b * 32, a_stride);
  _tile_loadd(2, b_tiles + b * 1024, 64);
  _tile_loadd(3, b_tiles + b * 1024 + 512, 64);
  _tile_zero(4);
  _tile_zero(5);
  _tile_zero(6);
  _tile_zero(7);
  if constexpr (Q == QType::kQ4_1) {
    _tile_dpbsud(4, 0, 2);
    _tile_dpbsud(5, 0, 3);
    _tile_dpbsud(6, 1, 2);
    _tile_dpbsud(7, 1, 3);
  } else {
    _tile_dpbssd(4, 0, 2);
    _tile_dpbssd(5, 0, 3);
    _tile_dpbssd(6, 1, 2);
    _tile_dpbssd(7, 1, 3);
  }
}

inline void StoreBlock(int32_t* c) {
  _tile_stored(4, c, 64);
  _tile_stored(5, c + 256, 64);
  _tile_stored(6, c + 512, 64);
  _tile_stored(7, c + 768, 64);
}

// acc += blocks [b, b + kCount) (kCount 1 or 2), whose tiles are at c[i * 1024]; kFirst: acc = ...
// (saves clearing acc).
template <QType Q, int kCount, bool kFirst>
inline void Fold(float* acc, const int32_t* c, int64_t b, const float* d_rows,
                 const float* m_rows, const float* dx, const float* sx) {
  constexpr int count = kCount;
  for (int rh = 0; rh < 2; ++rh) {
    __m512 dw[2], mw[2];
    for (int i = 0; i < count; ++i) {
      dw[i] = _mm512_loadu_ps(d_rows + (b + i) * kStep + rh * kTile);
      mw[i] = _mm512_loadu_ps(m_rows + (b + i) * kStep + rh * kTile);
    }
#pragma GCC unroll 4
    for (int t = 0; t < kStep; ++t) {
      const int th = t / kTile;
      float* a = acc + t * kStep + rh * kTile;
      __m512 v = kFirst ? _mm512_setzero_ps() : _mm512_load_ps(a);
      for (int i = 0; i < count; ++i) {
        const int32_t* tile = c + i * 1024 + (th * 2 + rh) * 256 + (t % kTile) * 16;
        const __m512 cv = _mm512_cvtepi32_ps(_mm512_load_si512(tile));
        v = _mm512_fmadd_ps(cv, _mm512_mul_ps(dw[i], _mm512_set1_ps(dx[(b + i) * kStep + t])), v);
        if constexpr (Q == QType::kQ4_1) {
          v = _mm512_fmadd_ps(mw[i], _mm512_set1_ps(sx[(b + i) * kStep + t]), v);
        }
      }
      _mm512_store_ps(a, v);
    }
  }
}

// 32 tokens x 32 rows over all blocks. dx / sx: this token step's scales, [nb][32].
template <QType Q>
void Step(const int8_t* a_base, size_t a_stride, Scratch& s, int64_t nb, const float* dx,
          const float* sx, int valid_tokens, int valid_rows, float* y, int64_t ldy) {
  // Locals, not member loads: the tile intrinsics clobber memory, which would force reloads.
  float* const acc = reinterpret_cast<float*>(
      (reinterpret_cast<uintptr_t>(s.acc.data()) + 63) & ~uintptr_t{63});
  int32_t* const c = reinterpret_cast<int32_t*>(
      (reinterpret_cast<uintptr_t>(s.c.data()) + 63) & ~uintptr_t{63});
  const uint8_t* const b_tiles = s.b.data();
  const float* const d_rows = s.d.data();
  const float* const m_rows = s.m.data();
  // Pipeline: block b's products run while blocks b - 2 and b - 1 (stored earlier, so their tile
  // stores have landed) are folded.
  IssueBlock<Q>(a_base, a_stride, b_tiles, 0);
  for (int64_t b = 0; b < nb; ++b) {
    StoreBlock(c + (b & 1) * 1024);
    if (b + 1 < nb) IssueBlock<Q>(a_base, a_stride, b_tiles, b + 1);
    if (b & 1) {
      // Blocks b - 1 and b are in c[0] and c[1]; fold them while b + 1 multiplies.
      if (b == 1) {
        Fold<Q, 2, true>(acc, c, b - 1, d_rows, m_rows, dx, sx);
      } else {
        Fold<Q, 2, false>(acc, c, b - 1, d_rows, m_rows, dx, sx);
      }
    }
  }
  if (nb == 1) {
    Fold<Q, 1, true>(acc, c, 0, d_rows, m_rows, dx, sx);
  } else if (nb & 1) {
    Fold<Q, 1, false>(acc, c, nb - 1, d_rows, m_rows, dx, sx);
  }
  const __mmask16 lo_mask = static_cast<__mmask16>(
      valid_rows >= kTile ? 0xffff : (1u << valid_rows) - 1);
  const __mmask16 hi_mask = static_cast<__mmask16>(
      valid_rows <= kTile ? 0 : (valid_rows >= kStep ? 0xffff : (1u << (valid_rows - kTile)) - 1));
  for (int t = 0; t < valid_tokens; ++t) {
    _mm512_mask_storeu_ps(y + t * ldy, lo_mask, _mm512_load_ps(acc + t * kStep));
    _mm512_mask_storeu_ps(y + t * ldy + kTile, hi_mask, _mm512_load_ps(acc + t * kStep + kTile));
  }
}

// Per-call token scales, transposed per 32-token step: dx at [step][nb][32], then s likewise
// (zero for the padding of a partial last step).
size_t ScalesBytes(const Acts& a, int64_t cols) {
  const int64_t steps = (a.n + kStep - 1) / kStep;
  return 2 * static_cast<size_t>(steps * a.q.nb * kStep) * sizeof(float);
}

void PackScales(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  const QuantizedActs& q = a.q;
  const int64_t nb = q.nb;
  const int64_t steps = (a.n + kStep - 1) / kStep;
  float* dx_all = static_cast<float*>(packed);
  float* sx_all = dx_all + steps * nb * kStep;
  for (int64_t t = t0; t < t1; ++t) {
    float* dxt = dx_all + (t / kStep) * nb * kStep + t % kStep;
    float* sxt = sx_all + (t / kStep) * nb * kStep + t % kStep;
    const float* d = q.d(t);
    const float* sum = q.s(t);
    for (int64_t b = 0; b < nb; ++b) {
      dxt[b * kStep] = d[b];
      sxt[b * kStep] = sum[b];
    }
  }
  // The call that packs the last token also zeroes the padding of its step.
  if (t1 == a.n && a.n % kStep != 0) {
    for (int64_t t = a.n; t < steps * kStep; ++t) {
      for (int64_t b = 0; b < nb; ++b) {
        dx_all[(t / kStep) * nb * kStep + b * kStep + t % kStep] = 0.0f;
        sx_all[(t / kStep) * nb * kStep + b * kStep + t % kStep] = 0.0f;
      }
    }
  }
}

template <QType Q>
void AmxQuantKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                    int64_t ldy) {
  static thread_local Scratch s;
  const QuantizedActs& q = a.q;
  const int64_t nb = q.nb;
  const int64_t steps = (a.n + kStep - 1) / kStep;
  s.b.resize(static_cast<size_t>(nb) * 1024 + 64);
  s.d.resize(static_cast<size_t>(nb) * kStep);
  s.m.resize(static_cast<size_t>(nb) * kStep);
  s.c.resize(2 * 1024 + 16);
  s.acc.resize(kStep * kStep + 16);
  s.a_pad.resize(static_cast<size_t>(kStep) * nb * 32);
  const float* dx_all = static_cast<const float*>(a.packed);
  const float* sx_all = dx_all + steps * nb * kStep;

  ConfigureTiles();
  for (int64_t r = r0; r < r1; r += kStep) {
    const int rows = static_cast<int>(std::min<int64_t>(kStep, r1 - r));
    UnpackWeights<Q>(w, r, rows, nb, s);
    for (int64_t t0 = 0; t0 < a.n; t0 += kStep) {
      const int tokens = static_cast<int>(std::min<int64_t>(kStep, a.n - t0));
      const float* dx = dx_all + (t0 / kStep) * nb * kStep;
      const float* sx = sx_all + (t0 / kStep) * nb * kStep;
      const int8_t* a_base = q.qs(t0);
      size_t a_stride = q.stride;
      if (tokens < kStep) {
        // Never read past the last token: copy the partial step, zero-padded.
        std::fill(s.a_pad.begin(), s.a_pad.end(), 0);
        for (int t = 0; t < tokens; ++t) {
          std::memcpy(s.a_pad.data() + t * nb * 32, q.qs(t0 + t), nb * 32);
        }
        a_base = s.a_pad.data();
        a_stride = static_cast<size_t>(nb) * 32;
      }
      Step<Q>(a_base, a_stride, s, nb, dx, sx, tokens, rows, y + t0 * ldy + r, ldy);
    }
  }
  _tile_release();
}

}  // namespace

Kernel AmxKernel(DType type) {
  switch (type) {
    case DType::kQ8_0: return Kernel{AmxQuantKernel<QType::kQ8_0>, ScalesBytes, PackScales};
    case DType::kQ4_0: return Kernel{AmxQuantKernel<QType::kQ4_0>, ScalesBytes, PackScales};
    case DType::kQ4_1: return Kernel{AmxQuantKernel<QType::kQ4_1>, ScalesBytes, PackScales};
    default: return Kernel{};
  }
}

}  // namespace saola::kernels::cpu::internal
