// The CUDA sampler (kernels/cuda/sampling.h) against the engine's CPU sampler: for the same
// per-request draw (engine::Sampler::NextRowSampling, the CPU sampler's generator) the same token
// as the host's rule (Sampler::SampleRow, which Sampler::Sample runs), over random rows (vocab
// 49152 and small ones, rows full of ties, NaN / +-inf entries) and every combination of greedy,
// temperature, top-k, top-p and min-p, for many seeds. A frequency test checks the draws follow
// the softmax. Every test skips,
// saying so, when cudaGetDeviceCount reports no device.
#include "kernels/cuda/sampling.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/engine/sampler.h"

namespace saola::kernels::cuda {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

#define CUDA_ASSERT(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

bool HaveDevice() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

class CudaSamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveDevice()) {
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none): the CUDA sampler is "
                      "compiled but not run here";
    }
  }

  // One token per row of `logits` (rows * vocab floats) with per-row settings.
  void Sample(const std::vector<float>& logits, int64_t vocab, const std::vector<RowSampling>& rows,
              std::vector<int32_t>* out) {
    const int64_t n = static_cast<int64_t>(rows.size());
    float* d_logits = nullptr;
    RowSampling* d_params = nullptr;
    int32_t* d_out = nullptr;
    CUDA_ASSERT(cudaMalloc(&d_logits, logits.size() * sizeof(float)));
    CUDA_ASSERT(cudaMalloc(&d_params, rows.size() * sizeof(RowSampling)));
    CUDA_ASSERT(cudaMalloc(&d_out, rows.size() * sizeof(int32_t)));
    CUDA_ASSERT(cudaMemcpy(d_logits, logits.data(), logits.size() * sizeof(float),
                           cudaMemcpyHostToDevice));
    CUDA_ASSERT(cudaMemcpy(d_params, rows.data(), rows.size() * sizeof(RowSampling),
                           cudaMemcpyHostToDevice));
    CUDA_ASSERT(LaunchSample(d_logits, n, vocab, d_params, d_out, nullptr));
    out->assign(rows.size(), -1);
    CUDA_ASSERT(cudaMemcpy(out->data(), d_out, rows.size() * sizeof(int32_t),
                           cudaMemcpyDeviceToHost));
    cudaFree(d_logits);
    cudaFree(d_params);
    cudaFree(d_out);
  }
};

// Random rows: normal logits, every other row rounded to quarters (many ties), and a few NaN,
// -inf and +inf entries in the last row.
std::vector<float> RandomRows(int64_t rows, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < vocab; ++i) {
      float v = normal(rng);
      if (r % 2 == 1) v = std::round(v * 4) / 4;
      logits[r * vocab + i] = v;
    }
  }
  if (rows > 2 && vocab > 8) {
    float* last = &logits[(rows - 1) * vocab];
    last[1] = std::numeric_limits<float>::quiet_NaN();
    last[3] = -kInf;
    last[vocab / 2] = -kInf;
    if (rows > 3) logits[(rows - 2) * vocab + 5] = kInf;
  }
  return logits;
}

engine::SamplingParams Params(float temperature, int32_t top_k, float top_p, float min_p) {
  engine::SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

std::string Describe(const engine::SamplingParams& p) {
  return "temperature " + std::to_string(p.temperature) + " top_k " + std::to_string(p.top_k) +
         " top_p " + std::to_string(p.top_p) + " min_p " + std::to_string(p.min_p);
}

TEST_F(CudaSamplingTest, MatchesCpuSamplerForTheSameDraws) {
  const std::vector<engine::SamplingParams> settings = {
      Params(0.0f, 0, 1.0f, 0.0f),    // greedy
      Params(1.0f, 1, 1.0f, 0.0f),    // top_k 1 is greedy
      Params(1.0f, 0, 1.0f, 0.0f),    // the full softmax
      Params(0.7f, 0, 1.0f, 0.0f),
      Params(1.3f, 0, 1.0f, 0.0f),
      Params(1.0f, 0, 0.9f, 0.0f),    // top-p over the whole vocab (bucketed)
      Params(0.7f, 0, 0.5f, 0.0f),
      Params(1.0f, 0, 1.0f, 0.05f),   // min-p
      Params(1.3f, 0, 0.9f, 0.1f),
      Params(1.0f, 40, 1.0f, 0.0f),   // top-k only
      Params(0.7f, 40, 1.0f, 0.05f),
      Params(1.0f, 40, 0.9f, 0.0f),   // top-k + top-p
      Params(0.7f, 40, 0.5f, 0.0f),
      Params(1.3f, 40, 0.9f, 0.05f),
      Params(1.0f, 2000, 0.9f, 0.0f),  // a large k
      Params(1.0f, 0, 0.0f, 0.0f),     // top_p 0 keeps one token
  };
  constexpr int kSeeds = 48;
  for (const int64_t vocab : {49152, 1000, 37, 8}) {
    constexpr int64_t kRows = 6;
    const std::vector<float> logits = RandomRows(kRows, vocab, static_cast<uint64_t>(vocab));
    for (const engine::SamplingParams& base : settings) {
      for (uint64_t seed = 0; seed < kSeeds; ++seed) {
        engine::SamplingParams params = base;
        params.seed = seed * 7919 + static_cast<uint64_t>(vocab);
        // Each row is its own request's first step: its generator's first draw.
        std::vector<RowSampling> rows(kRows);
        for (RowSampling& row : rows) row = engine::Sampler(params).NextRowSampling();
        std::vector<int32_t> gpu;
        ASSERT_NO_FATAL_FAILURE(Sample(logits, vocab, rows, &gpu));
        for (int64_t r = 0; r < kRows; ++r) {
          const std::span<const float> row(&logits[r * vocab], static_cast<size_t>(vocab));
          const int32_t want = engine::Sampler::SampleRow(rows[r], row);
          ASSERT_EQ(want, engine::Sampler(params).Sample(row).id) << "SampleRow is Sample's rule";
          ASSERT_EQ(gpu[r], want) << "vocab " << vocab << " row " << r << " seed " << params.seed
                                  << " " << Describe(params);
        }
      }
    }
  }
}

TEST_F(CudaSamplingTest, FrequenciesFollowTheSoftmax) {
  constexpr int64_t kVocab = 16;
  constexpr int kDraws = 40000;
  std::vector<float> row(kVocab);
  for (int64_t i = 0; i < kVocab; ++i) row[i] = 0.3f * static_cast<float>(i % 7) - 0.1f * i;
  for (const float temperature : {0.7f, 1.0f, 1.3f}) {
    std::vector<float> logits;
    for (int d = 0; d < kDraws; ++d) logits.insert(logits.end(), row.begin(), row.end());
    std::vector<RowSampling> rows(kDraws);
    engine::Sampler sampler(Params(temperature, 0, 1.0f, 0.0f));  // one request, kDraws steps
    for (RowSampling& r : rows) r = sampler.NextRowSampling();
    std::vector<int32_t> tokens;
    ASSERT_NO_FATAL_FAILURE(Sample(logits, kVocab, rows, &tokens));
    std::vector<int> counts(kVocab, 0);
    for (const int32_t t : tokens) {
      ASSERT_GE(t, 0);
      ASSERT_LT(t, kVocab);
      ++counts[t];
    }
    const float max = *std::max_element(row.begin(), row.end());
    double z = 0;
    for (const float l : row) z += std::exp((l - max) / temperature);
    for (int64_t i = 0; i < kVocab; ++i) {
      const double p = std::exp((row[i] - max) / temperature) / z;
      const double freq = static_cast<double>(counts[i]) / kDraws;
      // Five standard deviations of a binomial frequency.
      EXPECT_NEAR(freq, p, 5 * std::sqrt(p * (1 - p) / kDraws) + 1e-4)
          << "token " << i << " temperature " << temperature;
    }
  }
}

}  // namespace
}  // namespace saola::kernels::cuda
