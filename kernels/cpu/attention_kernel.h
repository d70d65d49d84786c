// The tiled online-softmax attention kernel, written once over a SIMD traits type and compiled
// in attention_avx2.cc (8 floats) and attention_avx512.cc (16 floats). Include only from those.
//
// For one work item (kernels/cpu/ops_internal.h: some queries of one sequence, all query heads of
// one kv head), KV is visited in tiles of up to kAttentionTile tokens inside one cache block:
//
//   1. the tile's K and V rows are converted from f16 to float once (F16C) into scratch, so
//      every query row of the item reuses them from L1;
//   2. per query row: W keys at a time, W dot products q·k over head_dim accumulate in W vector
//      registers and one transpose-and-add tree (Reduce) turns them into a vector of W scores;
//      scaled, causally masked (-inf past the row's position);
//   3. online softmax: m' = max(m, tile max), the old accumulator and sum are rescaled by
//      exp(m - m'), p = exp(s - m'), l = l * exp(m - m') + sum p;
//   4. acc += sum_t p_t v_t, head_dim in blocks of 4 vectors held in registers across the tile.
//
// Q stays in float (llama.cpp's CPU flash-attention path rounds Q to f16 before its f16 dot; we
// keep the extra precision), K and V are exactly the cached halves, and all sums are float.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu::internal {
namespace {

// Head-dim vectors accumulated in registers at once in the P·V step.
constexpr int kPvBlock = 4;

template <class S, int kBlock>
inline void PvBlock(float* acc, const float* vf, int64_t head_dim, const float* p, int valid,
                    float corr) {
  using V = typename S::V;
  constexpr int W = S::kWidth;
  V o[kBlock];
  const V c = S::Set1(corr);
  for (int j = 0; j < kBlock; ++j) o[j] = S::Mul(S::Load(acc + j * W), c);
  for (int t = 0; t < valid; ++t) {
    const V pt = S::Set1(p[t]);
    const float* vt = vf + t * head_dim;
    for (int j = 0; j < kBlock; ++j) o[j] = S::Fma(pt, S::Load(vt + j * W), o[j]);
  }
  for (int j = 0; j < kBlock; ++j) S::Store(acc + j * W, o[j]);
}

// One query row against one converted tile of `valid` visible keys (valid >= 1).
template <class S>
inline void AttendTile(const float* q, const float* kf, const float* vf, int head_dim,
                       int valid, float scale, float* acc, float& m, float& l) {
  using V = typename S::V;
  constexpr int W = S::kWidth;
  constexpr int kGroups = kAttentionTile / W;
  const int num_vec = head_dim / W;
  const int groups = (valid + W - 1) / W;

  V s[kGroups];
  for (int gi = 0; gi < kGroups; ++gi) s[gi] = S::Zero();
  for (int gi = 0; gi < groups; ++gi) {
    V dots[W];
    for (int t = 0; t < W; ++t) dots[t] = S::Zero();
    const float* kg = kf + static_cast<int64_t>(gi) * W * head_dim;
    for (int c = 0; c < num_vec; ++c) {
      const V qc = S::Load(q + c * W);
      for (int t = 0; t < W; ++t) dots[t] = S::Fma(qc, S::Load(kg + t * head_dim + c * W), dots[t]);
    }
    s[gi] = S::MaskLanes(S::Mul(S::Reduce(dots), S::Set1(scale)), valid - gi * W,
                         -std::numeric_limits<float>::infinity());
  }
  V vmax = s[0];
  for (int gi = 1; gi < groups; ++gi) vmax = S::Max(vmax, s[gi]);
  const float m_new = std::max(m, S::HorizontalMax(vmax));
  const float corr = std::exp(m - m_new);  // 0 on the first tile (m = -inf)
  const V mv = S::Set1(m_new);

  alignas(64) float p[kAttentionTile];
  V psum = S::Zero();
  for (int gi = 0; gi < groups; ++gi) {
    const V e = S::MaskLanes(S::Exp(S::Sub(s[gi], mv)), valid - gi * W, 0.0f);
    S::Store(p + gi * W, e);
    psum = S::Add(psum, e);
  }
  l = l * corr + S::HorizontalSum(psum);
  m = m_new;

  int c = 0;
  for (; c + kPvBlock <= num_vec; c += kPvBlock) {
    PvBlock<S, kPvBlock>(acc + c * W, vf + c * W, head_dim, p, valid, corr);
  }
  for (; c < num_vec; ++c) PvBlock<S, 1>(acc + c * W, vf + c * W, head_dim, p, valid, corr);
}

template <class S>
void AttentionKernel(const AttentionRows& a, float* acc, float* m, float* l, float* scratch) {
  const int hd = a.head_dim;
  const int rows = a.num_queries * a.group;
  for (int r = 0; r < rows; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
  }
  std::fill(acc, acc + static_cast<int64_t>(rows) * hd, 0.0f);

  float* kf = scratch;
  float* vf = scratch + kAttentionTile * hd;
  const int32_t last_pos = a.first_pos + a.num_queries - 1;
  const int32_t kv_end = std::min(a.kv_end, last_pos + 1);
  for (int32_t t0 = a.kv_begin; t0 < kv_end;) {
    const int32_t off = t0 % a.block_size;
    const int nt = std::min({kAttentionTile, kv_end - t0, a.block_size - off});
    const int64_t slot0 =
        static_cast<int64_t>(a.block_table[t0 / a.block_size]) * a.block_size + off;
    for (int t = 0; t < nt; ++t) {
      S::ConvertHalves(a.k + (slot0 + t) * a.kv_stride, kf + t * hd, hd);
      S::ConvertHalves(a.v + (slot0 + t) * a.kv_stride, vf + t * hd, hd);
    }
    // The first query that sees this tile at all; earlier ones sit before t0.
    for (int i = std::max(0, t0 - a.first_pos); i < a.num_queries; ++i) {
      const int valid = std::min(nt, a.first_pos + i - t0 + 1);
      for (int g = 0; g < a.group; ++g) {
        const int r = i * a.group + g;
        AttendTile<S>(a.q + i * a.q_stride + g * hd, kf, vf, hd, valid, a.scale,
                      acc + static_cast<int64_t>(r) * hd, m[r], l[r]);
      }
    }
    t0 += nt;
  }
}

}  // namespace
}  // namespace saola::kernels::cpu::internal
