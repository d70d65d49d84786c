// Zero-copy views of one rank's slice of a Llama-family model's weights inside an mmap'd GGUF.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/model/model_config.h"
#include "worker/model/shard.h"

namespace saola::model {

class GgufFile;

struct LayerWeights {
  const float* attn_norm = nullptr;  // [hidden]
  kernels::Weight q, k, v;           // row slices (this rank's heads)
  kernels::Weight o;                 // column slice
  const float* ffn_norm = nullptr;   // [hidden]
  kernels::Weight gate, up;          // row slices
  kernels::Weight down;              // column slice
};

struct LlamaWeights {
  ShardLayout shard;
  kernels::Weight token_embedding;   // [vocab, hidden]
  std::vector<LayerWeights> layers;
  const float* output_norm = nullptr;
  kernels::Weight output;            // [vocab, hidden]; token_embedding when tied
};

/// Finds and checks every tensor (shape, type, sliceability for spec) and builds the views.
/// INVALID_ARGUMENT naming the tensor when one is missing or misshapen; UNIMPLEMENTED for weight
/// types the kernels cannot multiply.
absl::StatusOr<LlamaWeights> LoadLlamaWeights(const GgufFile& file, const ModelConfig& config,
                                              const ShardSpec& spec);

/// The heads and FFN columns `spec` owns; INVALID_ARGUMENT when the model does not split N ways.
absl::StatusOr<ShardLayout> ComputeShardLayout(const ModelConfig& config, const ShardSpec& spec);

}  // namespace saola::model
