// The tiled online-softmax attention kernels, written once over a SIMD traits type and compiled
// in attention_avx2.cc (8 floats) and attention_avx512.cc (16 floats). Include only from those.
//
// Both visit a work item's KV range (kernels/cpu/ops_internal.h) in tiles of up to
// kAttentionTile tokens inside one cache block, convert the tile's K and V rows from f16 to float
// once (F16C) into scratch so every query row of the item reuses them from L1, and keep per row
// the online-softmax state: running max m, sum l and unnormalized output; a new tile with maximum
// m' rescales the old state by exp(m - m') and adds p = exp(s - m').
//
// Rows kernel (decode: a few rows per item). Keys sit in vector lanes: for each row, W dot
// products q·k accumulate in W registers and one transpose-and-add tree (Reduce) turns them into
// a vector of W scores. Up to four rows are processed together so their independent chains
// overlap and P·V loads each V vector once for all of them.
//
// Lanes kernel (prefill: >= ~10 rows). Rows sit in vector lanes, like a small GEMM: Q is
// transposed once per item (and pre-scaled), the scores of one key for all rows are
// sum_d qT[d] * broadcast(k[d]), softmax is vertical (no horizontal max or sum), and the output
// is kept transposed, oT[d] += p_t * broadcast(v_t[d]); it is transposed back once at the end.
// That is 2 * head_dim / W FMAs per (row, key) and nothing else of note.
//
// Numerics: Q stays in float (llama.cpp's CPU flash-attention path rounds Q to f16 before its f16
// dot; we keep the extra precision), K and V are exactly the cached halves, all sums are float.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include <immintrin.h>

#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu::internal {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- Rows kernel -------------------------------------------------------------------------------

// Head-dim vectors per row held in registers in the P·V step: the most that fits beside the
// other rows' (S::kPvRegs in all), a power of two, at most 4.
template <class S, int R>
constexpr int PvBlock() {
  int blk = 4;
  while (blk > 1 && blk * R > S::kPvRegs) blk /= 2;
  return blk;
}

template <class S, int kHd, int R, int kBlk>
inline void PvRows(float* const* acc, int offset, const float* vf, int hd,
                   const float (*p)[kAttentionTile], int valid, const float* corr) {
  using V = typename S::V;
  if constexpr (kHd != 0) hd = kHd;
  constexpr int W = S::kWidth;
  V o[R][kBlk];
  for (int r = 0; r < R; ++r) {
    const V c = S::Set1(corr[r]);
    for (int j = 0; j < kBlk; ++j) o[r][j] = S::Mul(S::Load(acc[r] + offset + j * W), c);
  }
  for (int t = 0; t < valid; ++t) {
    const float* vt = vf + t * hd + offset;
    V pt[R];
    for (int r = 0; r < R; ++r) pt[r] = S::Set1(p[r][t]);
    for (int j = 0; j < kBlk; ++j) {
      const V vj = S::Load(vt + j * W);
      for (int r = 0; r < R; ++r) o[r][j] = S::Fma(pt[r], vj, o[r][j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < kBlk; ++j) S::Store(acc[r] + offset + j * W, o[r][j]);
  }
}

// R rows against one converted tile; row r sees its first valid[r] >= 1 keys.
template <class S, int kHd, int R>
inline void AttendRows(const float* const* q, const float* kf, const float* vf, int hd,
                       const int* valid, float scale, float* const* acc, float* m, float* l) {
  using V = typename S::V;
  if constexpr (kHd != 0) hd = kHd;
  constexpr int W = S::kWidth;
  constexpr int kGroups = kAttentionTile / W;
  const int num_vec = hd / W;
  alignas(64) float p[R][kAttentionTile];
  float corr[R];
  int max_valid = 0;
  for (int r = 0; r < R; ++r) {
    const int groups = (valid[r] + W - 1) / W;
    V s[kGroups];
    for (int gi = 0; gi < kGroups; ++gi) s[gi] = S::Set1(-kInf);
    for (int gi = 0; gi < groups; ++gi) {
      V dots[W];
      for (int t = 0; t < W; ++t) dots[t] = S::Zero();
      const float* kg = kf + gi * W * hd;
      for (int c = 0; c < num_vec; ++c) {
        const V qc = S::Load(q[r] + c * W);
        for (int t = 0; t < W; ++t) dots[t] = S::Fma(qc, S::Load(kg + t * hd + c * W), dots[t]);
      }
      s[gi] = S::MaskLanes(S::Mul(S::Reduce(dots), S::Set1(scale)), valid[r] - gi * W, -kInf);
    }
    V vmax = s[0];
    for (int gi = 1; gi < kGroups; ++gi) vmax = S::Max(vmax, s[gi]);
    const float m_new = std::max(m[r], S::HorizontalMax(vmax));
    // The vector exp, not std::exp: a libm call here would spill every live vector register.
    // exp(0) is exactly 1; the first tile (m = -inf) gives 2^-126 times a zero accumulator.
    corr[r] = S::First(S::Exp(S::Set1(m[r] - m_new)));
    const V mv = S::Set1(m_new);
    V psum = S::Zero();
    for (int gi = 0; gi < kGroups; ++gi) {
      const V e = gi < groups ? S::MaskLanes(S::Exp(S::Sub(s[gi], mv)), valid[r] - gi * W, 0.0f)
                              : S::Zero();
      S::Store(p[r] + gi * W, e);
      psum = S::Add(psum, e);
    }
    l[r] = l[r] * corr[r] + S::HorizontalSum(psum);
    m[r] = m_new;
    max_valid = std::max(max_valid, valid[r]);
  }
  constexpr int kBlk = PvBlock<S, R>();
  const int full = num_vec - num_vec % kBlk;
  for (int c = 0; c < full; c += kBlk) {
    PvRows<S, kHd, R, kBlk>(acc, c * W, vf, hd, p, max_valid, corr);
  }
  for (int c = full; c < num_vec; ++c) PvRows<S, kHd, R, 1>(acc, c * W, vf, hd, p, max_valid, corr);
}

// Asks for the K and V rows of the tile starting at t0 (if any) while the current one is
// computed: decode reads each cached byte once, so without this the conversion stalls on memory.
inline void PrefetchTile(const AttentionRows& a, int32_t t0, int32_t kv_end) {
  if (t0 >= kv_end) return;
  const int32_t off = t0 % a.block_size;
  const int nt = std::min({kAttentionTile, kv_end - t0, a.block_size - off});
  const int64_t slot0 = static_cast<int64_t>(a.block_table[t0 / a.block_size]) * a.block_size + off;
  const int64_t row_bytes = static_cast<int64_t>(a.head_dim) * sizeof(uint16_t);
  for (int t = 0; t < nt; ++t) {
    const char* kr = reinterpret_cast<const char*>(a.k + (slot0 + t) * a.kv_stride);
    const char* vr = reinterpret_cast<const char*>(a.v + (slot0 + t) * a.kv_stride);
    for (int64_t b = 0; b < row_bytes; b += 64) {
      _mm_prefetch(kr + b, _MM_HINT_T0);
      _mm_prefetch(vr + b, _MM_HINT_T0);
    }
  }
}

template <class S, int kHd>
void ConvertTile(const AttentionRows& a, int64_t slot0, int nt, float* kf, float* vf) {
  const int hd = kHd != 0 ? kHd : a.head_dim;
  for (int t = 0; t < nt; ++t) {
    S::ConvertHalves(a.k + (slot0 + t) * a.kv_stride, kf + t * hd, hd);
    S::ConvertHalves(a.v + (slot0 + t) * a.kv_stride, vf + t * hd, hd);
  }
}

// kHd: head_dim when known at compile time (64, 128: constant offsets, fewer live pointers), or 0.
template <class S, int kHd>
void RowsKernel(const AttentionRows& a, float* acc, float* m, float* l, float* scratch) {
  const int hd = kHd != 0 ? kHd : a.head_dim;
  const int g = a.group;
  const int nrows = a.row_end - a.row_begin;
  for (int j = 0; j < nrows; ++j) {
    m[j] = -kInf;
    l[j] = 0.0f;
  }
  std::fill(acc, acc + static_cast<int64_t>(nrows) * hd, 0.0f);

  float* kf = scratch;
  float* vf = kf + kAttentionTile * hd + kAttentionPad;
  const int32_t kv_end = std::min(a.kv_end, a.first_pos + (a.row_end - 1) / g + 1);
  for (int32_t t0 = a.kv_begin; t0 < kv_end;) {
    const int32_t off = t0 % a.block_size;
    const int nt = std::min({kAttentionTile, kv_end - t0, a.block_size - off});
    ConvertTile<S, kHd>(a, static_cast<int64_t>(a.block_table[t0 / a.block_size]) * a.block_size + off,
                   nt, kf, vf);
    PrefetchTile(a, t0 + nt, kv_end);
    // Rows of queries before t0 see nothing of this tile.
    const int first = std::max(a.row_begin, std::max(0, t0 - a.first_pos) * g);
    for (int r = first; r < a.row_end;) {
      const int batch = std::min(4, a.row_end - r);
      const float* q[4];
      float* accs[4];
      int valid[4];
      for (int b = 0; b < batch; ++b) {
        const int i = (r + b) / g;
        q[b] = a.q + i * a.q_stride + ((r + b) % g) * hd;
        accs[b] = acc + static_cast<int64_t>(r + b - a.row_begin) * hd;
        valid[b] = std::min(nt, a.first_pos + i - t0 + 1);
      }
      float* mr = m + (r - a.row_begin);
      float* lr = l + (r - a.row_begin);
      switch (batch) {
        case 1: AttendRows<S, kHd, 1>(q, kf, vf, hd, valid, a.scale, accs, mr, lr); break;
        case 2: AttendRows<S, kHd, 2>(q, kf, vf, hd, valid, a.scale, accs, mr, lr); break;
        case 3: AttendRows<S, kHd, 3>(q, kf, vf, hd, valid, a.scale, accs, mr, lr); break;
        default: AttendRows<S, kHd, 4>(q, kf, vf, hd, valid, a.scale, accs, mr, lr); break;
      }
      r += batch;
    }
    t0 += nt;
  }
}

// ---- Lanes kernel ------------------------------------------------------------------------------

template <class S, int kHd>
void LanesKernel(const AttentionRows& a, float* acc, float* m_out, float* l_out, float* scratch) {
  using V = typename S::V;
  using Mask = typename S::Mask;
  constexpr int W = S::kWidth;
  constexpr int T = kAttentionTile;
  constexpr int TT = S::kLaneTokens;  // keys per register pass
  const int hd = kHd != 0 ? kHd : a.head_dim;
  const int nrows = a.row_end - a.row_begin;  // 1..W

  static_assert(W <= kAttentionTile);  // qT and oT fit the scratch of two tiles
  float* kf = scratch;
  float* vf = kf + T * hd + kAttentionPad;
  float* qt = vf + T * hd + kAttentionPad;  // [hd][W], pre-scaled
  float* ot = qt + hd * W + kAttentionPad;  // [hd][W]
  alignas(64) int32_t pos[W];
  int32_t max_pos = -1;
  for (int j = 0; j < W; ++j) {
    if (j < nrows) {
      const int r = a.row_begin + j;
      const int i = r / a.group;
      pos[j] = a.first_pos + i;
      max_pos = std::max(max_pos, pos[j]);
      const float* qr = a.q + i * a.q_stride + (r % a.group) * hd;
      for (int d = 0; d < hd; ++d) qt[d * W + j] = qr[d] * a.scale;
    } else {
      pos[j] = -1;  // sees no key
      for (int d = 0; d < hd; ++d) qt[d * W + j] = 0.0f;
    }
  }
  std::fill(ot, ot + hd * W, 0.0f);
  const auto posv = S::LoadInt(pos);
  // -FLT_MAX rather than -inf, so a lane that has seen nothing yet rescales by exp(0), not NaN.
  V m = S::Set1(-FLT_MAX);
  V l = S::Zero();

  const int32_t kv_end = std::min(a.kv_end, max_pos + 1);
  for (int32_t t0 = a.kv_begin; t0 < kv_end;) {
    const int32_t off = t0 % a.block_size;
    const int nt = std::min({T, kv_end - t0, a.block_size - off});
    ConvertTile<S, kHd>(a, static_cast<int64_t>(a.block_table[t0 / a.block_size]) * a.block_size + off,
                   nt, kf, vf);
    PrefetchTile(a, t0 + nt, kv_end);
    // P·V runs over whole passes of TT keys: keys past nt must be finite (their p is 0).
    if (nt < T) std::fill(vf + nt * hd, vf + T * hd, 0.0f);

    V s[T];
    for (int t1 = 0; t1 < T; t1 += TT) {
      V dots[TT];
      for (int t = 0; t < TT; ++t) dots[t] = S::Zero();
      if (t1 < nt) {
        for (int d = 0; d < hd; ++d) {
          const V qd = S::Load(qt + d * W);
          for (int t = 0; t < TT; ++t) dots[t] = S::Fma(qd, S::Set1(kf[(t1 + t) * hd + d]), dots[t]);
        }
      }
      for (int t = 0; t < TT; ++t) s[t1 + t] = dots[t];
    }
    Mask keep[T];
    V tile_max = S::Set1(-kInf);
    for (int t = 0; t < T; ++t) {
      keep[t] = t < nt ? S::Visible(posv, t0 + t) : S::NoLanes();
      s[t] = S::Where(keep[t], s[t], -kInf);
      tile_max = S::Max(tile_max, s[t]);
    }
    const V m_new = S::Max(m, tile_max);
    const V corr = S::Exp(S::Sub(m, m_new));
    V psum = S::Zero();
    for (int t = 0; t < T; ++t) {
      s[t] = S::Where(keep[t], S::Exp(S::Sub(s[t], m_new)), 0.0f);  // s[t] now holds p_t
      psum = S::Add(psum, s[t]);
    }
    l = S::Add(S::Mul(l, corr), psum);
    m = m_new;

    for (int t1 = 0; t1 < T && t1 < nt; t1 += TT) {
      for (int d = 0; d < hd; ++d) {
        V o = S::Load(ot + d * W);
        if (t1 == 0) o = S::Mul(o, corr);
        for (int t = 0; t < TT; ++t) o = S::Fma(s[t1 + t], S::Set1(vf[(t1 + t) * hd + d]), o);
        S::Store(ot + d * W, o);
      }
    }
    t0 += nt;
  }

  alignas(64) float mv[W], lv[W];
  S::Store(mv, m);
  S::Store(lv, l);
  for (int j = 0; j < nrows; ++j) {
    m_out[j] = lv[j] > 0.0f ? mv[j] : -kInf;
    l_out[j] = lv[j];
    for (int d = 0; d < hd; ++d) acc[static_cast<int64_t>(j) * hd + d] = ot[d * W + j];
  }
}

// The entry points: head dims 64 and 128 get their own instantiations.
template <class S>
void RunRowsKernel(const AttentionRows& a, float* acc, float* m, float* l, float* scratch) {
  switch (a.head_dim) {
    case 64: return RowsKernel<S, 64>(a, acc, m, l, scratch);
    case 128: return RowsKernel<S, 128>(a, acc, m, l, scratch);
    default: return RowsKernel<S, 0>(a, acc, m, l, scratch);
  }
}

template <class S>
void RunLanesKernel(const AttentionRows& a, float* acc, float* m, float* l, float* scratch) {
  switch (a.head_dim) {
    case 64: return LanesKernel<S, 64>(a, acc, m, l, scratch);
    case 128: return LanesKernel<S, 128>(a, acc, m, l, scratch);
    default: return LanesKernel<S, 0>(a, acc, m, l, scratch);
  }
}

}  // namespace
}  // namespace saola::kernels::cpu::internal
