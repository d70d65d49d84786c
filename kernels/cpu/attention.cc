// Attention over the paged f16 KV cache: how a call is cut into work items and spread over
// threads. The per-item kernel (tiled online softmax) is in attention_kernel.h, with this file's
// scalar version for machines without AVX2 or head dims that are not a multiple of 8.
//
// Work items. Each sequence's queries are cut into chunks of about kRowsPerItem query rows
// (queries x the query heads that share one kv head), and each chunk is paired with one kv head,
// so a loaded K/V tile serves every query head of the GQA group and a run of queries (prefill).
// When that gives too few items to keep the threads busy (decode: one query per sequence and only
// a few kv heads), the causal KV range of each chunk is also split (flash-decoding): every split
// writes its partial (max, sum, unnormalized output) per row, and the split that finishes last
// merges them, rescaling each by exp(m_split - m_total). Items are taken from an atomic counter,
// most expensive first, so causal prefill chunks of very different lengths balance.
//
// Knobs: kRowsPerItem* (tile reuse vs. L1 footprint and item count), kMinSplitTokens (a split
// must amortize its merge), kItemsPerThread (how finely decode is split), kMinParallelCost (below
// it the caller does everything: a parallel region costs about a microsecond).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu {
namespace {

using internal::AttentionKernelFn;
using internal::AttentionRows;
using internal::kAttentionTile;

constexpr int kRowsPerItemSmallHead = 32;  // head_dim <= 64
constexpr int kRowsPerItemLargeHead = 16;
constexpr int32_t kMinSplitTokens = 128;
constexpr int kItemsPerThread = 8;
constexpr int64_t kMinParallelCost = 1024;  // query rows x visible keys

struct WorkItem {
  int32_t seq = 0;
  int32_t kv_head = 0;
  int32_t q_first = 0;  // first query of the chunk, relative to the sequence
  int32_t q_count = 0;
  int32_t kv_begin = 0;
  int32_t kv_end = 0;
  int32_t merge = -1;  // index of its merge group when the KV range is split, else -1
  int32_t split = 0;   // index within the merge group
  int64_t cost = 0;
};

// The splits of one chunk: their partials lie at partials[offset + split * SplitFloats(rows)].
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

int64_t SplitFloats(int64_t rows, int64_t head_dim) { return rows * (head_dim + 2); }

AttentionKernelFn PickKernel(int32_t head_dim) {
  const Isa isa = ActiveIsa();
  if (isa >= Isa::kAvx512 && head_dim % 16 == 0) return internal::AttentionKernelAvx512;
  if (isa >= Isa::kAvx2 && head_dim % 8 == 0) return internal::AttentionKernelAvx2;
  return internal::AttentionKernelScalar;
}

// Rows x visible keys of queries [q_first, q_first + q_count) of a sequence.
int64_t ChunkCost(const AttentionSeq& s, int32_t q_first, int32_t q_count, int32_t group) {
  const int64_t first_visible = s.context_len - s.num_q + q_first + 1;
  return group * (q_count * first_visible + static_cast<int64_t>(q_count) * (q_count - 1) / 2);
}

class AttentionCall {
 public:
  AttentionCall(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                int32_t num_heads, float scale, float* out)
      : q_(q), kv_(kv), seqs_(seqs), num_heads_(num_heads), group_(num_heads / kv.num_kv_heads),
        scale_(scale), out_(out), kernel_(PickKernel(kv.head_dim)), state_(tls_call) {}

  void Run(ThreadPool& pool) {
    const int64_t total_cost = BuildItems();
    std::vector<WorkItem>& items = state_.items;
    const bool parallel = pool.size() > 1 && total_cost >= kMinParallelCost && items.size() > 0;
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
  // One item per (sequence, query chunk, kv head) covering the chunk's whole causal range.
  int64_t BuildItems() {
    state_.items.clear();
    state_.merges.clear();
    const int rows_per_item =
        kv_.head_dim <= 64 ? kRowsPerItemSmallHead : kRowsPerItemLargeHead;
    const int32_t chunk = std::max(1, rows_per_item / group_);
    int64_t total = 0;
    for (int32_t si = 0; si < static_cast<int32_t>(seqs_.size()); ++si) {
      const AttentionSeq& s = seqs_[si];
      for (int32_t qf = 0; qf < s.num_q; qf += chunk) {
        const int32_t count = std::min(chunk, s.num_q - qf);
        const int64_t cost = ChunkCost(s, qf, count, group_);
        for (int32_t h = 0; h < kv_.num_kv_heads; ++h) {
          WorkItem item;
          item.seq = si;
          item.kv_head = h;
          item.q_first = qf;
          item.q_count = count;
          item.kv_begin = 0;
          item.kv_end = s.context_len - s.num_q + qf + count;
          item.cost = cost;
          state_.items.push_back(item);
          total += cost;
        }
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
      const int64_t rows = static_cast<int64_t>(item.q_count) * group_;
      partial_floats += group.num_splits * SplitFloats(rows, kv_.head_dim);
      const int32_t merge = static_cast<int32_t>(state_.merges.size());
      state_.merges.push_back(group);
      for (int32_t j = 0; j < group.num_splits; ++j) {
        WorkItem part = item;
        part.kv_begin = j * piece;
        part.kv_end = std::min(extent, (j + 1) * piece);
        part.merge = merge;
        part.split = j;
        part.cost = rows * (part.kv_end - part.kv_begin);
        if (j == 0) {
          items[i] = part;
        } else {
          items.push_back(part);
        }
      }
    }
    state_.partials.resize(static_cast<size_t>(partial_floats));
    state_.pending.resize(state_.merges.size());
    for (size_t g = 0; g < state_.merges.size(); ++g) state_.pending[g] = state_.merges[g].num_splits;
  }

  float* OutRow(const WorkItem& item, int32_t i, int32_t g) const {
    const AttentionSeq& s = seqs_[item.seq];
    const int64_t row =
        static_cast<int64_t>(s.q_begin + item.q_first + i) * num_heads_ + item.kv_head * group_ + g;
    return out_ + row * kv_.head_dim;
  }

  void RunItem(const WorkItem& item) {
    const AttentionSeq& s = seqs_[item.seq];
    const int32_t hd = kv_.head_dim;
    const int64_t rows = static_cast<int64_t>(item.q_count) * group_;
    const int64_t tile_floats = 2 * static_cast<int64_t>(kAttentionTile) * hd;
    const int64_t result_floats = item.merge < 0 ? SplitFloats(rows, hd) : 0;
    std::vector<float>& scratch = tls_scratch;
    if (scratch.size() < static_cast<size_t>(tile_floats + result_floats)) {
      scratch.resize(static_cast<size_t>(tile_floats + result_floats));
    }
    // Results layout: m[rows], l[rows], acc[rows][hd].
    float* result = item.merge < 0
                        ? scratch.data() + tile_floats
                        : state_.partials.data() + state_.merges[item.merge].offset +
                              item.split * SplitFloats(rows, hd);
    float* m = result;
    float* l = result + rows;
    float* acc = result + 2 * rows;

    AttentionRows a;
    a.q = q_ + (static_cast<int64_t>(s.q_begin + item.q_first) * num_heads_ +
                item.kv_head * group_) * hd;
    a.q_stride = static_cast<int64_t>(num_heads_) * hd;
    a.num_queries = item.q_count;
    a.group = group_;
    a.first_pos = s.context_len - s.num_q + item.q_first;
    a.kv_begin = item.kv_begin;
    a.kv_end = item.kv_end;
    a.k = kv_.k + static_cast<int64_t>(item.kv_head) * hd;
    a.v = kv_.v + static_cast<int64_t>(item.kv_head) * hd;
    a.kv_stride = static_cast<int64_t>(kv_.num_kv_heads) * hd;
    a.block_table = s.block_table;
    a.block_size = kv_.block_size;
    a.head_dim = hd;
    a.scale = scale_;
    kernel_(a, acc, m, l, scratch.data());

    if (item.merge < 0) {
      for (int32_t i = 0; i < item.q_count; ++i) {
        for (int32_t g = 0; g < group_; ++g) {
          const int64_t r = static_cast<int64_t>(i) * group_ + g;
          const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
          float* o = OutRow(item, i, g);
          for (int32_t d = 0; d < hd; ++d) o[d] = acc[r * hd + d] * inv;
        }
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
    const int64_t rows = static_cast<int64_t>(item.q_count) * group_;
    const int64_t split_floats = SplitFloats(rows, hd);
    const float* base = state_.partials.data() + group.offset;
    for (int32_t i = 0; i < item.q_count; ++i) {
      for (int32_t g = 0; g < group_; ++g) {
        const int64_t r = static_cast<int64_t>(i) * group_ + g;
        float m_total = -std::numeric_limits<float>::infinity();
        for (int32_t j = 0; j < group.num_splits; ++j) {
          m_total = std::max(m_total, base[j * split_floats + r]);
        }
        float l_total = 0.0f;
        for (int32_t j = 0; j < group.num_splits; ++j) {
          const float* part = base + j * split_floats;
          l_total += part[rows + r] * std::exp(part[r] - m_total);
        }
        const float inv = l_total > 0.0f ? 1.0f / l_total : 0.0f;
        float* o = OutRow(item, i, g);
        std::fill(o, o + hd, 0.0f);
        for (int32_t j = 0; j < group.num_splits; ++j) {
          const float* part = base + j * split_floats;
          if (part[r] == -std::numeric_limits<float>::infinity()) continue;  // saw no key
          const float w = std::exp(part[r] - m_total) * inv;
          const float* acc = part + 2 * rows + r * hd;
          for (int32_t d = 0; d < hd; ++d) o[d] += w * acc[d];
        }
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
  AttentionKernelFn kernel_;
  CallState& state_;
};

}  // namespace

namespace internal {

void AttentionKernelScalar(const AttentionRows& a, float* acc, float* m, float* l,
                           float* scratch) {
  const int hd = a.head_dim;
  const int rows = a.num_queries * a.group;
  for (int r = 0; r < rows; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
  }
  std::fill(acc, acc + static_cast<int64_t>(rows) * hd, 0.0f);
  float* kf = scratch;
  float* vf = scratch + kAttentionTile * hd;
  const int32_t kv_end = std::min(a.kv_end, a.first_pos + a.num_queries);
  for (int32_t t0 = a.kv_begin; t0 < kv_end;) {
    const int32_t off = t0 % a.block_size;
    const int nt = std::min({kAttentionTile, kv_end - t0, a.block_size - off});
    const int64_t slot0 =
        static_cast<int64_t>(a.block_table[t0 / a.block_size]) * a.block_size + off;
    for (int t = 0; t < nt; ++t) {
      for (int d = 0; d < hd; ++d) {
        kf[t * hd + d] = F16ToF32(a.k[(slot0 + t) * a.kv_stride + d]);
        vf[t * hd + d] = F16ToF32(a.v[(slot0 + t) * a.kv_stride + d]);
      }
    }
    for (int i = std::max(0, t0 - a.first_pos); i < a.num_queries; ++i) {
      const int valid = std::min(nt, a.first_pos + i - t0 + 1);
      for (int g = 0; g < a.group; ++g) {
        const int r = i * a.group + g;
        const float* q = a.q + i * a.q_stride + g * hd;
        float s[kAttentionTile];
        float tile_max = -std::numeric_limits<float>::infinity();
        for (int t = 0; t < valid; ++t) {
          float dot = 0.0f;
          for (int d = 0; d < hd; ++d) dot += q[d] * kf[t * hd + d];
          s[t] = dot * a.scale;
          tile_max = std::max(tile_max, s[t]);
        }
        const float m_new = std::max(m[r], tile_max);
        const float corr = std::exp(m[r] - m_new);
        float* o = acc + static_cast<int64_t>(r) * hd;
        for (int d = 0; d < hd; ++d) o[d] *= corr;
        float sum = 0.0f;
        for (int t = 0; t < valid; ++t) {
          const float p = std::exp(s[t] - m_new);
          sum += p;
          for (int d = 0; d < hd; ++d) o[d] += p * vf[t * hd + d];
        }
        l[r] = l[r] * corr + sum;
        m[r] = m_new;
      }
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
