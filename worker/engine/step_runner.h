// The seam between the engine and the model: one call runs one step's batch. Locally that is
// LlamaModel::Forward; in a tensor-parallel shard group (worker/parallel/shard_group.h) rank 0 first
// broadcasts the batch to the other ranks, then runs its own shard, whose logits are the step's.
#pragma once

#include <span>

#include "absl/status/statusor.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"
#include "worker/model/step_batch.h"

namespace saola::engine {

class StepRunner {
 public:
  virtual ~StepRunner() = default;

  /// Runs `batch` against `kv` and returns what LlamaModel::Step does (valid until the next
  /// call). UNAVAILABLE or DEADLINE_EXCEEDED mean the runner is broken for good (a rank of the
  /// shard group died or hangs): callers fail all their work and stop. Any other error concerns
  /// this batch only.
  virtual absl::StatusOr<model::StepOutput> Run(const model::StepBatch& batch,
                                                model::KvCacheStorage& kv) = 0;

  /// Whether batches may ask for backend_sampling (LlamaModel::SamplesOnBackend).
  virtual bool SamplesOnBackend() const = 0;
};

/// The model on this process alone.
class LocalStepRunner : public StepRunner {
 public:
  explicit LocalStepRunner(model::LlamaModel& model) : model_(model) {}
  absl::StatusOr<model::StepOutput> Run(const model::StepBatch& batch,
                                        model::KvCacheStorage& kv) override {
    return model_.Step(batch, kv);
  }
  bool SamplesOnBackend() const override { return model_.SamplesOnBackend(); }

 private:
  model::LlamaModel& model_;
};

/// Whether a runner error means the runner can never run a step again.
inline bool IsRunnerBroken(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace saola::engine
