#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quantize.h"
#include "tests/kernels/random_weight.h"

namespace saola::kernels::cpu {
namespace {

constexpr DType kTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16,
                            DType::kQ8_0, DType::kQ4_0, DType::kQ4_1};
constexpr int64_t kTokenCounts[] = {1, 2, 3, 7, 16, 33, 512};
constexpr int64_t kRowCounts[] = {1, 7, 193};
constexpr int64_t kColCounts[] = {32, 64, 576, 1536};

// Bound on max|y - ref| / max|ref| for the same prepared activations: only the order of float
// additions differs between a path and the double-precision reference.
constexpr double kSameActsBound = 1e-5;
// Bound against the product with unquantized float activations (the error of rounding x to
// int8 per 32-block, or to half / bfloat16).
double FloatActsBound(DType type) {
  switch (type) {
    case DType::kF32: return 1e-5;
    case DType::kF16: return 2e-3;
    case DType::kBF16: return 1e-2;
    default: return 3e-2;
  }
}

using TestWeight = RandomWeight;

std::vector<float> MakeActivations(int64_t n, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n * cols);
  for (auto& v : x) v = normal(rng);
  // An outlier and an all-zero block, as real activations have.
  x[0] = 12.0f;
  if (cols >= 64 && n > 1) std::fill(x.begin() + cols, x.begin() + cols + 32, 0.0f);
  return x;
}

double NormalizedError(const std::vector<float>& y, const std::vector<float>& ref) {
  double max_ref = 0.0, max_err = 0.0;
  for (size_t i = 0; i < y.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
    max_err = std::max(max_err, std::fabs(static_cast<double>(y[i]) - ref[i]));
  }
  return max_ref > 0.0 ? max_err / max_ref : max_err;
}

// y = x · dequantized(w)ᵀ with float activations, in double.
std::vector<float> FloatProduct(const Weight& w, const std::vector<float>& x, int64_t n) {
  std::vector<float> y(n * w.rows), row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w.type, static_cast<const uint8_t*>(w.data) + r * w.row_stride_bytes,
                  row.data(), w.cols);
    for (int64_t t = 0; t < n; ++t) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) acc += static_cast<double>(row[k]) * x[t * w.cols + k];
      y[t * w.rows + r] = static_cast<float>(acc);
    }
  }
  return y;
}

struct PathParam {
  Isa isa;
};

std::string PathName(const PathParam& p) { return std::string(IsaName(p.isa)); }

// Types whose every path reproduces llama.cpp's arithmetic (and MatMulReference) bit for bit.
bool GgmlExact(DType type) {
  return type == DType::kQ8_0 || type == DType::kQ4_0 || type == DType::kQ4_1 ||
         type == DType::kF16;
}

class MatMulPathTest : public ::testing::TestWithParam<PathParam> {
 protected:
  void SetUp() override {
    const PathParam p = GetParam();
    if (static_cast<int>(p.isa) > static_cast<int>(DetectedIsa())) {
      GTEST_SKIP() << "CPU lacks " << IsaName(p.isa) << "; path not tested here";
    }
    ASSERT_TRUE(SetIsaForTesting(p.isa));
  }
  void TearDown() override { SetIsaForTesting(DetectedIsa()); }
};

using RefKey = std::tuple<int, int64_t, int64_t, int64_t>;

// References are shared by every path (computing them dominates the test's run time).
const std::vector<float>& CachedReference(DType type, int64_t n, int64_t rows, int64_t cols,
                                          const TestWeight& tw, const std::vector<float>& x) {
  static auto* cache = new std::map<RefKey, std::vector<float>>();
  const RefKey key{static_cast<int>(type), n, rows, cols};
  auto it = cache->find(key);
  if (it == cache->end()) {
    std::vector<float> ref(n * rows);
    MatMulReference(tw.w, x.data(), n, ref.data());
    it = cache->emplace(key, std::move(ref)).first;
  }
  return it->second;
}

TEST_P(MatMulPathTest, MatchesReferenceForEveryTypeShapeAndThreadCount) {
  std::vector<std::unique_ptr<ThreadPool>> pools;
  for (int threads : {1, 2, 3}) pools.push_back(std::make_unique<ThreadPool>(threads));
  std::vector<uint8_t> scratch;
  for (DType type : kTypes) {
    for (int64_t cols : kColCounts) {
      for (int64_t rows : kRowCounts) {
        // Row counts 1 and 7 use column slices of wider rows (row_stride_bytes > RowBytes).
        const bool strided = rows != 193;
        const uint32_t seed = static_cast<uint32_t>(cols * 1000 + rows * 10 + static_cast<int>(type));
        const TestWeight tw = MakeWeight(type, rows, cols, strided, seed);
        for (int64_t n : kTokenCounts) {
          const std::vector<float> x = MakeActivations(n, cols, seed + static_cast<uint32_t>(n));
          const std::vector<float>& ref = CachedReference(type, n, rows, cols, tw, x);
          for (auto& pool : pools) {
            if (pool->size() != 2 && n * rows * cols > (1 << 22) && GetParam().isa == Isa::kScalar) {
              continue;  // keep the scalar path's run time down on the largest shapes
            }
            std::vector<float> y(n * rows, -1.0f);
            MatMul(*pool, tw.w, x.data(), n, y.data(), scratch);
            if (GgmlExact(type)) {
              ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
                  << GetDTypeInfo(type).name << " n=" << n << " rows=" << rows
                  << " cols=" << cols << " threads=" << pool->size()
                  << " normalized error " << NormalizedError(y, ref);
              continue;
            }
            const double err = NormalizedError(y, ref);
            ASSERT_LT(err, kSameActsBound)
                << GetDTypeInfo(type).name << " n=" << n << " rows=" << rows << " cols=" << cols
                << " threads=" << pool->size();
          }
        }
      }
    }
  }
}

// Every path reproduces llama.cpp's order for these types, so results equal the scalar path's bit
// for bit whatever the batch size, row split or thread count: a token's logits do not depend on
// how the batch was formed.
TEST_P(MatMulPathTest, GgmlExactTypesBitIdenticalToScalarPathForAnyBatch) {
  const PathParam p = GetParam();
  std::vector<uint8_t> scratch;
  ThreadPool pool1(1), pool3(3);
  for (DType type : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kF16}) {
    for (int64_t cols : {int64_t{64}, int64_t{96}, int64_t{576}, int64_t{1536}}) {
      const int64_t rows = 77;
      const TestWeight tw = MakeWeight(type, rows, cols, /*strided=*/true, 7);
      for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{7}, int64_t{33}, int64_t{100}}) {
        const std::vector<float> x = MakeActivations(n, cols, 17);
        ASSERT_TRUE(SetIsaForTesting(Isa::kScalar));
        std::vector<float> want(n * rows);
        MatMul(pool1, tw.w, x.data(), n, want.data(), scratch);
        ASSERT_TRUE(SetIsaForTesting(p.isa));
        for (ThreadPool* pool : {&pool1, &pool3}) {
          std::vector<float> got(n * rows, -1.0f);
          MatMul(*pool, tw.w, x.data(), n, got.data(), scratch);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
              << GetDTypeInfo(type).name << " cols=" << cols << " n=" << n
              << " threads=" << pool->size();
          // Token by token gives the same bits as the batch.
          if (n == 7) {
            for (int64_t t = 0; t < n; ++t) {
              std::vector<float> one(rows);
              MatMul(*pool, tw.w, x.data() + t * cols, 1, one.data(), scratch);
              ASSERT_EQ(std::memcmp(one.data(), want.data() + t * rows, rows * sizeof(float)), 0)
                  << GetDTypeInfo(type).name << " cols=" << cols << " token " << t;
            }
          }
        }
      }
    }
  }
}

TEST_P(MatMulPathTest, CloseToFloatActivationProduct) {
  ThreadPool pool(2);
  std::vector<uint8_t> scratch;
  for (DType type : kTypes) {
    for (int64_t n : {int64_t{1}, int64_t{33}}) {
      const TestWeight tw = MakeWeight(type, 64, 576, false, 99);
      const std::vector<float> x = MakeActivations(n, 576, 5);
      std::vector<float> y(n * 64);
      MatMul(pool, tw.w, x.data(), n, y.data(), scratch);
      const double err = NormalizedError(y, FloatProduct(tw.w, x, n));
      EXPECT_LT(err, FloatActsBound(type)) << GetDTypeInfo(type).name << " n=" << n;
    }
  }
}

TEST_P(MatMulPathTest, SharedEqualsSeparateProducts) {
  ThreadPool pool(3);
  std::vector<uint8_t> scratch;
  // Q/K/V of the served model (different row counts), a mixed-type set, and gate/up.
  const std::vector<std::vector<std::pair<DType, int64_t>>> sets = {
      {{DType::kQ4_1, 576}, {DType::kQ4_1, 192}, {DType::kQ4_1, 192}},
      {{DType::kQ8_0, 100}, {DType::kF16, 7}, {DType::kQ4_0, 33}, {DType::kF32, 1}},
      {{DType::kQ4_1, 1536}, {DType::kQ4_1, 1536}},
  };
  for (const auto& set : sets) {
    for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{64}}) {
      const std::vector<float> x = MakeActivations(n, 576, 11);
      std::vector<TestWeight> tws;
      std::vector<Weight> ws;
      for (size_t i = 0; i < set.size(); ++i) {
        tws.push_back(MakeWeight(set[i].first, set[i].second, 576, i == 1, 20 + i));
      }
      for (const auto& tw : tws) ws.push_back(tw.w);
      std::vector<std::vector<float>> outs(ws.size());
      std::vector<float*> ys;
      for (size_t i = 0; i < ws.size(); ++i) {
        outs[i].assign(n * ws[i].rows, -1.0f);
        ys.push_back(outs[i].data());
      }
      MatMulShared(pool, ws, x.data(), n, ys, scratch);
      for (size_t i = 0; i < ws.size(); ++i) {
        std::vector<float> ref(n * ws[i].rows);
        MatMulReference(ws[i], x.data(), n, ref.data());
        EXPECT_LT(NormalizedError(outs[i], ref), kSameActsBound)
            << "weight " << i << " " << GetDTypeInfo(ws[i].type).name << " n=" << n;
      }
    }
  }
}

TEST_P(MatMulPathTest, EmbedDequantizesRows) {
  ThreadPool pool(2);
  for (DType type : kTypes) {
    for (bool strided : {false, true}) {
      const TestWeight tw = MakeWeight(type, 300, 576, strided, 4);
      std::vector<int32_t> ids;
      for (int i = 0; i < 130; ++i) ids.push_back((i * 37) % 300);
      for (int64_t n : {int64_t{1}, static_cast<int64_t>(ids.size())}) {
        std::vector<float> out(n * 576, -1.0f), want(576);
        Embed(pool, tw.w, ids.data(), n, out.data());
        for (int64_t i = 0; i < n; ++i) {
          DequantizeRow(type,
                        static_cast<const uint8_t*>(tw.w.data) + ids[i] * tw.w.row_stride_bytes,
                        want.data(), 576);
          ASSERT_EQ(std::memcmp(out.data() + i * 576, want.data(), 576 * sizeof(float)), 0)
              << GetDTypeInfo(type).name << " i=" << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, MatMulPathTest,
                         ::testing::Values(PathParam{Isa::kScalar}, PathParam{Isa::kAvx2},
                                           PathParam{Isa::kAvx512}),
                         [](const auto& info) { return PathName(info.param); });

TEST(MatMulSupportsTest, ListsImplementedTypes) {
  for (DType type : kTypes) EXPECT_TRUE(MatMulSupports(type)) << GetDTypeInfo(type).name;
  EXPECT_FALSE(MatMulSupports(DType::kQ4_K));
  EXPECT_FALSE(MatMulSupports(DType::kQ6_K));
  EXPECT_FALSE(MatMulSupports(DType::kQ8_1));
}

}  // namespace
}  // namespace saola::kernels::cpu
