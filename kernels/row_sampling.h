// One row's sampling settings for a backend that samples next to its logits (Backend::SampleRows),
// so that only token ids, not [rows, vocab] logits, cross back to the host.
//
// The rule is the engine's CPU sampler (worker/engine/sampler.h) without penalties and
// log-probabilities, which need the request's history or the whole row on the host:
// greedy (argmax, lowest id on ties) when IsGreedy, else temperature, top-k, top-p, min-p and a
// draw that uses `uniform`. The randomness stays on the host: the request's generator (the CPU
// sampler's std::mt19937_64) gives one uniform per non-greedy step, whichever device samples, so
// a seed gives the same tokens on either.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define SAOLA_HOST_DEVICE __host__ __device__
#else
#define SAOLA_HOST_DEVICE
#endif

namespace saola::kernels {

struct RowSampling {
  float temperature = 0.0f;
  int32_t top_k = 0;     // <= 0: off
  float top_p = 1.0f;    // <= 0 keeps one token; >= 1: off
  float min_p = 0.0f;    // > 1 acts as 1
  /// In [0, 1): this step's draw; ignored (and not drawn) when IsGreedy.
  double uniform = 0.0;
};

/// True when the row takes the argmax and consumes no draw: temperature 0 or NaN, a temperature
/// so small that 1 / temperature overflows, or top_k == 1.
SAOLA_HOST_DEVICE inline bool IsGreedy(const RowSampling& row) {
  const float inv_t = 1.0f / row.temperature;
  return !(row.temperature > 0) || !(inv_t <= 3.402823466e38f) || row.top_k == 1;
}

}  // namespace saola::kernels
