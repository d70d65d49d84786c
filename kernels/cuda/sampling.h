// Top-k / top-p / min-p sampling with a per-request seed on CUDA: one token id per row of logits,
// the same token the engine's CPU sampler (worker/engine/sampler.h) picks for the same draw.
//
// Where the randomness comes from: the HOST. Each request's engine::Sampler keeps the CPU
// sampler's generator (std::mt19937_64 seeded with SamplingParams::seed, one 53-bit uniform per
// non-greedy step) and passes this step's draw in RowSampling::uniform (NextRowSampling). Why not a device RNG:
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
// The host reference of this rule is engine::Sampler::SampleRow; the CPU sorts its top-k
// candidates the same way, so the two agree token for token (cuda_sampling_test).
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

#include <cuda_runtime_api.h>

#include "kernels/row_sampling.h"

namespace saola::kernels::cuda {

using kernels::IsGreedy;
using kernels::RowSampling;

/// Enqueues sampling of `rows` rows of `vocab` logits (device memory, row-major) on `stream`;
/// `params` (device memory) holds one RowSampling per row, `out` (device memory) receives one
/// token id per row. vocab must be below 2^31. Returns the launch's error (cudaGetLastError).
cudaError_t LaunchSample(const float* logits, int64_t rows, int64_t vocab,
                         const RowSampling* params, int32_t* out, cudaStream_t stream);

}  // namespace saola::kernels::cuda
