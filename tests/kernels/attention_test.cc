// Attention (kernels/cpu/ops.h) against AttentionReference, llama.cpp's exact arithmetic
// (kernels/cpu/attention_exact.h): every path must give the same bits, for several sequences of
// different lengths in one call, chunked prefill (queries at the end of a longer context),
// lengths that are not multiples of the block size, shuffled block tables, GQA ratios 1, 3 and
// 4, several head dims and 1-3 threads. The reference itself is checked against a naive
// double-precision softmax attention (it rounds Q and the probabilities to f16, as llama.cpp
// does, so only to about 1e-3), and a query's result must not depend on the rest of the batch.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/thread_pool.h"

namespace saola::kernels::cpu {
namespace {

struct SeqSpec {
  int32_t context_len;
  int32_t num_q;
};

// A paged cache holding random K/V for some sequences, their block tables (shuffled, so blocks
// are neither contiguous nor in order), and queries. Slots no sequence owns hold NaN, so reading
// past a sequence's context poisons the result.
class Fixture {
 public:
  Fixture(const std::vector<SeqSpec>& specs, int32_t num_heads, int32_t num_kv_heads,
          int32_t head_dim, int32_t block_size, uint32_t seed, float q_range = 1.0f)
      : num_heads_(num_heads) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    int32_t blocks = 0;
    for (const SeqSpec& s : specs) blocks += (s.context_len + block_size - 1) / block_size;
    const int32_t num_blocks = blocks + 3;  // a few nobody owns
    std::vector<int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);

    const int64_t row = static_cast<int64_t>(num_kv_heads) * head_dim;
    const size_t elems = static_cast<size_t>(num_blocks) * block_size * row;
    k_.assign(elems, 0x7e00);  // NaN
    v_.assign(elems, 0x7e00);
    kv_ = KvLayer{k_.data(), v_.data(), num_blocks, block_size, num_kv_heads, head_dim};

    tables_.resize(specs.size());
    int32_t next_block = 0;
    int32_t total_q = 0;
    for (const SeqSpec& s : specs) total_q += s.num_q;
    // Query rows in reverse sequence order, so q_begin does not follow the seqs array.
    int32_t q_end = total_q;
    for (size_t i = 0; i < specs.size(); ++i) {
      const SeqSpec& s = specs[i];
      const int32_t nb = (s.context_len + block_size - 1) / block_size;
      tables_[i].assign(ids.begin() + next_block, ids.begin() + next_block + nb);
      next_block += nb;
      for (int32_t p = 0; p < s.context_len; ++p) {
        const int64_t slot = static_cast<int64_t>(tables_[i][p / block_size]) * block_size +
                             p % block_size;
        for (int64_t e = 0; e < row; ++e) {
          k_[slot * row + e] = Fp32ToFp16(dist(rng));
          v_[slot * row + e] = Fp32ToFp16(dist(rng));
        }
      }
      q_end -= s.num_q;
      seqs_.push_back(AttentionSeq{q_end, s.num_q, s.context_len, tables_[i].data()});
    }
    q_.resize(static_cast<size_t>(total_q) * num_heads * head_dim);
    for (float& x : q_) x = dist(rng) * q_range;
  }

  std::vector<float> Reference() const {
    std::vector<float> out(q_.size());
    AttentionReference(q_.data(), kv_, seqs_, num_heads_, Scale(), out.data());
    return out;
  }

  std::vector<float> Run(ThreadPool& pool) const {
    std::vector<float> out(q_.size(), -12345.0f);
    Attention(pool, q_.data(), kv_, seqs_, num_heads_, Scale(), out.data());
    return out;
  }

  float Scale() const { return 1.0f / std::sqrt(static_cast<float>(kv_.head_dim)); }

  std::vector<float> RunOnly(ThreadPool& pool, size_t seq) const {
    std::vector<float> out(q_.size(), -12345.0f);
    Attention(pool, q_.data(), kv_, std::span<const AttentionSeq>(seqs_).subspan(seq, 1),
              num_heads_, Scale(), out.data());
    return out;
  }
  const std::vector<AttentionSeq>& seqs() const { return seqs_; }

  template <typename F>
  std::vector<float> Naive(F fn) const {
    return fn(q_.data(), kv_, seqs_, num_heads_, Scale(), q_.size());
  }

 private:
  int32_t num_heads_;
  std::vector<uint16_t> k_, v_;
  KvLayer kv_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<AttentionSeq> seqs_;
  std::vector<float> q_;
};

double NormalizedError(const std::vector<float>& got, const std::vector<float>& want) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i])));
  }
  return max_diff / max_ref;
}

std::vector<Isa> Paths() {
  std::vector<Isa> paths;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (static_cast<int>(isa) <= static_cast<int>(DetectedIsa())) paths.push_back(isa);
  }
  return paths;
}

class IsaRestorer {
 public:
  ~IsaRestorer() { SetIsaForTesting(saved_); }

 private:
  Isa saved_ = ActiveIsa();
};

// Every path runs the same arithmetic as the reference: bit-identical (NormalizedError 0).
constexpr double kTolerance = std::numeric_limits<double>::min();

struct Config {
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t block_size;
};

// GQA 1, 3, 4; head dims 64 and 128 (AVX-512 path), 80 and 72 (AVX2 path on AVX-512 machines,
// not a multiple of 16), 20 (scalar path); block sizes that are, and are not, multiples of the
// 16-token tile.
const Config kConfigs[] = {
    {4, 4, 64, 16}, {9, 3, 64, 16}, {8, 2, 128, 16}, {12, 4, 128, 32},
    {6, 2, 80, 16}, {4, 1, 72, 8},  {3, 3, 20, 16},  {8, 2, 64, 24},
};

// One first token, a full prefill, a chunked prefill (5 queries after 95 cached tokens), decodes.
const std::vector<SeqSpec> kMixedBatch = {{1, 1}, {37, 37}, {100, 5}, {300, 1}, {16, 1}, {45, 2}};

TEST(AttentionTest, MixedBatchMatchesReference) {
  IsaRestorer restore;
  for (const Config& c : kConfigs) {
    const Fixture f(kMixedBatch, c.num_heads, c.num_kv_heads, c.head_dim, c.block_size, 1);
    const std::vector<float> want = f.Reference();
    for (Isa isa : Paths()) {
      ASSERT_TRUE(SetIsaForTesting(isa));
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        const double err = NormalizedError(f.Run(pool), want);
        EXPECT_LT(err, kTolerance) << IsaName(isa) << " threads=" << threads
                                   << " heads=" << c.num_heads << "/" << c.num_kv_heads
                                   << " head_dim=" << c.head_dim << " block=" << c.block_size;
      }
    }
  }
}

TEST(AttentionTest, LongPrefillAndChunkedPrefill) {
  IsaRestorer restore;
  // 300 new tokens; 64 queries at the end of a 700-token context; a decode beside them.
  const std::vector<SeqSpec> specs = {{300, 300}, {700, 64}, {333, 1}};
  for (const Config& c : {Config{9, 3, 64, 16}, Config{8, 2, 128, 16}}) {
    const Fixture f(specs, c.num_heads, c.num_kv_heads, c.head_dim, c.block_size, 2);
    const std::vector<float> want = f.Reference();
    for (Isa isa : Paths()) {
      ASSERT_TRUE(SetIsaForTesting(isa));
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        EXPECT_LT(NormalizedError(f.Run(pool), want), kTolerance)
            << IsaName(isa) << " threads=" << threads << " head_dim=" << c.head_dim;
      }
    }
  }
}

TEST(AttentionTest, SplitDecodeMatchesReference) {
  // Few work items (one sequence, one query, few kv heads) and long contexts: the KV range is
  // split across threads and the partial softmaxes merged.
  IsaRestorer restore;
  for (int32_t context : {257, 1000, 2048, 3001}) {
    for (const Config& c : {Config{9, 3, 64, 16}, Config{4, 1, 128, 16}, Config{4, 4, 64, 32}}) {
      const Fixture f({{context, 1}}, c.num_heads, c.num_kv_heads, c.head_dim, c.block_size,
                      context);
      const std::vector<float> want = f.Reference();
      for (Isa isa : Paths()) {
        ASSERT_TRUE(SetIsaForTesting(isa));
        for (int threads : {1, 2, 3}) {
          ThreadPool pool(threads);
          EXPECT_LT(NormalizedError(f.Run(pool), want), kTolerance)
              << IsaName(isa) << " threads=" << threads << " context=" << context
              << " heads=" << c.num_heads << "/" << c.num_kv_heads;
        }
      }
    }
  }
}

TEST(AttentionTest, SplitChunkedPrefillWithFewItems) {
  // A few queries at the end of a long context, on one kv head: split items hold several
  // queries, some of which see none of the keys of the last split.
  IsaRestorer restore;
  const Fixture f({{1500, 3}}, 4, 1, 64, 16, 7);
  const std::vector<float> want = f.Reference();
  for (Isa isa : Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    ThreadPool pool(3);
    EXPECT_LT(NormalizedError(f.Run(pool), want), kTolerance) << IsaName(isa);
  }
}

TEST(AttentionTest, ManyDecodeSequences) {
  IsaRestorer restore;
  std::vector<SeqSpec> specs;
  for (int32_t i = 0; i < 13; ++i) specs.push_back({1 + i * 37, 1});
  const Fixture f(specs, 9, 3, 64, 16, 3);
  const std::vector<float> want = f.Reference();
  for (Isa isa : Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      EXPECT_LT(NormalizedError(f.Run(pool), want), kTolerance)
          << IsaName(isa) << " threads=" << threads;
    }
  }
}

TEST(AttentionTest, PeakedScoresStayStable) {
  // Large scores (|q·k| * scale in the hundreds): the running max must keep exp in range.
  IsaRestorer restore;
  const Fixture f({{200, 20}, {600, 1}}, 4, 2, 64, 16, 4, /*q_range=*/200.0f);
  const std::vector<float> want = f.Reference();
  for (Isa isa : Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    ThreadPool pool(2);
    EXPECT_LT(NormalizedError(f.Run(pool), want), kTolerance) << IsaName(isa);
  }
}

// Naive causal attention in double from the f16 cache (no f16 rounding of Q or P).
std::vector<float> NaiveDouble(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                               int32_t num_heads, float scale, size_t size) {
  std::vector<float> out(size);
  const int32_t hd = kv.head_dim, group = num_heads / kv.num_kv_heads;
  for (const AttentionSeq& s : seqs) {
    for (int32_t i = 0; i < s.num_q; ++i) {
      const int32_t pos = s.context_len - s.num_q + i;
      for (int32_t h = 0; h < num_heads; ++h) {
        const int64_t row = static_cast<int64_t>(s.q_begin + i) * num_heads + h;
        std::vector<double> sc(pos + 1), acc(hd, 0.0);
        double mx = -INFINITY, sum = 0.0;
        auto at = [&](const uint16_t* base, int32_t p) {
          const int64_t slot = static_cast<int64_t>(s.block_table[p / kv.block_size]) *
                                   kv.block_size + p % kv.block_size;
          return base + (slot * kv.num_kv_heads + h / group) * hd;
        };
        for (int32_t p = 0; p <= pos; ++p) {
          double dot = 0.0;
          for (int32_t d = 0; d < hd; ++d) dot += double(q[row * hd + d]) * Fp16ToFp32(at(kv.k, p)[d]);
          sc[p] = dot * scale;
          mx = std::max(mx, sc[p]);
        }
        for (int32_t p = 0; p <= pos; ++p) {
          const double w = std::exp(sc[p] - mx);
          sum += w;
          for (int32_t d = 0; d < hd; ++d) acc[d] += w * Fp16ToFp32(at(kv.v, p)[d]);
        }
        for (int32_t d = 0; d < hd; ++d) out[row * hd + d] = static_cast<float>(acc[d] / sum);
      }
    }
  }
  return out;
}

TEST(AttentionTest, ReferenceIsCloseToExactSoftmax) {
  for (const Config& c : kConfigs) {
    const Fixture f(kMixedBatch, c.num_heads, c.num_kv_heads, c.head_dim, c.block_size, 11);
    const std::vector<float> want = f.Reference();
    const std::vector<float> exact = f.Naive(NaiveDouble);
    EXPECT_LT(NormalizedError(want, exact), 5e-3) << c.head_dim;
  }
}

// A query's output depends only on its own sequence: each sequence of a mixed batch (decodes,
// a prefill, a chunked prefill) gives the same bits run alone as in the batch, with 1 or 2
// threads.
TEST(AttentionTest, BatchInvariant) {
  const Fixture f({{300, 1}, {40, 40}, {90, 7}, {17, 1}}, 9, 3, 64, 16, 21);
  ThreadPool one(1), two(2);
  const std::vector<float> batch = f.Run(two);
  EXPECT_EQ(f.Run(one), batch);
  for (size_t i = 0; i < f.seqs().size(); ++i) {
    const std::vector<float> alone = f.RunOnly(two, i);
    const AttentionSeq& s = f.seqs()[i];
    const size_t row = 9 * 64;
    for (size_t e = s.q_begin * row; e < (s.q_begin + s.num_q) * row; ++e) {
      ASSERT_EQ(alone[e], batch[e]) << "sequence " << i << " element " << e;
    }
  }
}

TEST(AttentionTest, RepeatedCallsAreDeterministic) {
  const Fixture f({{700, 1}, {90, 30}}, 9, 3, 64, 16, 5);
  ThreadPool pool(2);
  const std::vector<float> first = f.Run(pool);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.Run(pool), first);
}

// ---- Timings (run with --gtest_also_run_disabled_tests) --------------------------------------

// Median and minimum wall time of `reps` calls, in microseconds.
std::pair<double, double> Micros(const Fixture& f, ThreadPool& pool, int reps) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f.Run(pool);
    times.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times[0]};
}

TEST(AttentionTest, DISABLED_Timings) {
  // 9 heads, 3 kv heads, head_dim 64 (SmolLM2-135M's attention shape).
  IsaRestorer restore;
  const Fixture decode512({{512, 1}}, 9, 3, 64, 16, 1);
  const Fixture decode2048({{2048, 1}}, 9, 3, 64, 16, 2);
  const Fixture prefill512({{512, 512}}, 9, 3, 64, 16, 3);
  for (Isa isa : Paths()) {
    if (isa == Isa::kScalar) continue;
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      const auto [d512, d512_min] = Micros(decode512, pool, 2001);
      const auto [d2048, d2048_min] = Micros(decode2048, pool, 1001);
      const auto [p512, p512_min] = Micros(prefill512, pool, 31);
      std::printf("%-6s threads=%d  decode ctx 512: %7.1f us (min %7.1f)  decode ctx 2048: "
                  "%7.1f us (min %7.1f)  prefill 512: %8.1f us (min %8.1f)\n",
                  std::string(IsaName(isa)).c_str(), threads, d512, d512_min, d2048, d2048_min,
                  p512, p512_min);
    }
  }
}

}  // namespace
}  // namespace saola::kernels::cpu
