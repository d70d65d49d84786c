// Attention (kernels/cpu/ops.h) against the naive full-softmax reference over the same f16 cache:
// several sequences of different lengths in one call, chunked prefill (queries at the end of a
// longer context), lengths that are not multiples of the block or tile size, shuffled block
// tables, GQA ratios 1, 3 and 4, head dims on every kernel path, 1-3 threads, and decode calls
// long enough to be split across threads and merged.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
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

constexpr double kTolerance = 1e-4;

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

TEST(AttentionTest, RepeatedCallsAreDeterministic) {
  const Fixture f({{700, 1}, {90, 30}}, 9, 3, 64, 16, 5);
  ThreadPool pool(2);
  const std::vector<float> first = f.Run(pool);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.Run(pool), first);
}

// The per-item kernels directly, on a KV range that starts after some rows' positions (as a
// split of the causal range can): those rows must report that they saw no key (m = -inf, l = 0),
// and every kernel must agree with the scalar one on the others.
TEST(AttentionKernelsTest, AgreeOnPartialKvRanges) {
  const int32_t group = 2, head_dim = 64, block_size = 16, context = 90;
  const int32_t num_q = 20;  // 40 rows at positions 70..89
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int32_t num_blocks = (context + block_size - 1) / block_size;
  std::vector<uint16_t> k(static_cast<size_t>(num_blocks) * block_size * head_dim);
  std::vector<uint16_t> v(k.size());
  for (auto& x : k) x = Fp32ToFp16(dist(rng));
  for (auto& x : v) x = Fp32ToFp16(dist(rng));
  std::vector<int32_t> table(num_blocks);
  std::iota(table.rbegin(), table.rend(), 0);
  std::vector<float> q(static_cast<size_t>(num_q) * group * head_dim);
  for (float& x : q) x = dist(rng);

  using internal::AttentionKernelFn;
  struct Named {
    const char* name;
    AttentionKernelFn fn;
    int32_t max_rows;
    Isa needs;
  };
  const Named kernels[] = {
      {"rows scalar", internal::AttentionRowsScalar, 1000, Isa::kScalar},
      {"rows avx2", internal::AttentionRowsAvx2, 1000, Isa::kAvx2},
      {"rows avx512", internal::AttentionRowsAvx512, 1000, Isa::kAvx512},
      {"lanes avx2", internal::AttentionLanesAvx2, internal::kAttentionLanesAvx2, Isa::kAvx2},
      {"lanes avx512", internal::AttentionLanesAvx512, internal::kAttentionLanesAvx512,
       Isa::kAvx512},
  };
  // Rows [row_begin, row_end) over keys [kv_begin, kv_end): rows 0..13 sit before position 77.
  for (const auto& [row_begin, row_end, kv_begin, kv_end] :
       std::vector<std::array<int32_t, 4>>{{0, 16, 77, 90}, {3, 11, 0, 48}, {0, 5, 16, 77},
                                          {8, 40, 64, 90}, {30, 38, 0, 90}}) {
    internal::AttentionRows a;
    a.q = q.data();
    a.q_stride = static_cast<int64_t>(group) * head_dim;
    a.group = group;
    a.row_begin = row_begin;
    a.row_end = row_end;
    a.first_pos = context - num_q;
    a.kv_begin = kv_begin;
    a.kv_end = kv_end;
    a.k = k.data();
    a.v = v.data();
    a.kv_stride = head_dim;
    a.block_table = table.data();
    a.block_size = block_size;
    a.head_dim = head_dim;
    a.scale = 0.125f;
    const int32_t rows = row_end - row_begin;
    std::vector<float> scratch(internal::AttentionScratchFloats(head_dim));
    std::vector<float> want_acc(rows * head_dim), want_m(rows), want_l(rows);
    internal::AttentionRowsScalar(a, want_acc.data(), want_m.data(), want_l.data(),
                                  scratch.data());
    for (int32_t j = 0; j < rows; ++j) {
      const int32_t pos = a.first_pos + (row_begin + j) / group;
      if (pos < kv_begin) {
        EXPECT_EQ(want_m[j], -INFINITY) << j;
        EXPECT_EQ(want_l[j], 0.0f) << j;
      } else {
        EXPECT_GT(want_l[j], 0.0f) << j;
      }
    }
    for (const Named& kernel : kernels) {
      if (static_cast<int>(kernel.needs) > static_cast<int>(DetectedIsa())) continue;
      if (rows > kernel.max_rows) continue;
      SCOPED_TRACE(testing::Message() << kernel.name << " rows " << row_begin << ".." << row_end
                                      << " keys " << kv_begin << ".." << kv_end);
      std::vector<float> acc(rows * head_dim, NAN), m(rows, NAN), l(rows, NAN);
      kernel.fn(a, acc.data(), m.data(), l.data(), scratch.data());
      for (int32_t j = 0; j < rows; ++j) {
        if (want_m[j] == -INFINITY) {
          EXPECT_EQ(m[j], -INFINITY) << j;
          EXPECT_EQ(l[j], 0.0f) << j;
          for (int32_t d = 0; d < head_dim; ++d) ASSERT_EQ(acc[j * head_dim + d], 0.0f);
          continue;
        }
        // Same softmax state up to rounding: compare the normalized outputs and the maxima.
        EXPECT_NEAR(m[j], want_m[j], 1e-5f) << j;
        for (int32_t d = 0; d < head_dim; ++d) {
          ASSERT_NEAR(acc[j * head_dim + d] / l[j], want_acc[j * head_dim + d] / want_l[j], 1e-5f)
              << j << " " << d;
        }
      }
    }
  }
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
