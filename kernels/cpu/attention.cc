// Attention over the paged f16 KV cache, bit-identical to llama.cpp's CPU backend without flash
// attention (kernels/cpu/attention_exact.h has the arithmetic and why).
//
// Work is cut into query rows (one query of one sequence, one head); each row is computed alone,
// start to finish, by one thread, in an order that depends only on the row itself (its keys, and
// whether its sequence has one query or several in the call). So results do not depend on the
// thread count, on the other sequences of the batch or on how rows are distributed: there is no
// split of the KV range (a split would change the summation order). Rows go to threads through
// an atomic counter, in order, in chunks of up to kRowsPerChunk.
//
// Knobs: kMinParallelCost (query rows x visible keys below which the caller does everything: a
// parallel region costs about a microsecond), kRowsPerChunk (most rows taken per counter
// increment).
#include <algorithm>
#include <atomic>
#include <vector>

#include "kernels/cpu/attention_exact.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu {
namespace {

constexpr int64_t kMinParallelCost = 4096;
constexpr int64_t kRowsPerChunk = 4;

using RowFn = void (*)(const internal::ExactAttentionRow&, float*);

RowFn PickRowFn() {
  const Isa isa = ActiveIsa();
  if (isa >= Isa::kAvx512) return internal::ExactAttentionAvx512;
  if (isa >= Isa::kAvx2) return internal::ExactAttentionAvx2;
  return internal::ExactAttentionScalar;
}

thread_local std::vector<float> tls_scratch;

}  // namespace

namespace internal {

void RunExactAttention(ThreadPool* pool, RowFn fn, const float* q, const KvLayer& kv,
                       std::span<const AttentionSeq> seqs, int32_t num_heads, float scale,
                       float* out) {
  const int32_t hd = kv.head_dim;
  const int32_t group = num_heads / kv.num_kv_heads;
  // Row index -> (sequence, query, head): rows are numbered sequence by sequence.
  int64_t total_rows = 0, cost = 0, max_keys = 0;
  for (const AttentionSeq& s : seqs) {
    total_rows += static_cast<int64_t>(s.num_q) * num_heads;
    cost += static_cast<int64_t>(s.num_q) * num_heads * s.context_len;
    max_keys = std::max<int64_t>(max_keys, s.context_len);
  }
  if (total_rows == 0) return;
  const int64_t scratch_floats = ExactAttentionScratch(max_keys, hd);

  auto run_rows = [&](int64_t r0, int64_t r1, float* scratch) {
    int64_t base = 0;
    size_t si = 0;
    for (int64_t r = r0; r < r1; ++r) {
      while (r >= base + static_cast<int64_t>(seqs[si].num_q) * num_heads) {
        base += static_cast<int64_t>(seqs[si].num_q) * num_heads;
        ++si;
      }
      const AttentionSeq& s = seqs[si];
      const int32_t i = static_cast<int32_t>((r - base) / num_heads);
      const int32_t h = static_cast<int32_t>((r - base) % num_heads);
      const int64_t row = static_cast<int64_t>(s.q_begin + i) * num_heads + h;
      ExactAttentionRow a;
      a.q = q + row * hd;
      a.out = out + row * hd;
      a.k = kv.k + static_cast<int64_t>(h / group) * hd;
      a.v = kv.v + static_cast<int64_t>(h / group) * hd;
      a.kv_stride = static_cast<int64_t>(kv.num_kv_heads) * hd;
      a.block_table = s.block_table;
      a.block_size = kv.block_size;
      a.head_dim = hd;
      a.num_keys = s.context_len - s.num_q + i + 1;
      a.scale = scale;
      a.batched = s.num_q >= 2;
      fn(a, scratch);
    }
  };

  if (pool == nullptr || pool->size() == 1 || cost < kMinParallelCost) {
    if (tls_scratch.size() < static_cast<size_t>(scratch_floats)) tls_scratch.resize(scratch_floats);
    run_rows(0, total_rows, tls_scratch.data());
    return;
  }
  // Decode has few rows (one per head): hand them out one at a time.
  const int64_t chunk = std::clamp<int64_t>(total_rows / (8 * pool->size()), 1, kRowsPerChunk);
  std::atomic<int64_t> next{0};
  pool->Run([&](int) {
    if (tls_scratch.size() < static_cast<size_t>(scratch_floats)) tls_scratch.resize(scratch_floats);
    for (;;) {
      const int64_t r0 = next.fetch_add(chunk, std::memory_order_relaxed);
      if (r0 >= total_rows) return;
      run_rows(r0, std::min(total_rows, r0 + chunk), tls_scratch.data());
    }
  });
}

}  // namespace internal

void Attention(ThreadPool& pool, const float* q, const KvLayer& kv,
               std::span<const AttentionSeq> seqs, int32_t num_heads, float scale, float* out) {
  internal::RunExactAttention(&pool, PickRowFn(), q, kv, seqs, num_heads, scale, out);
}

}  // namespace saola::kernels::cpu
