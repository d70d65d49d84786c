#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace saola::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> RandomLogits(size_t n, uint32_t seed, float lo = -8.0f, float hi = 8.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> logits(n);
  for (float& l : logits) l = dist(rng);
  return logits;
}

// Logits whose softmax is exactly `probs` (up to rounding).
std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (const double p : probs) logits.push_back(p > 0 ? static_cast<float>(std::log(p)) : -kInf);
  return logits;
}

// Reference log-softmax in double.
std::vector<double> LogSoftmax(const std::vector<float>& logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (const float l : logits) sum += std::exp(l - max);
  std::vector<double> out;
  for (const float l : logits) out.push_back(l - max - std::log(sum));
  return out;
}

int32_t SampleOnce(const SamplingParams& params, const std::vector<float>& logits) {
  Sampler sampler(params);
  return sampler.Sample(logits).id;
}

// Draws `num_draws` tokens and checks the counts against `expected` (probabilities summing to 1):
// tokens with probability 0 must never appear, the others pass a chi-square bound. The seed is
// fixed, so the check is deterministic; the bound is loose enough for any seed to pass.
void ExpectFrequencies(const SamplingParams& params, const std::vector<float>& logits,
                       const std::vector<double>& expected, int num_draws) {
  Sampler sampler(params);
  std::vector<int> counts(logits.size());
  for (int i = 0; i < num_draws; ++i) {
    const int32_t id = sampler.Sample(logits).id;
    ASSERT_GE(id, 0);
    ASSERT_LT(id, static_cast<int32_t>(logits.size()));
    ++counts[id];
  }
  double chi2 = 0;
  int cells = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (expected[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " should never be drawn";
      continue;
    }
    const double e = expected[i] * num_draws;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
    ++cells;
  }
  // Mean df = cells - 1, standard deviation sqrt(2 df): allow 6 deviations plus a margin.
  const double df = std::max(cells - 1, 1);
  EXPECT_LT(chi2, df + 6 * std::sqrt(2 * df) + 10) << "cells " << cells;
}

std::vector<double> Normalized(std::vector<double> w) {
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  for (double& x : w) x /= sum;
  return w;
}

TEST(SamplerTest, ArgmaxPicksTheLargest) {
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{1, 5, 3}), 1);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{-3, -1, -2}), 1);
  // Rows long enough for the eight-lane pass, with the maximum in the lanes and in the tail.
  for (const size_t n : {7u, 8u, 9u, 64u, 1001u, 49152u}) {
    for (uint32_t seed = 0; seed < 5; ++seed) {
      const std::vector<float> logits = RandomLogits(n, seed);
      const int32_t expected =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      EXPECT_EQ(Sampler::Argmax(logits), expected) << n << " " << seed;
    }
  }
}

TEST(SamplerTest, ArgmaxTiesGoToTheLowestId) {
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{1, 2, 2, 2}), 1);
  std::vector<float> logits(100, 0.5f);
  logits[37] = logits[90] = 1.5f;
  EXPECT_EQ(Sampler::Argmax(logits), 37);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{0.0f, -0.0f}), 0);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{-0.0f, 0.0f}), 0);
}

TEST(SamplerTest, ArgmaxSurvivesNaNAndInfinities) {
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{kNaN, 1, 2}), 2);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{kNaN, kNaN}), 0);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{-kInf, -kInf, -kInf}), 0);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{-kInf, kNaN, -kInf, 3}), 3);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{1, kInf, 2, kInf}), 1);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{}), 0);
  std::vector<float> long_row(50, kNaN);
  long_row[45] = -1;
  EXPECT_EQ(Sampler::Argmax(long_row), 45);
}

TEST(SamplerTest, GreedyIsArgmaxWithTiesToTheLowestId) {
  Sampler sampler(SamplingParams{});
  const std::vector<float> logits{0.1f, 3.0f, -2.0f, 3.0f};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(sampler.Sample(logits).id, 1);
  for (uint32_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> row = RandomLogits(49152, seed);
    EXPECT_EQ(sampler.Sample(row).id, Sampler::Argmax(row));
  }
}

TEST(SamplerTest, TopKOneIsGreedyAtAnyTemperature) {
  for (const float temperature : {0.1f, 1.0f, 2.0f, 50.0f}) {
    SamplingParams params;
    params.temperature = temperature;
    params.top_k = 1;
    for (uint64_t seed = 0; seed < 5; ++seed) {
      params.seed = seed;
      Sampler sampler(params);
      for (uint32_t row = 0; row < 5; ++row) {
        const std::vector<float> logits = RandomLogits(2000, row, -1.0f, 1.0f);
        EXPECT_EQ(sampler.Sample(logits).id, Sampler::Argmax(logits));
      }
    }
  }
  // Ties at the top still go to the lowest id.
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 1;
  EXPECT_EQ(SampleOnce(params, {0, 4, 1, 4}), 1);
}

TEST(SamplerTest, TinyTopPIsArgmax) {
  SamplingParams params;
  params.temperature = 1.5f;
  params.top_p = 1e-6f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    params.seed = seed;
    const std::vector<float> logits = RandomLogits(5000, static_cast<uint32_t>(seed), -1.0f, 1.0f);
    EXPECT_EQ(SampleOnce(params, logits), Sampler::Argmax(logits));
  }
  // With top-k as well (the sorted path).
  params.top_k = 50;
  const std::vector<float> logits = RandomLogits(5000, 99, -1.0f, 1.0f);
  EXPECT_EQ(SampleOnce(params, logits), Sampler::Argmax(logits));
}

TEST(SamplerTest, MinPOneIsArgmax) {
  SamplingParams params;
  params.temperature = 3.0f;
  params.min_p = 1.0f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    params.seed = seed;
    const std::vector<float> logits = RandomLogits(5000, static_cast<uint32_t>(seed), -1.0f, 1.0f);
    EXPECT_EQ(SampleOnce(params, logits), Sampler::Argmax(logits));
  }
}

TEST(SamplerTest, SameSeedSameSequenceDifferentSeedsDiffer) {
  const std::vector<float> logits = RandomLogits(1000, 3, -1.0f, 1.0f);
  auto run = [&](uint64_t seed) {
    SamplingParams params;
    params.temperature = 1.0f;
    params.top_p = 0.95f;
    params.seed = seed;
    Sampler sampler(params);
    std::vector<int32_t> ids;
    for (int i = 0; i < 50; ++i) {
      ids.push_back(sampler.Sample(logits).id);
      sampler.Accept(ids.back());
    }
    return ids;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(SamplerTest, OtherRequestsDoNotChangeASeededSequence) {
  // Each request owns its generator: interleaving another sampler (a batch) changes nothing.
  const std::vector<float> logits = RandomLogits(500, 5, -1.0f, 1.0f);
  SamplingParams params;
  params.temperature = 0.8f;
  params.seed = 42;
  Sampler alone(params);
  std::vector<int32_t> expected;
  for (int i = 0; i < 30; ++i) expected.push_back(alone.Sample(logits).id);

  Sampler mine(params);
  SamplingParams other_params = params;
  other_params.seed = 1;
  Sampler other(other_params);
  std::vector<int32_t> got;
  for (int i = 0; i < 30; ++i) {
    other.Sample(logits);
    got.push_back(mine.Sample(logits).id);
    other.Sample(logits);
  }
  EXPECT_EQ(got, expected);
}

// A backend that samples (kernels/row_sampling.h) gets NextRowSampling's settings and applies
// SampleRow's rule; steps sampled that way and steps sampled by Sample can alternate within one
// request and give the tokens Sample alone gives, for every kind of truncation.
TEST(SamplerTest, StepsSampledElsewhereKeepTheSeededSequence) {
  const std::vector<float> logits = RandomLogits(3000, 9, -3.0f, 3.0f);
  struct Case {
    const char* name;
    SamplingParams params;
  };
  std::vector<Case> cases;
  const auto add = [&](const char* name, float t, int32_t k, float p, float min_p) {
    SamplingParams params;
    params.temperature = t;
    params.top_k = k;
    params.top_p = p;
    params.min_p = min_p;
    params.seed = 11;
    cases.push_back({name, params});
  };
  add("greedy", 0.0f, 0, 1.0f, 0.0f);
  add("dense", 1.0f, 0, 1.0f, 0.0f);
  add("top-k", 0.7f, 40, 1.0f, 0.0f);
  add("top-k heap path beyond", 0.7f, 400, 1.0f, 0.0f);
  add("top-p", 1.3f, 0, 0.9f, 0.0f);
  add("top-k top-p min-p", 0.9f, 60, 0.8f, 0.05f);
  add("min-p", 1.0f, 0, 1.0f, 0.2f);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Sampler alone(c.params);
    Sampler split(c.params);
    ASSERT_TRUE(split.SamplesOnBackend());
    for (int step = 0; step < 40; ++step) {
      const int32_t expected = alone.Sample(logits).id;
      const int32_t got = step % 2 == 0 ? Sampler::SampleRow(split.NextRowSampling(), logits)
                                        : split.Sample(logits).id;
      ASSERT_EQ(got, expected) << "step " << step;
    }
  }
}

TEST(SamplerTest, PenaltiesAndLogprobsKeepSamplingOnTheHost) {
  SamplingParams params;
  EXPECT_TRUE(Sampler(params).SamplesOnBackend());
  params.repetition_penalty = 1.1f;
  EXPECT_FALSE(Sampler(params).SamplesOnBackend());
  params = {};
  params.frequency_penalty = 0.5f;
  EXPECT_FALSE(Sampler(params).SamplesOnBackend());
  params = {};
  params.logprobs = true;
  EXPECT_FALSE(Sampler(params).SamplesOnBackend());
  params = {};
  params.top_logprobs = 3;
  EXPECT_FALSE(Sampler(params).SamplesOnBackend());
}

// Top-k candidates are drawn in (logit desc, id asc) order, whatever order the scan met them in:
// with four equally likely candidates, draws in the first, second, third and fourth quarter of
// [0, 1) pick them in that order.
TEST(SamplerTest, TopKDrawsWalkCandidatesBestFirst) {
  std::vector<float> logits(1000, -5.0f);
  logits[700] = 2.0f;
  logits[3] = 2.0f;
  logits[500] = 2.0f;
  logits[42] = 2.0f;
  const std::vector<int32_t> order = {3, 42, 500, 700};
  for (int quarter = 0; quarter < 4; ++quarter) {
    kernels::RowSampling row{.temperature = 1.0f, .top_k = 4};
    row.uniform = 0.25 * quarter + 0.125;
    EXPECT_EQ(Sampler::SampleRow(row, logits), order[quarter]) << quarter;
  }
}

const std::vector<double> kProbs = {0.1, 0.2, 0.3, 0.4, 0.0};

TEST(SamplerTest, TemperatureOneFollowsTheDistribution) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = 11;
  ExpectFrequencies(params, LogitsOf(kProbs), kProbs, 100000);
}

TEST(SamplerTest, TemperatureSharpensAndFlattens) {
  // p^(1/T), renormalized.
  for (const float temperature : {0.5f, 2.0f}) {
    SamplingParams params;
    params.temperature = temperature;
    params.seed = 12;
    std::vector<double> expected;
    for (const double p : kProbs) expected.push_back(std::pow(p, 1.0 / temperature));
    ExpectFrequencies(params, LogitsOf(kProbs), Normalized(expected), 100000);
  }
}

TEST(SamplerTest, TopKKeepsTheKLargest) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 2;
  params.seed = 13;
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0, 0.3, 0.4, 0}), 100000);
}

TEST(SamplerTest, TopKTiesKeepTheLowerIds) {
  std::vector<float> logits(14, 0.0f);  // 13 lies past the last group of four
  logits[3] = logits[5] = logits[9] = logits[13] = 2.0f;
  std::vector<double> expected(14, 0.0);
  expected[3] = expected[5] = 0.5;
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 2;
  params.seed = 20;
  ExpectFrequencies(params, logits, expected, 20000);
  params.top_k = 300;  // the nth_element path, on a row longer than k
  logits.assign(400, 0.0f);
  expected.assign(400, 0.0);
  for (size_t i = 0; i < 400; ++i) logits[i] = i % 2 == 0 ? 1.0f : -5.0f;
  for (size_t i = 0; i < 400; ++i) {
    if (i % 2 == 0 || i < 2 * (300 - 200)) expected[i] = std::exp(logits[i]);
  }
  ExpectFrequencies(params, logits, Normalized(expected), 100000);
}

TEST(SamplerTest, TopPKeepsTheSmallestPrefixReachingP) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = 14;
  params.top_p = 0.6f;  // 0.4 + 0.3 = 0.7 >= 0.6
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0, 0.3, 0.4, 0}), 100000);
  params.top_p = 0.75f;  // 0.7 < 0.75: 0.2 joins
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0.2, 0.3, 0.4, 0}), 100000);
}

TEST(SamplerTest, TopPAppliesAfterTopK) {
  // Top-3 renormalized: 0.444, 0.333, 0.222; 0.444 + 0.333 = 0.778 >= 0.7.
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 3;
  params.top_p = 0.7f;
  params.seed = 15;
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0, 0.3, 0.4, 0}), 100000);
}

TEST(SamplerTest, MinPDropsTokensBelowAFractionOfTheMax) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.min_p = 0.6f;  // threshold 0.24: 0.3 and 0.4 stay
  params.seed = 16;
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0, 0.3, 0.4, 0}), 100000);
  params.min_p = 0.5f;  // threshold 0.2: 0.2 stays too
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0.2, 0.3, 0.4, 0}), 100000);
}

TEST(SamplerTest, TopPOverAFlatVocabKeepsExactlyTheNucleus) {
  // 400 tokens of slowly decreasing probability: the nucleus ends inside a crowded weight bucket,
  // so the exact end has to come from sorting that bucket. The reference set comes from a full
  // sort of p^(1/T).
  const size_t n = 400;
  std::vector<double> probs(n);
  std::mt19937 rng(3);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i = 0; i < n; ++i) probs[order[i]] = 1.0 + 0.01 * static_cast<double>(i);
  probs = Normalized(probs);
  const std::vector<float> logits = LogitsOf(probs);

  for (const auto& [temperature, top_p] :
       std::vector<std::pair<float, float>>{{1.0f, 0.5f}, {0.7f, 0.9f}, {2.0f, 0.3f}}) {
    std::vector<double> tempered;
    for (const float l : logits) tempered.push_back(std::exp(static_cast<double>(l) / temperature));
    tempered = Normalized(tempered);
    std::vector<int> by_prob(n);
    std::iota(by_prob.begin(), by_prob.end(), 0);
    std::sort(by_prob.begin(), by_prob.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    std::vector<double> expected(n, 0.0);
    double mass = 0;
    for (const int id : by_prob) {
      expected[id] = tempered[id];
      mass += tempered[id];
      if (mass >= top_p) break;
    }
    const size_t kept =
        std::count_if(expected.begin(), expected.end(), [](double p) { return p > 0; });
    ASSERT_GT(kept, 50u);
    ASSERT_LT(kept, n);

    SamplingParams params;
    params.temperature = temperature;
    params.top_p = top_p;
    params.seed = 17;
    ExpectFrequencies(params, logits, Normalized(expected), 100000);
  }
}

TEST(SamplerTest, LargeTopKKeepsTheKLargest) {
  // k above the heap's limit takes the nth_element path.
  const size_t n = 600;
  const std::vector<float> logits = RandomLogits(n, 8, -2.0f, 2.0f);
  std::vector<int> by_logit(n);
  std::iota(by_logit.begin(), by_logit.end(), 0);
  std::sort(by_logit.begin(), by_logit.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  std::vector<double> expected(n, 0.0);
  for (size_t i = 0; i < 300; ++i) expected[by_logit[i]] = std::exp(logits[by_logit[i]]);
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 300;
  params.seed = 18;
  ExpectFrequencies(params, logits, Normalized(expected), 60000);
}

TEST(SamplerTest, MinPAppliesAfterTopP) {
  // Top-p 0.95 keeps 0.4, 0.3, 0.2 and 0.1 (0.9 < 0.95); min-p 0.6 then keeps 0.4 and 0.3.
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_p = 0.95f;
  params.min_p = 0.6f;
  params.seed = 19;
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0, 0.3, 0.4, 0}), 100000);
  params.top_k = 4;  // and over the sorted top-k candidates
  ExpectFrequencies(params, LogitsOf(kProbs), Normalized({0, 0, 0.3, 0.4, 0}), 100000);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams params;
  params.repetition_penalty = 1.1f;
  // Positive: 2.0 / 1.1 = 1.818 < 1.9, so token 0, seen in the prompt, loses.
  EXPECT_EQ(Sampler(params, std::vector<int32_t>{0}).Sample(std::vector<float>{2.0f, 1.9f}).id, 1);
  // 2.0 / 1.1 = 1.818 > 1.8: still wins.
  EXPECT_EQ(Sampler(params, std::vector<int32_t>{0}).Sample(std::vector<float>{2.0f, 1.8f}).id, 0);
  // Negative: -1.0 * 1.1 = -1.1 < -1.05.
  EXPECT_EQ(Sampler(params, std::vector<int32_t>{0}).Sample(std::vector<float>{-1.0f, -1.05f}).id,
            1);
  EXPECT_EQ(Sampler(params, std::vector<int32_t>{0}).Sample(std::vector<float>{-1.0f, -1.15f}).id,
            0);
  // A penalty below 1 rewards seen tokens.
  params.repetition_penalty = 0.5f;
  EXPECT_EQ(Sampler(params, std::vector<int32_t>{1}).Sample(std::vector<float>{3.0f, 2.0f}).id, 1);
  // Generated tokens count too, once each however often they appear.
  params.repetition_penalty = 1.1f;
  Sampler sampler(params);
  const std::vector<float> logits{2.0f, 1.9f};
  EXPECT_EQ(sampler.Sample(logits).id, 0);
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(logits).id, 1);
  sampler.Accept(0);
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(std::vector<float>{2.0f, 1.8f}).id, 0);  // 1.818, not 2 / 1.1^3
}

TEST(SamplerTest, PresencePenaltySubtractsOnceForGeneratedTokens) {
  SamplingParams params;
  params.presence_penalty = 0.3f;
  // The prompt does not count for presence.
  Sampler sampler(params, std::vector<int32_t>{0});
  const std::vector<float> logits{1.0f, 0.8f};
  EXPECT_EQ(sampler.Sample(logits).id, 0);
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(logits).id, 1);  // 0.7 < 0.8

  params.presence_penalty = 0.1f;
  Sampler once(params);
  once.Accept(0);
  once.Accept(0);
  once.Accept(0);
  EXPECT_EQ(once.Sample(logits).id, 0);  // 0.9 whatever the count

  params.presence_penalty = -0.5f;  // negative: encourages
  Sampler reward(params);
  reward.Accept(1);
  EXPECT_EQ(reward.Sample(logits).id, 1);
}

TEST(SamplerTest, FrequencyPenaltyScalesWithTheCount) {
  SamplingParams params;
  params.frequency_penalty = 0.1f;
  Sampler sampler(params, std::vector<int32_t>{0, 0, 0, 0});  // the prompt does not count
  const std::vector<float> logits{1.0f, 0.8f};
  EXPECT_EQ(sampler.Sample(logits).id, 0);
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(logits).id, 0);  // 0.9
  sampler.Accept(0);
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(logits).id, 1);  // 0.7
}

TEST(SamplerTest, PenaltiesCombineInOrder) {
  // Repetition first, then frequency and presence: (2.0 / 2) - 0.25 * 2 - 0.1 = 0.4 < 0.45.
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  params.frequency_penalty = 0.25f;
  params.presence_penalty = 0.1f;
  Sampler sampler(params);
  sampler.Accept(0);
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(std::vector<float>{2.0f, 0.45f}).id, 1);
  EXPECT_EQ(sampler.Sample(std::vector<float>{2.0f, 0.35f}).id, 0);
}

TEST(SamplerTest, PenaltiesIgnoreIdsOutsideTheVocab) {
  SamplingParams params;
  params.repetition_penalty = 1.3f;
  params.frequency_penalty = 1.0f;
  Sampler sampler(params, std::vector<int32_t>{-1, 5, 1000000});
  sampler.Accept(-7);
  sampler.Accept(99);
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.0f, 1.0f, 0.5f}).id, 1);
}

TEST(SamplerTest, APenalizedTokenIsNeverDrawn) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.presence_penalty = 2.0f;
  params.frequency_penalty = 2.0f;
  params.seed = 3;
  Sampler sampler(params);
  // Token 0 is likely at first; after 10 draws of it its logit is 5 - 2 - 20 = -17.
  const std::vector<float> logits{5.0f, 0.0f, 0.0f};
  for (int i = 0; i < 10; ++i) sampler.Accept(0);
  for (int i = 0; i < 1000; ++i) EXPECT_NE(sampler.Sample(logits).id, 0);
}

TEST(SamplerTest, LogprobIsTheRawLogSoftmax) {
  const std::vector<float> logits = RandomLogits(1000, 21);
  const std::vector<double> reference = LogSoftmax(logits);
  for (const float temperature : {0.0f, 0.7f}) {
    SamplingParams params;
    params.temperature = temperature;
    params.logprobs = true;
    params.repetition_penalty = 1.5f;  // penalties and temperature do not change the report
    params.top_k = 20;
    params.seed = 5;
    Sampler sampler(params, std::vector<int32_t>{1, 2, 3});
    for (int i = 0; i < 20; ++i) {
      const SampledToken t = sampler.Sample(logits);
      EXPECT_NEAR(t.logprob, reference[t.id], 1e-4) << t.id;
      EXPECT_TRUE(t.top.empty());
      sampler.Accept(t.id);
    }
  }
}

TEST(SamplerTest, TopLogprobsAreSortedAndCorrect) {
  std::vector<float> logits = RandomLogits(3000, 22);
  logits[100] = logits[200] = 20.0f;  // a tie at the top: the lower id first
  const std::vector<double> reference = LogSoftmax(logits);
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });

  SamplingParams params;
  params.top_logprobs = 5;
  Sampler sampler(params);
  const SampledToken t = sampler.Sample(logits);
  EXPECT_EQ(t.id, 100);
  EXPECT_NEAR(t.logprob, reference[100], 1e-5);
  ASSERT_EQ(t.top.size(), 5u);
  for (size_t i = 0; i < t.top.size(); ++i) {
    EXPECT_EQ(t.top[i].first, order[i]) << i;
    EXPECT_NEAR(t.top[i].second, reference[order[i]], 1e-4) << i;
    if (i > 0) {
      EXPECT_GE(t.top[i - 1].second, t.top[i].second);
    }
  }
  EXPECT_EQ(t.top[0].first, 100);
  EXPECT_EQ(t.top[1].first, 200);

  // More than the vocab: the whole vocab, and never more than 20.
  params.top_logprobs = 20;
  EXPECT_EQ(Sampler(params).Sample(std::vector<float>{1, 2, 3}).top.size(), 3u);
  params.top_logprobs = 50;
  EXPECT_EQ(Sampler(params).Sample(logits).top.size(), 20u);
}

TEST(SamplerTest, NonFiniteLogitsNeverCrash) {
  const std::vector<std::vector<float>> rows = {
      {kNaN, kNaN, kNaN},       {-kInf, -kInf},          {kNaN, 1.0f, -kInf, 2.0f},
      {kInf, 0.0f, kInf, kNaN}, {-kInf, kNaN, kInf, 0}, {3.0f, kNaN, -kInf, kInf},
  };
  for (const float temperature : {0.0f, 1.0f, 1e-30f}) {
    for (const int32_t top_k : {0, 2}) {
      for (const float top_p : {1.0f, 0.5f}) {
        for (const float min_p : {0.0f, 0.1f}) {
          SamplingParams params;
          params.temperature = temperature;
          params.top_k = top_k;
          params.top_p = top_p;
          params.min_p = min_p;
          params.top_logprobs = 3;
          params.repetition_penalty = 1.2f;
          params.frequency_penalty = 0.5f;
          Sampler sampler(params, std::vector<int32_t>{0, 1});
          sampler.Accept(1);
          for (const std::vector<float>& row : rows) {
            const SampledToken t = sampler.Sample(row);
            ASSERT_GE(t.id, 0);
            ASSERT_LT(t.id, static_cast<int32_t>(row.size()));
            EXPECT_FALSE(std::isnan(t.logprob));
            for (const auto& [id, lp] : t.top) EXPECT_FALSE(std::isnan(lp));
          }
        }
      }
    }
  }
  // All -inf: token 0 in every mode. +inf wins and reports a finite log-probability.
  SamplingParams params;
  params.temperature = 1.0f;
  params.logprobs = true;
  EXPECT_EQ(SampleOnce(params, {-kInf, -kInf, -kInf}), 0);
  EXPECT_EQ(SampleOnce(params, {kNaN, kNaN}), 0);
  Sampler sampler(params);
  for (int i = 0; i < 100; ++i) {
    const SampledToken t = sampler.Sample(std::vector<float>{1.0f, kInf, 50.0f, kNaN});
    EXPECT_EQ(t.id, 1);
    EXPECT_FLOAT_EQ(t.logprob, 0.0f);
  }
  const SampledToken two = sampler.Sample(std::vector<float>{kInf, kInf});
  EXPECT_NEAR(two.logprob, std::log(0.5), 1e-6);
}

TEST(SamplerTest, ValidateSamplingParams) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}).ok());
  auto invalid = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    return ValidateSamplingParams(p).code() == absl::StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.temperature = -0.1f; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.temperature = kNaN; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.top_k = -1; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.top_p = 0.0f; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.top_p = 1.01f; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.min_p = 1.5f; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.repetition_penalty = 0.0f; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.presence_penalty = 2.5f; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.frequency_penalty = -kInf; }));
  EXPECT_TRUE(invalid([](SamplingParams& p) { p.top_logprobs = 21; }));
  EXPECT_FALSE(invalid([](SamplingParams& p) {
    p.temperature = 1.3f;
    p.top_k = 40;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    p.repetition_penalty = 1.1f;
    p.presence_penalty = -2.0f;
    p.frequency_penalty = 2.0f;
    p.top_logprobs = 20;
  }));
  EXPECT_NE(ValidateSamplingParams(SamplingParams{.top_p = 0.0f}).message().find("top_p"),
            std::string::npos);
}

}  // namespace
}  // namespace saola::engine
