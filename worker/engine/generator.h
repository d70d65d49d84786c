// One completion at a time on one model: chunked prefill of the prompt, then token-by-token decode
// into a private KV cache. The CLI's `generate` and `bench` use it; the serving core replaces it
// with the scheduler and the shared block pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/engine/sampler.h"
#include "worker/engine/step_runner.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"

namespace saola::engine {

struct GenerateOptions {
  int32_t max_tokens = 128;
  bool ignore_eos = false;
  SamplingParams sampling;
  /// Called with each generated token as soon as it is sampled; returning false stops.
  std::function<bool(int32_t)> on_token;
  /// True for tokens that end generation (unless ignore_eos).
  std::function<bool(int32_t)> is_end;
};

struct GenerateResult {
  std::vector<int32_t> ids;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first to the last generated token
  int32_t decode_steps = 0;   // tokens produced by decode steps (all but the first)
  /// The top logits of each generated step (for parity checks), when requested.
  std::vector<std::vector<std::pair<int32_t, float>>> top_logits;
};

class Generator {
 public:
  static constexpr int32_t kBlockSize = 16;

  /// A generator whose KV cache holds `max_context` tokens. Steps run on `runner` (e.g. a
  /// shard group, which must outlive the generator), or on `model` alone when it is null.
  static absl::StatusOr<std::unique_ptr<Generator>> Create(model::LlamaModel& model,
                                                           kernels::Backend& backend,
                                                           int32_t max_context,
                                                           StepRunner* runner = nullptr);

  /// Runs prompt + up to max_tokens generated tokens. INVALID_ARGUMENT when they do not fit the
  /// cache or the prompt is empty. `top_k_logits` > 0 records that many top logits per step.
  absl::StatusOr<GenerateResult> Generate(const std::vector<int32_t>& prompt,
                                          const GenerateOptions& options, int top_k_logits = 0);

 private:
  Generator(model::LlamaModel& model, std::unique_ptr<model::KvCacheStorage> kv,
            StepRunner* runner);

  model::LlamaModel& model_;
  LocalStepRunner local_runner_;
  StepRunner& runner_;
  std::unique_ptr<model::KvCacheStorage> kv_;
  std::vector<int32_t> block_table_;
};

}  // namespace saola::engine
