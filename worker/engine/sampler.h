// Picks the next token of one request from its row of logits.
//
// The pipeline, in the order vLLM and llama.cpp apply it:
//
//   raw logits -> penalties -> greedy? -> temperature -> top-k -> top-p -> min-p -> draw
//                               |
//                               +-> argmax
//
// * Penalties: repetition (HF / llama.cpp: over prompt and generated tokens, a positive logit is
//   divided by the penalty, a negative one multiplied), then frequency (minus frequency * count)
//   and presence (minus presence when count > 0), both over generated tokens only (OpenAI). Counts
//   live in a hash map keyed by token, so a step touches only the tokens seen, not the vocab
//   (the row itself is copied once into a reused buffer, since the logits are const).
// * Greedy (temperature 0, or top_k 1): the largest logit, lowest id on ties (llama.cpp's greedy
//   sampler); without penalties, a vectorized max and a scan for its first index, no allocation.
// * Otherwise NaN and -inf logits have probability 0 and +inf is taken as the largest float.
//   Top-k keeps the k largest (ties to the lower id): one pass with a heap of k for k <= 256,
//   nth_element beyond; only those k are then exponentiated. Without top-k the weights
//   exp((l - max) / T) are computed for the whole vocab, four lanes at a time. Top-p keeps the
//   smallest set of most likely tokens whose mass reaches top_p: over sorted top-k candidates a
//   prefix; over the whole vocab, in linear time, by bucketing the weights on their float bits
//   (9%-wide buckets), keeping every bucket above the one where the mass is reached and sorting
//   only that one. Min-p then drops tokens with p < min_p * p_max. The draw is from the
//   renormalized survivors with the request's own std::mt19937_64 seeded from
//   SamplingParams::seed (one draw per non-greedy step), so the same seed gives the same tokens
//   whatever else shares the batch (on the same build and CPU architecture). Top-k candidates
//   are walked in (logit desc, id asc) order, which a backend sampler reproduces
//   (kernels/row_sampling.h, NextRowSampling).
// * Log-probabilities (logprobs / top_logprobs) are those of the model's raw distribution, the
//   log-softmax of the logits before penalties, temperature and truncation, as vLLM reports by
//   default: they describe the model, not the sampling settings. A token whose raw logit is -inf
//   (or NaN) reports -infinity; the API layer clamps it for JSON.
//
// Cost: the vocab-wide passes (max, exp, sums) run four lanes at a time; vocab-sized scratch
// buffers are per thread, shared by every Sampler that thread runs and reused across steps, so a
// step allocates nothing once warm and a request holds only its penalty counts. A Sampler
// belongs to one request and is used by one thread at a time.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "kernels/row_sampling.h"

namespace saola::engine {

struct SamplingParams {
  float temperature = 0.0f;         // 0: greedy (argmax, lowest id on ties); > 0 scales logits
  int32_t top_k = 0;                // 0: off; keep the k largest
  float top_p = 1.0f;               // (0, 1]; 1: off; nucleus
  float min_p = 0.0f;               // [0, 1]; 0: off; drop tokens with p < min_p * p_max
  uint64_t seed = 0;                // per-request generator seed
  float repetition_penalty = 1.0f;  // > 0; 1: off; over prompt + generated tokens
  float presence_penalty = 0.0f;    // [-2, 2]; 0: off; over generated tokens
  float frequency_penalty = 0.0f;   // [-2, 2]; 0: off; over generated tokens
  int32_t top_logprobs = 0;         // 0..kMaxTopLogprobs most likely tokens to report
  bool logprobs = false;            // report the chosen token's log-probability

  static constexpr int32_t kMaxTopLogprobs = 20;
};

/// INVALID_ARGUMENT naming the first field outside the ranges above (finite values only;
/// temperature >= 0, top_k >= 0). The Sampler itself never fails: out-of-range values fall to the
/// nearest meaning (top_k < 0 is off, top_p <= 0 keeps one token, NaN temperature is greedy), so
/// validate at the API edge.
absl::Status ValidateSamplingParams(const SamplingParams& params);

struct SampledToken {
  int32_t id = 0;
  /// log p(id) under the raw distribution; set when SamplingParams::logprobs or top_logprobs > 0.
  float logprob = 0;
  /// The top_logprobs most likely tokens under the raw distribution, as (id, logprob), most likely
  /// first, lower id first among equals.
  std::vector<std::pair<int32_t, float>> top = {};
};

class Sampler {
 public:
  /// `prompt` feeds the repetition penalty (it is not kept when that penalty is off).
  explicit Sampler(const SamplingParams& params, std::span<const int32_t> prompt = {});

  /// The next token for this row of logits (one per vocab entry, not empty). Does not record the
  /// token: call Accept with the token actually appended (it may differ, e.g. under speculation).
  SampledToken Sample(std::span<const float> logits);

  /// Records a generated token for the penalties.
  void Accept(int32_t token);

  /// Whether a backend may pick this request's tokens from the raw logits (Backend::SampleRows)
  /// with the same result as Sample: not with penalties (they need this request's token counts)
  /// or log-probabilities (they need the whole row on the host).
  bool SamplesOnBackend() const {
    return !penalize_ && !params_.logprobs && params_.top_logprobs == 0;
  }

  /// This step's settings for a backend that samples, taking the step's draw from this request's
  /// generator when the step is not greedy, exactly as Sample does (so steps sampled here and on
  /// a backend can alternate).
  kernels::RowSampling NextRowSampling();

  const SamplingParams& params() const { return params_; }

  /// The token `row` picks from `logits` (not empty), penalties already applied: the rule of
  /// kernels/row_sampling.h on the host, as Sample runs it and a backend sampler must match.
  static int32_t SampleRow(const kernels::RowSampling& row, std::span<const float> logits);

  /// Index of the largest logit, lowest index among equals; NaN is ignored; 0 when no logit is
  /// above -inf (or the row is empty).
  static int32_t Argmax(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  bool penalize_ = false;
  /// Generated-token counts; prompt tokens appear with count 0 when the repetition penalty is on.
  absl::flat_hash_map<int32_t, int32_t> counts_;
};

}  // namespace saola::engine
