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
// The fold is rows::Fold, the same canonical order as the AVX-512 VNNI kernel, so both give
// bit-identical results (matmul_rows_avx512.h); it (3-4 vector ops per 16 x 32 multiply-adds) is
// the bound.
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
#include "kernels/cpu/matmul_rows_avx512.h"

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

using rows::QType;

// Per-thread buffers.
struct Scratch {
  std::vector<uint8_t> b;     // [nb][2][512]: VNNI weight tiles of the 32-row step
  std::vector<float> d;       // [nb][32] row scales
  std::vector<float> m;       // [nb][32] Q4_1 row offsets
  std::vector<int8_t> a_pad;  // [32][nb * 32] tokens of a partial token step
  std::vector<int32_t> c;     // [2 blocks][4 tiles][16][16] tile stores
  std::vector<float> acc;     // [32 tokens][32 rows]
};

// Unpacks rows [r0, r0 + count) (count <= 32) of w into s: per block, two VNNI tiles (rows 0-15,
// 16-31: B[k4][row][4] = elements 4 k4 .. 4 k4 + 3 of the row; signed for tdpbssd except Q4_1's
// nibbles for tdpbsud) and the row scales. Missing rows read row r0 and get zero scales.
template <QType Q>
void UnpackWeights(const Weight& w, int64_t r0, int count, int64_t nb, Scratch& s) {
  const uint8_t* rows[kStep];
  for (int r = 0; r < kStep; ++r) {
    rows[r] = static_cast<const uint8_t*>(w.data) +
              static_cast<size_t>(r0 + (r < count ? r : 0)) * w.row_stride_bytes;
  }
  rows::RowGather g[2];
  for (int half = 0; half < 2; ++half) {
    g[half] = rows::MakeRowGather(w.row_stride_bytes, std::clamp(count - half * kTile, 0, kTile));
  }
  for (int64_t b = 0; b < nb; ++b) {
    for (int half = 0; half < 2; ++half) {
      __m512i v[8];
      rows::UnpackBlock<Q, false>(rows + half * kTile, b, v);
      uint8_t* out = s.b.data() + (b * 2 + half) * 512;
      for (int k = 0; k < 8; ++k) _mm512_storeu_si512(out + k * 64, v[k]);
      __m512 dw, mw;
      rows::GatherScales<Q>(rows[half * kTile], b, g[half], &dw, &mw);
      _mm512_storeu_ps(s.d.data() + b * kStep + half * kTile, dw);
      _mm512_storeu_ps(s.m.data() + b * kStep + half * kTile, mw);
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
        v = rows::Fold<Q>(v, _mm512_load_si512(tile), dw[i], mw[i], dx[(b + i) * kStep + t],
                          sx[(b + i) * kStep + t]);
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
