// The Llama-family transformer: one step over a batch of sequences of different lengths, reading
// and writing a paged KV cache, through a kernels::Backend.
//
// Per layer:  h = RmsNorm(x);  q,k,v = h·Wq,Wk,Wv;  RoPE(q,k);  store k,v;  a = Attention(q, KV)
//             x += a·Wo;  h = RmsNorm(x);  x += (silu(h·Wg) * h·Wu)·Wd
// The residual add and the next norm are fused. With tensor parallelism the two row-split
// products (Wo, Wd) are summed across ranks by the Communicator before the residual add.
//
// Memory: weights are placed once at load (weight_placement.h); activations and the KV cache come
// from the backend's Allocate; the rows that need logits are gathered in backend memory and only
// their logits reach the host (through Backend::CopyToHost when the backend's memory is not the
// host's). So the same model runs on the CPU and on a device backend.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_weights.h"
#include "worker/model/model_config.h"
#include "worker/model/shard.h"
#include "worker/model/step_batch.h"

namespace saola::model {

class GgufFile;

/// What a step returns, in host memory, valid until the next step.
struct StepOutput {
  /// [rows, vocab]: the logit rows of the sequences without backend_sampling, in batch order.
  std::span<const float> logits;
  /// One token per sequence with backend_sampling, in batch order.
  std::span<const int32_t> sampled;
};

class LlamaModel {
 public:
  struct Options {
    int32_t max_batch_tokens = 512;  // most new tokens in one step (sizes the activations)
    ShardSpec shard;
    Communicator* communicator = nullptr;  // required when shard.world_size > 1
  };

  /// Reads the config and this rank's weights from `file`, which must outlive the model, and
  /// places them for `backend` (a device backend gets its own copy of this rank's slice).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const GgufFile& file,
                                                          kernels::Backend& backend,
                                                          const Options& options);

  const ModelConfig& config() const { return config_; }
  const ShardLayout& shard() const { return weights_.shard; }
  int32_t max_batch_tokens() const { return options_.max_batch_tokens; }

  /// The KV shape this rank needs for `num_blocks` blocks of `block_size` slots.
  KvCacheStorage::Shape KvShape(int32_t num_blocks, int32_t block_size) const;

  /// Runs one step. The logits of the rows the backend did not sample come back to host memory
  /// whatever the backend. INVALID_ARGUMENT for a malformed batch (nothing is written to the
  /// cache then), including backend_sampling on a backend that does not sample.
  absl::StatusOr<StepOutput> Step(const StepBatch& batch, KvCacheStorage& kv);

  /// Step for a batch without backend_sampling: the logits [sum of num_logits, vocab].
  absl::StatusOr<std::span<const float>> Forward(const StepBatch& batch, KvCacheStorage& kv);

  /// Whether StepBatch::backend_sampling may be used (Backend::SamplesRows).
  bool SamplesOnBackend() const { return backend_.SamplesRows(); }

 private:
  LlamaModel(kernels::Backend& backend, ModelConfig config, LlamaWeights weights,
             std::vector<kernels::Buffer> weight_memory, Options options);
  absl::Status Validate(const StepBatch& batch, const KvCacheStorage& kv) const;
  absl::Status RunLayer(int layer, int64_t n, KvCacheStorage& kv, const float* next_norm);
  absl::Status AllReduce(float* data, size_t count);

  kernels::Backend& backend_;
  ModelConfig config_;
  LlamaWeights weights_;                        // placed for backend_
  std::vector<kernels::Buffer> weight_memory_;  // what holds the placed weights (device backends)
  Options options_;

  // Step inputs derived from the batch.
  std::vector<int32_t> positions_;
  std::vector<int32_t> slots_;
  std::vector<kernels::AttentionSeq> attention_seqs_;
  std::vector<int32_t> logit_rows_;  // backend-sampled rows first, then the host rows
  std::vector<kernels::RowSampling> row_sampling_;
  std::vector<int32_t> host_rows_;
  std::vector<int32_t> sampled_;

  // Activations, sized for max_batch_tokens rows.
  kernels::Buffer x_, h_, q_, k_, v_, attn_, proj_, gate_, up_;
  kernels::Buffer logits_;
  size_t logits_capacity_ = 0;      // rows
  std::vector<float> host_logits_;  // the host copy, when the backend's memory is not the host's
};

}  // namespace saola::model
