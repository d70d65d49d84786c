#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace saola::engine {

int32_t Sampler::Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

int32_t Sampler::Sample(std::span<const float> logits) {
  if (params_.temperature <= 0.0f) return Argmax(logits);
  const float max = logits[Argmax(logits)];
  std::vector<double> weights(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    weights[i] = std::exp((logits[i] - max) / params_.temperature);
  }
  std::discrete_distribution<int32_t> pick(weights.begin(), weights.end());
  return pick(rng_);
}

}  // namespace saola::engine
