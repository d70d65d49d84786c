// Top-k / top-p / min-p sampling with a per-request seed on CUDA: one token id per row of logits,
// the same token the engine's CPU sampler (worker/engine/sampler.h) picks for the same draw.
//
// Where the randomness comes from: the HOST. Each request keeps a RequestRng (the CPU sampler's
// generator: std::mt19937_64 seeded with SamplingParams::seed, one 53-bit uniform per
// non-greedy step) and passes this step's draw in RowSampling::uniform. Why not a device RNG:
// matching the CPU stream token for token needs the same mt19937_64 sequence, whose 2.5 KB
// state per request advances sequentially and only on non-greedy steps; a counter-based device
// RNG (Philox(seed, step)) would be cheaper on the device but would give other text than the CPU
// for the same seed. The host cost is a few ns per row and rows * 8 bytes more to copy per step.
//
// The rule (as the CPU; penalties are applied to the logits before this):
//   greedy (temperature <= 0 or NaN, 1 / temperature overflows, or top_k == 1): argmax, lowest id
//     on ties, NaN ignored.
//   NaN -> -inf (probability 0), +inf -> the largest float. No finite logit: token 0.
//   top-k (0 < k < vocab): the k largest finite logits, ties to the lower id, ordered by
//     (logit desc, id asc); weights exp((l - max) / T) (correctly rounded expf, as glibc's);
//     top-p keeps the shortest prefix of that order whose mass reaches top_p * total.
//   no top-k: weights by the CPU's vectorized Cephes exp, reproduced bit for bit (no FMA);
//     top-p buckets the weights by float bits (exponent + 3 mantissa bits), keeps every bucket
//     above the one where the mass reaches top_p * total, then the shortest prefix of that
//     bucket in (weight desc, id asc) order; the nucleus is ordered as the CPU's: the tokens of
//     the buckets above in id order, then the boundary tokens best first.
//   min-p: drops weights below min_p * (largest kept weight).
//   draw: the first candidate, in the order above (dense rows: id order), whose cumulative weight
//     exceeds uniform * (kept mass).
// One known difference: a top-k row WITHOUT top-p is drawn in (logit desc, id asc) order here,
// while the CPU draws over its selection heap's layout (an order that depends on the whole scan,
// not on the values alone). The candidate set and probabilities are the same, the token for a
// given draw may differ; sorting those candidates on the CPU (k log k, k <= 256 on that path)
// would make the two agree token for token.
//
// Cost and layout: one 512-thread block per row, everything in shared memory (14.1 KB), no
// full sort of the vocab. Ordered selections (the k-th logit, the top-p boundary, the drawn
// token) are a radix select over the 32-bit order-preserving key, 8 bits per pass: four passes
// over the row, each a shared histogram of counts or masses, then one pass over the tokens that
// share the selected key, in id order. A top-k + top-p row reads the row about 15 times (it stays
// in L2: 196 KB for a vocab of 49152); a dense row reads it 3 to 12 times. Sums are in double
// with shared-memory atomics, so they differ from the CPU's sequential sums by rounding only:
// the token can differ only when the draw falls within about 1e-12 of a cumulative boundary.
#pragma once

#include <cstdint>
#include <random>

#include <cuda_runtime_api.h>

#ifdef __CUDACC__
#define SAOLA_HOST_DEVICE __host__ __device__
#else
#define SAOLA_HOST_DEVICE
#endif

namespace saola::kernels::cuda {

/// One row's settings: engine::SamplingParams' temperature, top_k, top_p and min_p (out-of-range
/// values fall as on the CPU: top_k <= 0 is off, top_p <= 0 keeps one token, min_p > 1 is 1),
/// and this step's draw.
struct RowSampling {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  /// In [0, 1): RequestRng::Next() for a non-greedy row; ignored (and not to be drawn) when greedy.
  double uniform = 0.0;
};

/// True when the row takes the argmax and consumes no draw.
SAOLA_HOST_DEVICE inline bool IsGreedy(const RowSampling& row) {
  const float inv_t = 1.0f / row.temperature;
  return !(row.temperature > 0) || !(inv_t <= 3.402823466e38f) || row.top_k == 1;
}

/// A request's generator: the CPU sampler's (std::mt19937_64 from the seed, a uniform from the
/// top 53 bits of each output), so the i-th non-greedy step of a request gets the same draw on
/// either device.
class RequestRng {
 public:
  explicit RequestRng(uint64_t seed) : rng_(seed) {}

  /// The next draw in [0, 1).
  double Next() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 rng_;
};

/// Enqueues sampling of `rows` rows of `vocab` logits (device memory, row-major) on `stream`;
/// `params` (device memory) holds one RowSampling per row, `out` (device memory) receives one
/// token id per row. vocab must be below 2^31. Returns the launch's error (cudaGetLastError).
cudaError_t LaunchSample(const float* logits, int64_t rows, int64_t vocab,
                         const RowSampling* params, int32_t* out, cudaStream_t stream);

}  // namespace saola::kernels::cuda
