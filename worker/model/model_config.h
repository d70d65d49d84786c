// Hyper-parameters of a Llama-family model, read from GGUF metadata and validated up front so the
// forward pass can trust them.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace saola::model {

class GgufFile;

struct ModelConfig {
  std::string architecture;  // general.architecture ("llama")
  std::string name;          // general.name, for the model card
  int32_t num_layers = 0;
  int32_t hidden_dim = 0;    // embedding_length
  int32_t ffn_dim = 0;       // feed_forward_length
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;      // hidden_dim / num_heads
  int32_t vocab_size = 0;
  int32_t context_length = 0;
  float rms_norm_eps = 1e-5f;
  kernels::RopeParams rope;
};

/// Reads and checks the hyper-parameters: INVALID_ARGUMENT naming the key for missing or
/// inconsistent values, UNIMPLEMENTED for architectures other than the Llama family.
absl::StatusOr<ModelConfig> LoadModelConfig(const GgufFile& file);

}  // namespace saola::model
