// AMX-INT8 GEMM for many tokens (prefill), for Q8_0, Q4_0 and Q4_1 weights.
//
// Tiles per 32-element block b (K = 32, so every int32 product belongs to one block and can get
// that block's two scales afterwards):
//   A = activations, 16 tokens x 32 int8, loaded straight from QuantizedActs (row stride = the
//       activation row stride), no packing;
//   B = weights, 16 rows in the VNNI layout B[k/4][row][4] (8 x 64 bytes), unpacked once per
//       16-row tile into a per-thread buffer and reused by every token tile: Q4_1 as nibbles
//       (u8, tdpbsud), Q4_0 as nibble - 8 and Q8_0 as is (s8, tdpbssd);
//   C = 16 tokens x 16 rows int32.
// After each block, C goes to memory and the vector units fold it into 16 float accumulators
// (one zmm per token, 16 rows wide): acc[t] += cvt(C[t]) * d_x[t] * d_w[rows], plus Q4_1's
// s[t] * m_w[rows]. Two C tiles alternate so the next block's tdp runs while the previous one is
// folded; the fold (3-4 vector ops per token per block) is the bound, ~10x fewer ops per
// multiply-add than the VNNI GEMM.
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

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

// tmm0/1: A (16 x 32 bytes), tmm2/3: B (8 x 64 bytes), tmm4/5: C (16 x 64 bytes).
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
  for (int i : {4, 5}) {
    cfg.rows[i] = kTile;
    cfg.colsb[i] = 64;
  }
  asm volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
}

enum class QType { kQ8_0, kQ4_0, kQ4_1 };

template <QType Q>
constexpr int kBlockBytes = Q == QType::kQ8_0 ? 34 : (Q == QType::kQ4_0 ? 18 : 20);

// Per-thread buffers for one 16-row tile.
struct WeightTile {
  std::vector<uint8_t> b;      // [nb][8][64] VNNI layout
  std::vector<float> d;        // [nb][16] row scales
  std::vector<float> m;        // [nb][16] Q4_1 row offsets
  std::vector<int8_t> a_pad;   // [16][cols] tokens of a partial token tile
  std::vector<int32_t> c;      // 2 x [16][16] tile stores
  std::vector<float> dx;       // [token tile][nb][16] token scales
  std::vector<float> sx;       // [token tile][nb][16] Q4_1 token sums s
};

// Unpacks rows [r0, r0 + count) (count <= 16; missing rows are zero) of w into tile.
template <QType Q>
void UnpackWeights(const Weight& w, int64_t r0, int count, int64_t nb, WeightTile& tile) {
  alignas(64) int8_t rowbuf[kTile][32];
  const __m512i gather_idx = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88,
                                               96, 104, 112, 120);
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < kTile; ++r) {
      float d = 0.0f, m = 0.0f;
      if (r < count) {
        const uint8_t* blk = static_cast<const uint8_t*>(w.data) +
                             static_cast<size_t>(r0 + r) * w.row_stride_bytes +
                             b * kBlockBytes<Q>;
        uint16_t h;
        std::memcpy(&h, blk, 2);
        d = _cvtsh_ss(h);
        if constexpr (Q == QType::kQ8_0) {
          std::memcpy(rowbuf[r], blk + 2, 32);
        } else {
          constexpr int kQsOffset = Q == QType::kQ4_0 ? 2 : 4;
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQsOffset));
          __m256i v = _mm256_and_si256(
              _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1),
              _mm256_set1_epi8(0x0F));
          if constexpr (Q == QType::kQ4_0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(8));
          _mm256_store_si256(reinterpret_cast<__m256i*>(rowbuf[r]), v);
          if constexpr (Q == QType::kQ4_1) {
            std::memcpy(&h, blk + 2, 2);
            m = _cvtsh_ss(h);
          }
        }
      } else {
        std::memset(rowbuf[r], 0, 32);
      }
      tile.d[b * kTile + r] = d;
      tile.m[b * kTile + r] = m;
    }
    // Transpose 16 rows x 8 dwords into 8 VNNI rows of 16 dwords.
    uint8_t* out = tile.b.data() + b * 512;
    for (int k4 = 0; k4 < 8; ++k4) {
      const __m512i v = _mm512_i32gather_epi32(
          _mm512_add_epi32(gather_idx, _mm512_set1_epi32(k4)), rowbuf, 4);
      _mm512_storeu_si512(out + k4 * 64, v);
    }
  }
}

template <QType Q>
inline void TileDot(int c, int a, int b) {
  // Tile register numbers must be immediates.
  if constexpr (Q == QType::kQ4_1) {
    if (c == 4) {
      if (a == 0) _tile_dpbsud(4, 0, 2); else _tile_dpbsud(4, 1, 3);
    } else {
      if (a == 0) _tile_dpbsud(5, 0, 2); else _tile_dpbsud(5, 1, 3);
    }
  } else {
    if (c == 4) {
      if (a == 0) _tile_dpbssd(4, 0, 2); else _tile_dpbssd(4, 1, 3);
    } else {
      if (a == 0) _tile_dpbssd(5, 0, 2); else _tile_dpbssd(5, 1, 3);
    }
  }
}

// Loads block b's A (from a_base, stride a_stride) and B into tile pair `slot`, zeroes C and
// issues the product.
template <QType Q>
inline void IssueBlock(int slot, const int8_t* a_base, size_t a_stride, const uint8_t* b_tile,
                       int64_t b) {
  if (slot == 0) {
    _tile_loadd(0, a_base + b * 32, a_stride);
    _tile_loadd(2, b_tile + b * 512, 64);
    _tile_zero(4);
    TileDot<Q>(4, 0, 2);
  } else {
    _tile_loadd(1, a_base + b * 32, a_stride);
    _tile_loadd(3, b_tile + b * 512, 64);
    _tile_zero(5);
    TileDot<Q>(5, 1, 3);
  }
}

// 16 tokens x 16 rows over all blocks. dx / sx: the tokens' activation scales (and Q4_1 s)
// transposed to [nb][16].
template <QType Q>
void TokenTile(const int8_t* a_base, size_t a_stride, const WeightTile& tile, int64_t nb,
               const float* dx, const float* sx, int valid_tokens, int valid_rows, float* y,
               int64_t ldy) {
  __m512 acc[kTile];
#pragma GCC unroll 16
  for (int t = 0; t < kTile; ++t) acc[t] = _mm512_setzero_ps();
  // Locals, not member loads: the tile intrinsics clobber memory, which would force reloads.
  int32_t* const cbuf = const_cast<int32_t*>(tile.c.data());
  const uint8_t* const b_tile = tile.b.data();
  const float* const d_tile = tile.d.data();
  const float* const m_tile = tile.m.data();
  // Folds block b's products (stored at c) into acc.
  auto fold = [&](int64_t b, const int32_t* c) __attribute__((always_inline)) {
    const __m512 dw = _mm512_loadu_ps(d_tile + b * kTile);
    const __m512 mw = _mm512_loadu_ps(m_tile + b * kTile);
    const float* dxb = dx + b * kTile;
    const float* sxb = sx + b * kTile;
#pragma GCC unroll 16
    for (int t = 0; t < kTile; ++t) {
      const __m512 cv = _mm512_cvtepi32_ps(_mm512_loadu_si512(c + t * 16));
      acc[t] = _mm512_fmadd_ps(cv, _mm512_mul_ps(dw, _mm512_set1_ps(dxb[t])), acc[t]);
      if constexpr (Q == QType::kQ4_1) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sxb[t]), acc[t]);
    }
  };
  // Pipeline: while block b + 1 multiplies, block b's tile goes to memory and block b - 1 (stored
  // one step earlier, so the tile store has landed) is folded.
  IssueBlock<Q>(0, a_base, a_stride, b_tile, 0);
  for (int64_t b = 0; b < nb; ++b) {
    const int slot = static_cast<int>(b & 1);
    if (b + 1 < nb) IssueBlock<Q>(slot ^ 1, a_base, a_stride, b_tile, b + 1);
    if (slot == 0) {
      _tile_stored(4, cbuf, 64);
    } else {
      _tile_stored(5, cbuf + 256, 64);
    }
    if (b > 0) fold(b - 1, cbuf + (slot ^ 1) * 256);
  }
  fold(nb - 1, cbuf + ((nb - 1) & 1) * 256);
  const __mmask16 row_mask = static_cast<__mmask16>((1u << valid_rows) - 1);
  // Constant trip count keeps acc[] in registers.
#pragma GCC unroll 16
  for (int t = 0; t < kTile; ++t) {
    if (t < valid_tokens) _mm512_mask_storeu_ps(y + t * ldy, row_mask, acc[t]);
  }
}

template <QType Q>
void AmxQuantKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                    int64_t ldy) {
  static thread_local WeightTile tile;
  const QuantizedActs& q = a.q;
  const int64_t nb = q.nb;
  tile.b.resize(static_cast<size_t>(nb) * 512 + 64);
  tile.d.resize(static_cast<size_t>(nb) * kTile);
  tile.m.resize(static_cast<size_t>(nb) * kTile);
  tile.c.resize(2 * 256 + 16);
  tile.a_pad.resize(static_cast<size_t>(kTile) * nb * 32);
  // Token scales, transposed per token tile to [tile][nb][16] (zero for padded tokens).
  const int64_t token_tiles = (a.n + kTile - 1) / kTile;
  tile.dx.assign(static_cast<size_t>(token_tiles * nb * kTile), 0.0f);
  tile.sx.assign(static_cast<size_t>(token_tiles * nb * kTile), 0.0f);
  for (int64_t t = 0; t < a.n; ++t) {
    float* dxt = tile.dx.data() + (t / kTile) * nb * kTile + t % kTile;
    float* sxt = tile.sx.data() + (t / kTile) * nb * kTile + t % kTile;
    const float* d = q.d(t);
    const float* s = q.s(t);
    for (int64_t b = 0; b < nb; ++b) {
      dxt[b * kTile] = d[b];
      sxt[b * kTile] = s[b];
    }
  }

  ConfigureTiles();
  for (int64_t r = r0; r < r1; r += kTile) {
    const int rows = static_cast<int>(std::min<int64_t>(kTile, r1 - r));
    UnpackWeights<Q>(w, r, rows, nb, tile);
    for (int64_t t0 = 0; t0 < a.n; t0 += kTile) {
      const int tokens = static_cast<int>(std::min<int64_t>(kTile, a.n - t0));
      const float* dx = tile.dx.data() + (t0 / kTile) * nb * kTile;
      const float* sx = tile.sx.data() + (t0 / kTile) * nb * kTile;
      const int8_t* a_base = q.qs(t0);
      size_t a_stride = q.stride;
      if (tokens < kTile) {
        // Never read past the last token: copy the partial tile, zero-padded.
        std::fill(tile.a_pad.begin(), tile.a_pad.end(), 0);
        for (int t = 0; t < tokens; ++t) {
          std::memcpy(tile.a_pad.data() + t * nb * 32, q.qs(t0 + t), nb * 32);
        }
        a_base = tile.a_pad.data();
        a_stride = static_cast<size_t>(nb) * 32;
      }
      TokenTile<Q>(a_base, a_stride, tile, nb, dx, sx, tokens, rows, y + t0 * ldy + r, ldy);
    }
  }
  _tile_release();
}

}  // namespace

MatMulKernel AmxKernel(DType type) {
  switch (type) {
    case DType::kQ8_0: return AmxQuantKernel<QType::kQ8_0>;
    case DType::kQ4_0: return AmxQuantKernel<QType::kQ4_0>;
    case DType::kQ4_1: return AmxQuantKernel<QType::kQ4_1>;
    default: return nullptr;
  }
}

}  // namespace saola::kernels::cpu::internal
