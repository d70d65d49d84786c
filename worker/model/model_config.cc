#include "worker/model/model_config.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/gguf.h"

namespace saola::model {
namespace {

// Architectures whose GGUF tensors and keys follow the Llama layout (RMSNorm, RoPE, GQA, SwiGLU).
bool IsLlamaFamily(const std::string& arch) {
  return arch == "llama" || arch == "mistral" || arch == "granite" || arch == "smollm";
}

absl::StatusOr<int32_t> ReadPositive(const GgufFile& file, const std::string& key) {
  ASSIGN_OR_RETURN(uint64_t value, file.GetUint(key));
  if (value == 0 || value > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat("model: ", key, " = ", value, " is out of range"));
  }
  return static_cast<int32_t>(value);
}

}  // namespace

absl::StatusOr<ModelConfig> LoadModelConfig(const GgufFile& file) {
  ModelConfig c;
  ASSIGN_OR_RETURN(c.architecture, file.GetString("general.architecture"));
  if (!IsLlamaFamily(c.architecture)) {
    return absl::UnimplementedError(
        absl::StrCat("model: unsupported architecture '", c.architecture, "' (Llama family only)"));
  }
  if (auto name = file.GetString("general.name"); name.ok()) c.name = *name;
  const std::string p = c.architecture + ".";
  ASSIGN_OR_RETURN(c.num_layers, ReadPositive(file, p + "block_count"));
  ASSIGN_OR_RETURN(c.hidden_dim, ReadPositive(file, p + "embedding_length"));
  ASSIGN_OR_RETURN(c.ffn_dim, ReadPositive(file, p + "feed_forward_length"));
  ASSIGN_OR_RETURN(c.num_heads, ReadPositive(file, p + "attention.head_count"));
  c.num_kv_heads = c.num_heads;
  if (file.Find(p + "attention.head_count_kv") != nullptr) {
    ASSIGN_OR_RETURN(c.num_kv_heads, ReadPositive(file, p + "attention.head_count_kv"));
  }
  ASSIGN_OR_RETURN(c.context_length, ReadPositive(file, p + "context_length"));
  if (c.hidden_dim % c.num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model: ", p, "embedding_length ", c.hidden_dim, " is not a multiple of head_count ",
        c.num_heads));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model: ", p, "attention.head_count ", c.num_heads,
                                                   " is not a multiple of head_count_kv ",
                                                   c.num_kv_heads));
  }
  c.head_dim = c.hidden_dim / c.num_heads;
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model: head dimension ", c.head_dim, " is odd"));
  }
  if (file.Find(p + "attention.layer_norm_rms_epsilon") != nullptr) {
    ASSIGN_OR_RETURN(double eps, file.GetFloat(p + "attention.layer_norm_rms_epsilon"));
    c.rms_norm_eps = static_cast<float>(eps);
    if (!std::isfinite(c.rms_norm_eps) || c.rms_norm_eps < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model: ", p, "attention.layer_norm_rms_epsilon must be finite and >= 0"));
    }
  }
  c.rope.mode = kernels::RopeMode::kNorm;  // GGUF stores Llama Q/K permuted for adjacent pairs
  c.rope.rope_dim = c.head_dim;
  if (file.Find(p + "rope.dimension_count") != nullptr) {
    ASSIGN_OR_RETURN(c.rope.rope_dim, ReadPositive(file, p + "rope.dimension_count"));
  }
  if (c.rope.rope_dim > c.head_dim || c.rope.rope_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model: ", p, "rope.dimension_count ",
                                                   c.rope.rope_dim, " does not fit head dim ",
                                                   c.head_dim));
  }
  if (file.Find(p + "rope.freq_base") != nullptr) {
    ASSIGN_OR_RETURN(double base, file.GetFloat(p + "rope.freq_base"));
    c.rope.freq_base = static_cast<float>(base);
  }
  if (auto type = file.GetString(p + "rope.scaling.type"); type.ok() && *type == "linear") {
    ASSIGN_OR_RETURN(double factor, file.GetFloat(p + "rope.scaling.factor"));
    if (!std::isfinite(factor) || factor <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model: ", p, "rope.scaling.factor must be finite and positive"));
    }
    c.rope.freq_scale = static_cast<float>(1.0 / factor);
  }
  if (!std::isfinite(c.rope.freq_base) || c.rope.freq_base <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model: ", p, "rope.freq_base must be finite and positive"));
  }
  // The vocabulary size comes from the embedding table (checked by the weight loader), or the key.
  if (file.Find(p + "vocab_size") != nullptr) {
    ASSIGN_OR_RETURN(c.vocab_size, ReadPositive(file, p + "vocab_size"));
  } else if (const GgufTensor* embd = file.FindTensor("token_embd.weight");
             embd != nullptr && embd->dims.size() == 2) {
    c.vocab_size = static_cast<int32_t>(embd->dims[1]);
  }
  return c;
}

}  // namespace saola::model
