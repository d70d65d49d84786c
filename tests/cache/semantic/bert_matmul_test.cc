#include "cache/semantic/bert_matmul.h"

#include <immintrin.h>

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace saola::cache {
namespace {

std::vector<float> Random(size_t n, std::mt19937* rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

__attribute__((target("f16c"))) float RoundToHalf(float x) {
  return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}

// max |got - want| over max |want|.
float NormalizedError(const std::vector<float>& got, const std::vector<float>& want) {
  float max_err = 0, max_abs = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_err = std::max(max_err, std::abs(got[i] - want[i]));
    max_abs = std::max(max_abs, std::abs(want[i]));
  }
  return max_err / max_abs;
}

// The packed kernel against a float64 scalar reference over the same half-rounded weights
// (float32 sums of up to 1536 products stay within 1e-5), and against cblas_sgemm on the
// float32 weights (half rounding: within 2e-3).
TEST(BertMatMulTest, KernelMatchesReference) {
  std::mt19937 rng(7);
  const int kShapes[][2] = {{16, 7}, {48, 384}, {1152, 384}, {384, 1536}};  // out, in
  for (const auto& [out, in] : kShapes) {
    const std::vector<float> w = Random(static_cast<size_t>(out) * in, &rng);
    const std::vector<float> bias = Random(out, &rng);
    const PackedWeight packed(w.data(), out, in);
    if (packed.panels().empty()) GTEST_SKIP() << "no AVX2/FMA/F16C: only the BLAS path runs";
    for (int tokens = 1; tokens <= kMaxKernelTokens + 1; tokens += tokens < 14 ? 1 : 17) {
      const std::vector<float> x = Random(static_cast<size_t>(tokens) * in, &rng);
      std::vector<float> got(static_cast<size_t>(tokens) * out), blas(got.size()), ref(got.size());
      MatMulBias(packed, x.data(), tokens, bias.data(), got.data());
      MatMulBiasBlas(packed, x.data(), tokens, bias.data(), blas.data());
      for (int t = 0; t < tokens; ++t) {
        for (int j = 0; j < out; ++j) {
          double sum = bias[j];
          for (int k = 0; k < in; ++k) {
            sum += static_cast<double>(x[t * in + k]) * RoundToHalf(w[static_cast<size_t>(j) * in + k]);
          }
          ref[t * out + j] = static_cast<float>(sum);
        }
      }
      const bool kernel = tokens <= kMaxKernelTokens;
      EXPECT_LE(NormalizedError(got, kernel ? ref : blas), 1e-5f) << out << "x" << in << " T=" << tokens;
      EXPECT_LE(NormalizedError(got, blas), 2e-3f) << out << "x" << in << " T=" << tokens;
    }
  }
}

TEST(BertMatMulTest, PacksOnlyWholePanels) {
  std::vector<float> w(40 * 5, 1.0f), x(5, 1.0f), bias(40, 0.5f), y(40);
  const PackedWeight packed(w.data(), 40, 5);  // 40 is not a multiple of 16
  EXPECT_TRUE(packed.panels().empty());
  MatMulBias(packed, x.data(), 1, bias.data(), y.data());
  for (float v : y) EXPECT_EQ(v, 5.5f);
}

}  // namespace
}  // namespace saola::cache
