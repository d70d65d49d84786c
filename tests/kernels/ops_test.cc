// The element-wise CPU ops (kernels/cpu/ops.h) against their scalar references, on every
// instruction-set path this machine has and with 1, 2 and 3 threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/thread_pool.h"

namespace saola::kernels::cpu {
namespace {

std::vector<float> RandomFloats(size_t count, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng);
  return v;
}

// max |a - b| / max |b|: the normalized error of test-backend-ops.
double NormalizedError(const std::vector<float>& a, const std::vector<float>& b) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(b[i])));
  }
  return max_ref == 0.0 ? max_diff : max_diff / max_ref;
}

// Every path this CPU supports, restoring the detected one afterwards.
class IsaSweep {
 public:
  IsaSweep() : saved_(ActiveIsa()) {}
  ~IsaSweep() { SetIsaForTesting(saved_); }
  std::vector<Isa> Paths() const {
    std::vector<Isa> paths;
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (static_cast<int>(isa) <= static_cast<int>(DetectedIsa())) paths.push_back(isa);
    }
    return paths;
  }

 private:
  Isa saved_;
};

struct Shape {
  int64_t n;
  int64_t dim;
};

// Decode rows, prefill rows (parallel), and dims that leave vector tails.
const Shape kShapes[] = {{1, 576}, {1, 4}, {3, 1001}, {7, 64}, {64, 576}, {40, 4096}};

TEST(RmsNormTest, KnownValues) {
  ThreadPool pool(1);
  const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  const float w[4] = {1.0f, 0.5f, 2.0f, -1.0f};
  float out[4];
  RmsNorm(pool, x, w, 1, 4, 0.0f, out);
  const float scale = 1.0f / std::sqrt(7.5f);  // mean of squares = 30 / 4
  EXPECT_FLOAT_EQ(out[0], scale);
  EXPECT_FLOAT_EQ(out[1], 2.0f * scale * 0.5f);
  EXPECT_FLOAT_EQ(out[2], 3.0f * scale * 2.0f);
  EXPECT_FLOAT_EQ(out[3], -4.0f * scale);
}

TEST(RmsNormTest, MatchesReferenceOnEveryPath) {
  IsaSweep sweep;
  for (Isa isa : sweep.Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (const Shape& s : kShapes) {
        SCOPED_TRACE(testing::Message() << IsaName(isa) << " threads=" << threads << " n=" << s.n
                                        << " dim=" << s.dim);
        const auto x = RandomFloats(s.n * s.dim, 1);
        const auto w = RandomFloats(s.dim, 2, 0.5f, 1.5f);
        std::vector<float> want(x.size()), got(x.size());
        RmsNormReference(x.data(), w.data(), s.n, s.dim, 1e-6f, want.data());
        RmsNorm(pool, x.data(), w.data(), s.n, s.dim, 1e-6f, got.data());
        EXPECT_LT(NormalizedError(got, want), 1e-6);
        // In place.
        std::vector<float> inplace = x;
        RmsNorm(pool, inplace.data(), w.data(), s.n, s.dim, 1e-6f, inplace.data());
        EXPECT_EQ(inplace, got);
      }
    }
  }
}

TEST(AddRmsNormTest, MatchesReferenceOnEveryPath) {
  IsaSweep sweep;
  for (Isa isa : sweep.Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (const Shape& s : kShapes) {
        SCOPED_TRACE(testing::Message() << IsaName(isa) << " threads=" << threads << " n=" << s.n
                                        << " dim=" << s.dim);
        const auto residual = RandomFloats(s.n * s.dim, 3);
        const auto delta = RandomFloats(s.n * s.dim, 4);
        const auto w = RandomFloats(s.dim, 5, 0.5f, 1.5f);
        std::vector<float> want_res = residual, got_res = residual;
        std::vector<float> want(residual.size()), got(residual.size());
        AddRmsNormReference(want_res.data(), delta.data(), w.data(), s.n, s.dim, 1e-5f,
                            want.data());
        AddRmsNorm(pool, got_res.data(), delta.data(), w.data(), s.n, s.dim, 1e-5f, got.data());
        EXPECT_EQ(got_res, want_res);  // one float add per element on every path
        EXPECT_LT(NormalizedError(got, want), 1e-6);
        // The output may overwrite delta.
        std::vector<float> res2 = residual, delta2 = delta;
        AddRmsNorm(pool, res2.data(), delta2.data(), w.data(), s.n, s.dim, 1e-5f, delta2.data());
        EXPECT_EQ(res2, got_res);
        EXPECT_EQ(delta2, got);
      }
    }
  }
}

TEST(AddTest, ExactOnEveryPath) {
  IsaSweep sweep;
  for (Isa isa : sweep.Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (const Shape& s : kShapes) {
        const auto x = RandomFloats(s.n * s.dim, 6);
        const auto d = RandomFloats(s.n * s.dim, 7);
        std::vector<float> want = x, got = x;
        AddReference(want.data(), d.data(), s.n, s.dim);
        Add(pool, got.data(), d.data(), s.n, s.dim);
        EXPECT_EQ(got, want) << IsaName(isa) << " threads=" << threads << " n=" << s.n;
      }
    }
  }
}

TEST(SiluMulTest, MatchesReferenceOnEveryPath) {
  IsaSweep sweep;
  for (Isa isa : sweep.Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (const Shape& s : kShapes) {
        SCOPED_TRACE(testing::Message() << IsaName(isa) << " threads=" << threads << " n=" << s.n
                                        << " dim=" << s.dim);
        const auto gate = RandomFloats(s.n * s.dim, 8, -12.0f, 12.0f);
        const auto up = RandomFloats(s.n * s.dim, 9);
        std::vector<float> want(gate.size()), got(gate.size());
        SiluMulReference(gate.data(), up.data(), s.n, s.dim, want.data());
        SiluMul(pool, gate.data(), up.data(), s.n, s.dim, got.data());
        // Element-wise relative error: the vector exp is within a few ulp of expf.
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_NEAR(got[i], want[i], 2e-6f * std::abs(want[i]) + 1e-30f) << i;
        }
      }
    }
  }
}

TEST(SiluMulTest, ExtremeGates) {
  ThreadPool pool(1);
  const float gate[8] = {-200.0f, -88.5f, -30.0f, 0.0f, 1e-30f, 30.0f, 88.5f, 200.0f};
  const float up[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  float out[8];
  SiluMul(pool, gate, up, 1, 8, out);
  for (int i = 0; i < 8; ++i) {
    const double g = gate[i];
    const double want = g / (1.0 + std::exp(-g));
    EXPECT_NEAR(out[i], want, 1e-6 * std::abs(want) + 1e-30) << gate[i];
    EXPECT_FALSE(std::isnan(out[i]));
  }
}

// ---- Rope ------------------------------------------------------------------------------------

// ggml's recipe written out independently: angles by repeated multiplication in float, and the
// rotation rounded as GCC compiles ggml's rotate_pairs (contracted into FMAs).
void RopeByHand(float* x, int32_t pos, int32_t num_heads, int32_t head_dim, const RopeParams& p) {
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.rope_dim));
  for (int32_t h = 0; h < num_heads; ++h) {
    float* xh = x + h * head_dim;
    float theta = static_cast<float>(pos);
    for (int32_t i = 0; i < p.rope_dim / 2; ++i) {
      const float c = std::cos(p.freq_scale * theta);
      const float s = std::sin(p.freq_scale * theta);
      const int32_t a = p.mode == RopeMode::kNorm ? 2 * i : i;
      const int32_t b = p.mode == RopeMode::kNorm ? 2 * i + 1 : i + p.rope_dim / 2;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = std::fma(x0, c, -(x1 * s));
      xh[b] = std::fma(x0, s, x1 * c);
      theta *= theta_scale;
    }
  }
}

struct RopeCase {
  RopeMode mode;
  int32_t num_heads;
  int32_t head_dim;
  int32_t rope_dim;
  float freq_base;
  float freq_scale;
};

const RopeCase kRopeCases[] = {
    {RopeMode::kNorm, 9, 64, 64, 10000.0f, 1.0f},
    {RopeMode::kNeox, 9, 64, 64, 10000.0f, 1.0f},
    {RopeMode::kNorm, 4, 128, 128, 500000.0f, 1.0f},
    {RopeMode::kNeox, 4, 128, 128, 1000000.0f, 0.25f},
    {RopeMode::kNorm, 3, 64, 32, 10000.0f, 1.0f},   // partial: dims 32..63 pass through
    {RopeMode::kNeox, 3, 64, 32, 10000.0f, 1.0f},
    {RopeMode::kNeox, 2, 80, 20, 10000.0f, 0.5f},   // half = 10: vector tail in both modes
};

TEST(RopeTest, MatchesReferenceOnEveryPath) {
  const std::vector<int32_t> positions = {0, 1, 5, 5, 17, 511, 512, 4095, 70000, 3, 1, 0};
  const int64_t n = static_cast<int64_t>(positions.size());
  IsaSweep sweep;
  for (Isa isa : sweep.Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (const RopeCase& c : kRopeCases) {
        SCOPED_TRACE(testing::Message() << IsaName(isa) << " threads=" << threads << " mode="
                                        << static_cast<int>(c.mode) << " rope_dim=" << c.rope_dim);
        const RopeParams params{c.mode, c.rope_dim, c.freq_base, c.freq_scale};
        const auto x = RandomFloats(n * c.num_heads * c.head_dim, 10);
        std::vector<float> want = x, by_hand = x;
        RopeReference(want.data(), positions.data(), n, c.num_heads, c.head_dim, params);
        const int64_t stride = static_cast<int64_t>(c.num_heads) * c.head_dim;
        for (int64_t i = 0; i < n; ++i) {
          RopeByHand(by_hand.data() + i * stride, positions[i], c.num_heads, c.head_dim, params);
        }
        EXPECT_EQ(want, by_hand);
        // Twice: the second call reads the angle memo the first one filled.
        for (int round = 0; round < 2; ++round) {
          std::vector<float> got = x;
          Rope(pool, got.data(), positions.data(), n, c.num_heads, c.head_dim, params);
          EXPECT_EQ(got, want);
          // Dims past rope_dim are untouched.
          for (int64_t i = 0; i < n * c.num_heads; ++i) {
            for (int32_t d = c.rope_dim; d < c.head_dim; ++d) {
              ASSERT_EQ(got[i * c.head_dim + d], x[i * c.head_dim + d]);
            }
          }
        }
      }
    }
  }
}

TEST(RopeTest, AnglesFollowTheFormula) {
  // theta_i = pos * base^(-2i/d): the float recurrence stays within a small angle error.
  ThreadPool pool(1);
  const int32_t head_dim = 64;
  for (RopeMode mode : {RopeMode::kNorm, RopeMode::kNeox}) {
    const RopeParams params{mode, head_dim, 10000.0f, 1.0f};
    for (int32_t pos : {0, 1, 7, 100, 2047}) {
      std::vector<float> x(head_dim);
      const int32_t half = head_dim / 2;
      for (int32_t i = 0; i < half; ++i) {
        x[mode == RopeMode::kNorm ? 2 * i : i] = 1.0f;  // (1, 0) rotates to (cos, sin)
      }
      Rope(pool, x.data(), &pos, 1, 1, head_dim, params);
      for (int32_t i = 0; i < half; ++i) {
        const double theta = pos * std::pow(10000.0, -2.0 * i / head_dim);
        const float c = x[mode == RopeMode::kNorm ? 2 * i : i];
        const float s = x[mode == RopeMode::kNorm ? 2 * i + 1 : i + half];
        EXPECT_NEAR(c, std::cos(theta), 2e-3) << "pos " << pos << " pair " << i;
        EXPECT_NEAR(s, std::sin(theta), 2e-3) << "pos " << pos << " pair " << i;
      }
    }
  }
}

TEST(RopeTest, AlternatingParameterSets) {
  // Several parameter sets on one thread (e.g. local and global layers) keep separate memos.
  ThreadPool pool(2);
  const std::vector<int32_t> positions = {0, 9, 33, 300};
  for (int round = 0; round < 3; ++round) {
    for (float base : {10000.0f, 1000000.0f, 500.0f, 77.0f, 10000.0f * 3}) {
      const RopeParams params{RopeMode::kNeox, 64, base, 1.0f};
      const auto x = RandomFloats(4 * 2 * 64, 11);
      std::vector<float> want = x, got = x;
      RopeReference(want.data(), positions.data(), 4, 2, 64, params);
      Rope(pool, got.data(), positions.data(), 4, 2, 64, params);
      EXPECT_LT(NormalizedError(got, want), 1e-6) << base;
    }
  }
}

TEST(RopeTest, LongPrefillFillsInParallel) {
  IsaSweep sweep;
  ThreadPool pool(2);
  std::vector<int32_t> positions(600);
  for (int32_t i = 0; i < 600; ++i) positions[i] = 1000 + i;
  const RopeParams params{RopeMode::kNorm, 64, 123456.0f, 1.0f};
  const auto x = RandomFloats(600 * 3 * 64, 12);
  std::vector<float> want = x, got = x;
  RopeReference(want.data(), positions.data(), 600, 3, 64, params);
  ASSERT_TRUE(SetIsaForTesting(Isa::kScalar));
  Rope(pool, got.data(), positions.data(), 600, 3, 64, params);
  EXPECT_EQ(got, want);
}

// ---- StoreKv -----------------------------------------------------------------------------------

TEST(StoreKvTest, RoundTripOnEveryPath) {
  const int32_t num_kv_heads = 3, head_dim = 72, block_size = 16, num_blocks = 6;
  const int64_t row = num_kv_heads * head_dim;
  const std::vector<int32_t> slots = {5, 17, 0, 95, 40, 41, 42, 16};
  const int64_t n = static_cast<int64_t>(slots.size());
  auto k = RandomFloats(n * row, 13, -70000.0f, 70000.0f);  // includes overflow to inf
  auto v = RandomFloats(n * row, 14, -1e-3f, 1e-3f);         // includes half subnormals
  IsaSweep sweep;
  for (Isa isa : sweep.Paths()) {
    ASSERT_TRUE(SetIsaForTesting(isa));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      const size_t elems = static_cast<size_t>(num_blocks) * block_size * row;
      std::vector<uint16_t> want_k(elems, 0xabcd), want_v(elems, 0xabcd);
      std::vector<uint16_t> got_k(elems, 0xabcd), got_v(elems, 0xabcd);
      KvLayer want{want_k.data(), want_v.data(), num_blocks, block_size, num_kv_heads, head_dim};
      KvLayer got{got_k.data(), got_v.data(), num_blocks, block_size, num_kv_heads, head_dim};
      StoreKvReference(k.data(), v.data(), slots.data(), n, want);
      StoreKv(pool, k.data(), v.data(), slots.data(), n, got);
      EXPECT_EQ(got_k, want_k) << IsaName(isa);
      EXPECT_EQ(got_v, want_v) << IsaName(isa);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t e = 0; e < row; ++e) {
          // Within half an ulp: 2^-25 for subnormal halves, 2^-11 relative for normal ones.
          const float back = Fp16ToFp32(got_v[slots[i] * row + e]);
          const float vx = v[i * row + e];
          ASSERT_LE(std::abs(back - vx), std::max(2.99e-8f, std::abs(vx) * (1.0f / 2048.0f)));
          const float kb = Fp16ToFp32(got_k[slots[i] * row + e]);
          const float kx = k[i * row + e];
          if (std::abs(kx) >= 65520.0f) {
            ASSERT_TRUE(std::isinf(kb));
          } else {
            ASSERT_LE(std::abs(kb - kx), std::abs(kx) * (1.0f / 2048.0f));
          }
        }
      }
      // Slots not written keep their old contents.
      EXPECT_EQ(got_k[1 * row], 0xabcd);
    }
  }
}

TEST(StoreKvTest, LargePrefillInParallel) {
  const int32_t num_kv_heads = 8, head_dim = 128, block_size = 16, num_blocks = 40;
  const int64_t row = num_kv_heads * head_dim;
  const int64_t n = 600;
  std::vector<int32_t> slots(n);
  for (int64_t i = 0; i < n; ++i) slots[i] = static_cast<int32_t>((i * 7) % (num_blocks * 16));
  std::sort(slots.begin(), slots.end());
  slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
  const int64_t m = static_cast<int64_t>(slots.size());
  const auto k = RandomFloats(m * row, 15);
  const auto v = RandomFloats(m * row, 16);
  const size_t elems = static_cast<size_t>(num_blocks) * block_size * row;
  std::vector<uint16_t> want_k(elems), want_v(elems), got_k(elems), got_v(elems);
  KvLayer want{want_k.data(), want_v.data(), num_blocks, block_size, num_kv_heads, head_dim};
  KvLayer got{got_k.data(), got_v.data(), num_blocks, block_size, num_kv_heads, head_dim};
  ThreadPool pool(3);
  StoreKvReference(k.data(), v.data(), slots.data(), m, want);
  StoreKv(pool, k.data(), v.data(), slots.data(), m, got);
  EXPECT_EQ(got_k, want_k);
  EXPECT_EQ(got_v, want_v);
}

}  // namespace
}  // namespace saola::kernels::cpu
