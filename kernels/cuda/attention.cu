// Paged grouped-query attention on CUDA: one kernel for decode splits and prefill chunks, and a
// merge kernel for flash-decoding (the work split is planned on the host: attention_plan.h).
//
// A thread block (4 warps) takes one work item, one KV head and up to kRowsPerBlock "rows" =
// (query, query head of this KV head's group) pairs, 4 rows per warp; K and V are therefore read
// from the cache once for all the query heads sharing them (GQA). The item's KV range is walked
// in tiles of 32 positions:
//   1. the block copies the tile's K and V (f16, through the block table) into shared memory;
//   2. per row, lane t scores position t of the tile (q·k from shared memory, q rounded to f16
//      as the CPU backend does), masked to -inf past the row's causal limit;
//   3. online softmax per row: m' = max(m, max_t s_t), acc = acc·e^(m - m') + Σ_t e^(s_t - m') v_t,
//      l = l·e^(m - m') + Σ_t e^(s_t - m'), with the probabilities broadcast by warp shuffles and
//      each lane holding head_dim / 32 output dimensions.
// A direct item writes acc / l; a decode split writes (acc, m, l) to its workspace slot, and the
// merge kernel combines a query's slots with the log-sum-exp rule.
// Knobs: kTile (positions per shared-memory tile), kDimsPerLane (head_dim / 32, a template
// parameter: 2, 4 or 8 for head_dim up to 64, 128, 256).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/launch.h"

namespace saola::kernels::cuda::internal {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = kRowsPerBlock / kWarps;
constexpr int kTile = 32;
static_assert(kRowsPerWarp * kWarps == kRowsPerBlock);

template <int kDimsPerLane>
__global__ void __launch_bounds__(kWarps * 32) AttentionKernel(AttentionArgs a) {
  constexpr int kMaxDim = kDimsPerLane * 32;
  // K rows padded by one half2 so that lane t reading row t hits a distinct bank.
  // vs is written as __half2, hence the alignment.
  __shared__ __half2 ks[kTile][kMaxDim / 2 + 1];
  __shared__ __align__(16) __half vs[kTile][kMaxDim];
  __shared__ __half2 qs[kRowsPerBlock][kMaxDim / 2];

  const AttentionItem item = a.items[blockIdx.x];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int num_kv_heads = a.kv.num_kv_heads;
  const int kv_head = blockIdx.y / a.head_chunks;
  const int group = a.num_heads / num_kv_heads;
  const int g_begin = (blockIdx.y % a.head_chunks) * a.heads_per_block;
  const int g_count = min(a.heads_per_block, group - g_begin);
  const int num_rows = item.num_q * g_count;
  const int hd = a.kv.head_dim;
  const int hd2 = hd / 2;
  const int bs = a.kv.block_size;

  // Row r is query r / g_count, head kv_head * group + g_begin + r % g_count.
  for (int idx = threadIdx.x; idx < num_rows * hd2; idx += blockDim.x) {
    const int r = idx / hd2;
    const int d2 = idx % hd2;
    const int64_t head = static_cast<int64_t>(kv_head) * group + g_begin + r % g_count;
    const float* qp =
        a.q + ((static_cast<int64_t>(item.q_row) + r / g_count) * a.num_heads + head) * hd;
    qs[r][d2] = __floats2half2_rn(qp[2 * d2], qp[2 * d2 + 1]);
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
  int limit[kRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int r = warp + kWarps * j;
    limit[j] = r < num_rows ? item.first_pos + r / g_count : -1;
    m[j] = -INFINITY;
    l[j] = 0.0f;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) acc[j][i] = 0.0f;
  }

  for (int tile_start = item.kv_begin; tile_start < item.kv_end; tile_start += kTile) {
    const int tile_len = min(kTile, item.kv_end - tile_start);
    __syncthreads();  // the previous tile is consumed (and qs is written, the first time)
    for (int idx = threadIdx.x; idx < tile_len * hd2; idx += blockDim.x) {
      const int t = idx / hd2;
      const int d2 = idx % hd2;
      const int p = tile_start + t;
      const int64_t slot =
          static_cast<int64_t>(a.tables[item.table_offset + p / bs]) * bs + p % bs;
      const int64_t off = (slot * num_kv_heads + kv_head) * hd + 2 * d2;
      ks[t][d2] = *reinterpret_cast<const __half2*>(a.kv.k + off);
      *reinterpret_cast<__half2*>(&vs[t][2 * d2]) = *reinterpret_cast<const __half2*>(a.kv.v + off);
    }
    __syncthreads();

#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const int r = warp + kWarps * j;
      if (r >= num_rows) continue;  // uniform across the warp
      float s = -INFINITY;
      if (lane < tile_len && tile_start + lane <= limit[j]) {
        float dot = 0.0f;
        for (int d2 = 0; d2 < hd2; ++d2) {
          const float2 qf = __half22float2(qs[r][d2]);
          const float2 kf = __half22float2(ks[lane][d2]);
          dot = fmaf(qf.x, kf.x, dot);
          dot = fmaf(qf.y, kf.y, dot);
        }
        s = dot * a.scale;
      }
      const float tile_max = WarpMax(s);
      if (tile_max == -INFINITY) continue;  // nothing visible to this row in this tile
      const float m_new = fmaxf(m[j], tile_max);
      const float correction = expf(m[j] - m_new);
      const float p = s == -INFINITY ? 0.0f : expf(s - m_new);
      l[j] = l[j] * correction + WarpSum(p);
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) acc[j][i] *= correction;
      for (int t = 0; t < tile_len; ++t) {
        const float pt = __shfl_sync(kFullMask, p, t);
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < hd) acc[j][i] = fmaf(pt, __half2float(vs[t][d]), acc[j][i]);
        }
      }
      m[j] = m_new;
    }
  }

#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int r = warp + kWarps * j;
    if (r >= num_rows) continue;
    const int64_t head = static_cast<int64_t>(kv_head) * group + g_begin + r % g_count;
    const int64_t q_row = static_cast<int64_t>(item.q_row) + r / g_count;
    if (item.partial < 0) {
      float* o = a.out + (q_row * a.num_heads + head) * hd;
      const float inv = l[j] > 0.0f ? 1.0f / l[j] : 0.0f;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) o[d] = acc[j][i] * inv;
      }
    } else {
      float* w = a.workspace + (static_cast<int64_t>(item.partial) * a.num_heads + head) * (hd + 2);
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) w[d] = acc[j][i];
      }
      if (lane == 0) {
        w[hd] = m[j];
        w[hd + 1] = l[j];
      }
    }
  }
}

// One block per (merge, head): out = Σ_s acc_s e^(m_s - M) / Σ_s l_s e^(m_s - M).
__global__ void MergeKernel(AttentionArgs a) {
  const AttentionMerge merge = a.merges[blockIdx.x];
  const int64_t head = blockIdx.y;
  const int hd = a.kv.head_dim;
  const int64_t stride = static_cast<int64_t>(a.num_heads) * (hd + 2);
  const float* first = a.workspace + merge.first_partial * stride + head * (hd + 2);
  float max_m = -INFINITY;
  for (int s = 0; s < merge.num_partials; ++s) {
    const float* w = first + s * stride;
    if (w[hd + 1] > 0.0f) max_m = fmaxf(max_m, w[hd]);
  }
  float* o = a.out + (static_cast<int64_t>(merge.q_row) * a.num_heads + head) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < merge.num_partials; ++s) {
      const float* w = first + s * stride;
      if (!(w[hd + 1] > 0.0f)) continue;
      const float weight = expf(w[hd] - max_m);
      num = fmaf(weight, w[d], num);
      den = fmaf(weight, w[hd + 1], den);
    }
    o[d] = den > 0.0f ? num / den : 0.0f;
  }
}

}  // namespace

void LaunchAttention(const AttentionArgs& args, Stream stream) {
  if (args.num_items <= 0) return;
  const dim3 grid(static_cast<unsigned>(args.num_items),
                  static_cast<unsigned>(args.kv.num_kv_heads * args.head_chunks));
  const int hd = args.kv.head_dim;
  if (hd <= 64) {
    AttentionKernel<2><<<grid, kWarps * 32, 0, stream>>>(args);
  } else if (hd <= 128) {
    AttentionKernel<4><<<grid, kWarps * 32, 0, stream>>>(args);
  } else {
    AttentionKernel<8><<<grid, kWarps * 32, 0, stream>>>(args);
  }
  if (args.num_merges > 0) {
    const dim3 merge_grid(static_cast<unsigned>(args.num_merges),
                          static_cast<unsigned>(args.num_heads));
    MergeKernel<<<merge_grid, 128, 0, stream>>>(args);
  }
}

}  // namespace saola::kernels::cuda::internal
