// Picks the next token from a row of logits. Greedy at temperature 0 (ties go to the lowest id,
// as llama.cpp's greedy sampler); otherwise softmax with temperature, drawn from a per-request
// generator seeded by the request, so the same seed gives the same text.
// (Top-k/top-p/min-p and penalties join with the serving core.)
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace saola::engine {

struct SamplingParams {
  float temperature = 0.0f;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  int32_t Sample(std::span<const float> logits);

  /// Index of the largest logit (lowest index among equals).
  static int32_t Argmax(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace saola::engine
