// Attention over the paged f16 KV cache: how a call is cut into work items and spread over
// threads. The per-item kernels (tiled online softmax) are in attention_kernel.h, with this
// file's scalar version for machines without AVX2 or head dims that are not a multiple of 8.
//
// Work items. A sequence's query rows against one kv head (row r = query r / group, head
// r % group of the kv head's GQA group, so one loaded K/V tile serves every head of the group)
// are cut into runs of rows:
//   - blocks of W rows (16 with AVX-512, 8 with AVX2) for the lanes kernel, one row per vector
//     lane, when a block has at least kLanesMinFill of W rows (prefill, and decode with large
//     GQA groups);
//   - otherwise (decode, block remainders) runs of up to kRowsPerItem rows for the rows kernel.
// When that gives too few items to keep the threads busy (decode: one query per sequence and few
// kv heads), the causal KV range of long items is also split (flash-decoding): every split
// writes its partial (max, sum, unnormalized output) per row, and the split that finishes last
// merges them, rescaling each by exp(m_split - m_total). Items are taken from an atomic counter,
// most expensive first, so causal prefill blocks of very different lengths balance.
//
// Knobs: kRowsPerItem (rows kernel: tile reuse vs. item count), kLanesMinFill (when a part-full
// lane block still beats the rows kernel), kMinSplitTokens (a split must amortize its merge),
// kItemsPerThread (how finely decode is split), kMinParallelCost (below it the caller does
// everything: a parallel region costs about a microsecond).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {
namespace {

using internal::AttentionKernelFn;
using internal::AttentionRows;
using internal::kAttentionTile;

constexpr int32_t kRowsPerItem = 32;
constexpr double kLanesMinFill = 0.625;  // 10 of 16 lanes, 5 of 8
constexpr int32_t kMinSplitTokens = 128;
constexpr int kItemsPerThread = 8;
constexpr int64_t kMinParallelCost = 1024;  // query rows x visible keys

struct Kernels {
  AttentionKernelFn rows = internal::AttentionRowsScalar;
  AttentionKernelFn lanes = nullptr;
  int32_t lane_width = 0;  // 0: no lanes kernel
};

Kernels PickKernels(int32_t head_dim) {
  const Isa isa = ActiveIsa();
  if (isa >= Isa::kAvx512 && head_dim % 16 == 0) {
    return {internal::AttentionRowsAvx512, internal::AttentionLanesAvx512,
            internal::kAttentionLanesAvx512};
  }
  if (isa >= Isa::kAvx2 && head_dim % 8 == 0) {
    return {internal::AttentionRowsAvx2, internal::AttentionLanesAvx2,
            internal::kAttentionLanesAvx2};
  }
  return {};
}

struct WorkItem {
  int32_t seq = 0;
  int32_t kv_head = 0;
  int32_t row_begin = 0;  // rows of the sequence against this kv head
  int32_t row_end = 0;
  int32_t kv_begin = 0;
  int32_t kv_end = 0;
  bool lanes = false;  // lanes kernel, else rows kernel
  int32_t merge = -1;  // index of its merge group when the KV range is split, else -1
  int32_t split = 0;   // index within the merge group
  int64_t cost = 0;
};

// The splits of one run of rows: their partials lie at partials[offset + split * SplitFloats].
struct MergeGroup {
  int32_t num_splits = 0;
  int64_t offset = 0;
};

// Per-call bookkeeping, kept by the calling thread so decode does not allocate.
struct CallState {
  std::vector<WorkItem> items;
  std::vector<MergeGroup> merges;
  std::vector<int32_t> pending;  // splits not finished yet, per merge group (atomic_ref)
  std::vector<float> partials;
};

thread_local CallState tls_call;
thread_local std::vector<float> tls_scratch;  // per thread: kernel outputs and tile buffers

// m[rows], l[rows], acc[rows][head_dim].
int64_t ResultFloats(int64_t rows, int64_t head_dim) { return rows * (head_dim + 2); }

class AttentionCall {
 public:
  AttentionCall(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                int32_t num_heads, float scale, float* out)
      : q_(q), kv_(kv), seqs_(seqs), num_heads_(num_heads), group_(num_heads / kv.num_kv_heads),
        scale_(scale), out_(out), kernels_(PickKernels(kv.head_dim)), state_(tls_call) {}

  void Run(ThreadPool& pool) {
    const int64_t total_cost = BuildItems();
    std::vector<WorkItem>& items = state_.items;
    const bool parallel = pool.size() > 1 && total_cost >= kMinParallelCost && !items.empty();
    if (parallel && items.size() < static_cast<size_t>(kItemsPerThread) * pool.size()) {
      SplitKv(pool.size());
    }
    if (!parallel || items.size() == 1) {
      for (const WorkItem& item : items) RunItem(item);
      return;
    }
    std::sort(items.begin(), items.end(),
              [](const WorkItem& a, const WorkItem& b) { return a.cost > b.cost; });
    std::atomic<size_t> next{0};
    pool.Run([&](int) {
      for (;;) {
        const size_t i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= items.size()) return;
        RunItem(items[i]);
      }
    });
  }

 private:
  int32_t FirstPos(const AttentionSeq& s) const { return s.context_len - s.num_q; }

  void AddItem(int32_t si, int32_t row_begin, int32_t row_end, bool lanes, int64_t* total) {
    const AttentionSeq& s = seqs_[si];
    WorkItem item;
    item.seq = si;
    item.row_begin = row_begin;
    item.row_end = row_end;
    item.kv_end = FirstPos(s) + (row_end - 1) / group_ + 1;
    item.lanes = lanes;
    // Visible keys over the rows, the rows kernel's work; a lanes block costs its full width.
    int64_t keys = 0;
    for (int32_t r = row_begin; r < row_end; ++r) keys += FirstPos(s) + r / group_ + 1;
    item.cost = lanes ? keys * kernels_.lane_width / (row_end - row_begin) : keys;
    for (int32_t h = 0; h < kv_.num_kv_heads; ++h) {
      item.kv_head = h;
      state_.items.push_back(item);
      *total += item.cost;
    }
  }

  // Items covering every row's whole causal range.
  int64_t BuildItems() {
    state_.items.clear();
    state_.merges.clear();
    const int32_t width = kernels_.lane_width;
    const int32_t min_lanes = static_cast<int32_t>(std::ceil(kLanesMinFill * width));
    int64_t total = 0;
    for (int32_t si = 0; si < static_cast<int32_t>(seqs_.size()); ++si) {
      const int32_t rows = seqs_[si].num_q * group_;
      int32_t r = 0;
      if (width > 0) {
        for (; r < rows && rows - r >= min_lanes; r += width) {
          AddItem(si, r, std::min(rows, r + width), /*lanes=*/true, &total);
        }
      }
      for (; r < rows; r += kRowsPerItem) {
        AddItem(si, r, std::min(rows, r + kRowsPerItem), /*lanes=*/false, &total);
      }
    }
    return total;
  }

  // Splits the KV range of long items so that there are about kItemsPerThread items per thread.
  void SplitKv(int threads) {
    std::vector<WorkItem>& items = state_.items;
    const size_t base = items.size();
    const int32_t want = static_cast<int32_t>(
        (static_cast<size_t>(kItemsPerThread) * threads + base - 1) / base);
    int64_t partial_floats = 0;
    for (size_t i = 0; i < base; ++i) {
      const WorkItem item = items[i];
      const int32_t extent = item.kv_end;
      const int32_t splits = std::min(want, extent / kMinSplitTokens);
      if (splits < 2) continue;
      const int32_t piece =
          ((extent + splits - 1) / splits + kAttentionTile - 1) / kAttentionTile * kAttentionTile;
      MergeGroup group;
      group.num_splits = (extent + piece - 1) / piece;
      group.offset = partial_floats;
      const int64_t rows = item.row_end - item.row_begin;
      partial_floats += group.num_splits * ResultFloats(rows, kv_.head_dim);
      const int32_t merge = static_cast<int32_t>(state_.merges.size());
      state_.merges.push_back(group);
      for (int32_t j = 0; j < group.num_splits; ++j) {
        WorkItem part = item;
        part.kv_begin = j * piece;
        part.kv_end = std::min(extent, (j + 1) * piece);
        part.merge = merge;
        part.split = j;
        part.cost = item.cost * (part.kv_end - part.kv_begin) / extent;
        if (j == 0) {
          items[i] = part;
        } else {
          items.push_back(part);
        }
      }
    }
    state_.partials.resize(static_cast<size_t>(partial_floats));
    state_.pending.resize(state_.merges.size());
    for (size_t g = 0; g < state_.merges.size(); ++g) {
      state_.pending[g] = state_.merges[g].num_splits;
    }
  }

  float* OutRow(const WorkItem& item, int32_t r) const {
    const AttentionSeq& s = seqs_[item.seq];
    const int64_t row = static_cast<int64_t>(s.q_begin + r / group_) * num_heads_ +
                        item.kv_head * group_ + r % group_;
    return out_ + row * kv_.head_dim;
  }

  void RunItem(const WorkItem& item) {
    const AttentionSeq& s = seqs_[item.seq];
    const int32_t hd = kv_.head_dim;
    const int64_t rows = item.row_end - item.row_begin;
    const int64_t kernel_floats = internal::AttentionScratchFloats(hd);
    const int64_t result_floats = item.merge < 0 ? ResultFloats(rows, hd) : 0;
    std::vector<float>& scratch = tls_scratch;
    if (scratch.size() < static_cast<size_t>(kernel_floats + result_floats)) {
      scratch.resize(static_cast<size_t>(kernel_floats + result_floats));
    }
    float* result = item.merge < 0
                        ? scratch.data() + kernel_floats
                        : state_.partials.data() + state_.merges[item.merge].offset +
                              item.split * ResultFloats(rows, hd);
    float* m = result;
    float* l = result + rows;
    float* acc = result + 2 * rows;

    AttentionRows a;
    a.q = q_ + (static_cast<int64_t>(s.q_begin) * num_heads_ + item.kv_head * group_) * hd;
    a.q_stride = static_cast<int64_t>(num_heads_) * hd;
    a.group = group_;
    a.row_begin = item.row_begin;
    a.row_end = item.row_end;
    a.first_pos = FirstPos(s);
    a.kv_begin = item.kv_begin;
    a.kv_end = item.kv_end;
    a.k = kv_.k + static_cast<int64_t>(item.kv_head) * hd;
    a.v = kv_.v + static_cast<int64_t>(item.kv_head) * hd;
    a.kv_stride = static_cast<int64_t>(kv_.num_kv_heads) * hd;
    a.block_table = s.block_table;
    a.block_size = kv_.block_size;
    a.head_dim = hd;
    a.scale = scale_;
    (item.lanes ? kernels_.lanes : kernels_.rows)(a, acc, m, l, scratch.data());

    if (item.merge < 0) {
      for (int64_t j = 0; j < rows; ++j) {
        const float inv = l[j] > 0.0f ? 1.0f / l[j] : 0.0f;
        float* o = OutRow(item, item.row_begin + static_cast<int32_t>(j));
        for (int32_t d = 0; d < hd; ++d) o[d] = acc[j * hd + d] * inv;
      }
      return;
    }
    std::atomic_ref<int32_t> pending(state_.pending[item.merge]);
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) Merge(item);
  }

  // Runs once all splits of `item`'s group have written their partials.
  void Merge(const WorkItem& item) {
    const MergeGroup& group = state_.merges[item.merge];
    const int32_t hd = kv_.head_dim;
    const int64_t rows = item.row_end - item.row_begin;
    const int64_t split_floats = ResultFloats(rows, hd);
    const float* base = state_.partials.data() + group.offset;
    for (int64_t j = 0; j < rows; ++j) {
      float m_total = -std::numeric_limits<float>::infinity();
      for (int32_t sp = 0; sp < group.num_splits; ++sp) {
        m_total = std::max(m_total, base[sp * split_floats + j]);
      }
      float l_total = 0.0f;
      for (int32_t sp = 0; sp < group.num_splits; ++sp) {
        const float* part = base + sp * split_floats;
        if (part[j] == -std::numeric_limits<float>::infinity()) continue;  // saw no key
        l_total += part[rows + j] * std::exp(part[j] - m_total);
      }
      const float inv = l_total > 0.0f ? 1.0f / l_total : 0.0f;
      float* o = OutRow(item, item.row_begin + static_cast<int32_t>(j));
      std::fill(o, o + hd, 0.0f);
      for (int32_t sp = 0; sp < group.num_splits; ++sp) {
        const float* part = base + sp * split_floats;
        if (part[j] == -std::numeric_limits<float>::infinity()) continue;
        const float w = std::exp(part[j] - m_total) * inv;
        const float* acc = part + 2 * rows + j * hd;
        for (int32_t d = 0; d < hd; ++d) o[d] += w * acc[d];
      }
    }
  }

  const float* q_;
  const KvLayer& kv_;
  std::span<const AttentionSeq> seqs_;
  int32_t num_heads_;
  int32_t group_;
  float scale_;
  float* out_;
  Kernels kernels_;
  CallState& state_;
};

}  // namespace

namespace internal {

void AttentionRowsScalar(const AttentionRows& a, float* acc, float* m, float* l,
                         float* scratch) {
  const int hd = a.head_dim;
  const int g = a.group;
  const int nrows = a.row_end - a.row_begin;
  for (int j = 0; j < nrows; ++j) {
    m[j] = -std::numeric_limits<float>::infinity();
    l[j] = 0.0f;
  }
  std::fill(acc, acc + static_cast<int64_t>(nrows) * hd, 0.0f);
  float* kf = scratch;
  float* vf = scratch + kAttentionTile * hd;
  const int32_t kv_end = std::min(a.kv_end, a.first_pos + (a.row_end - 1) / g + 1);
  for (int32_t t0 = a.kv_begin; t0 < kv_end;) {
    const int32_t off = t0 % a.block_size;
    const int nt = std::min({kAttentionTile, kv_end - t0, a.block_size - off});
    const int64_t slot0 =
        static_cast<int64_t>(a.block_table[t0 / a.block_size]) * a.block_size + off;
    for (int t = 0; t < nt; ++t) {
      for (int d = 0; d < hd; ++d) {
        kf[t * hd + d] = Fp16ToFp32(a.k[(slot0 + t) * a.kv_stride + d]);
        vf[t * hd + d] = Fp16ToFp32(a.v[(slot0 + t) * a.kv_stride + d]);
      }
    }
    for (int r = std::max(a.row_begin, std::max(0, t0 - a.first_pos) * g); r < a.row_end; ++r) {
      const int i = r / g;
      const int valid = std::min(nt, a.first_pos + i - t0 + 1);
      const float* q = a.q + i * a.q_stride + (r % g) * hd;
      const int j = r - a.row_begin;
      float s[kAttentionTile];
      float tile_max = -std::numeric_limits<float>::infinity();
      for (int t = 0; t < valid; ++t) {
        float dot = 0.0f;
        for (int d = 0; d < hd; ++d) dot += q[d] * kf[t * hd + d];
        s[t] = dot * a.scale;
        tile_max = std::max(tile_max, s[t]);
      }
      const float m_new = std::max(m[j], tile_max);
      const float corr = std::exp(m[j] - m_new);
      float* o = acc + static_cast<int64_t>(j) * hd;
      for (int d = 0; d < hd; ++d) o[d] *= corr;
      float sum = 0.0f;
      for (int t = 0; t < valid; ++t) {
        const float p = std::exp(s[t] - m_new);
        sum += p;
        for (int d = 0; d < hd; ++d) o[d] += p * vf[t * hd + d];
      }
      l[j] = l[j] * corr + sum;
      m[j] = m_new;
    }
    t0 += nt;
  }
}

}  // namespace internal

void Attention(ThreadPool& pool, const float* q, const KvLayer& kv,
               std::span<const AttentionSeq> seqs, int32_t num_heads, float scale, float* out) {
  AttentionCall(q, kv, seqs, num_heads, scale, out).Run(pool);
}

}  // namespace saola::kernels::cpu
