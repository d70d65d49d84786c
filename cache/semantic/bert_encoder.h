// A BERT encoder on the CPU in float32, for one sentence at a time (the semantic cache embeds
// one prompt per request), returning the mean of the last hidden states over all tokens.
//
//   x = LayerNorm(word_emb[id] + pos_emb[position] + type_emb[0])
//   per layer (post-norm):
//     x = LayerNorm(x + Wo · Attention(Wq x, Wk x, Wv x))     bidirectional, all tokens
//     x = LayerNorm(x + W2 · GELU(W1 x))                      GELU in the exact erf form
//   pooled = mean over tokens of x
//
// Activations are row-major [tokens, features]. The dense layers are MatMulBias (bert_matmul.h:
// weights packed as half floats at load for short prompts, cblas_sgemm on the float32 weights
// for long ones); the three attention projections of each layer are first joined into one
// [3·hidden, hidden] matrix, so Q, K and V come out of a single call. Attention runs per head as
// two cblas_sgemm calls over strided views of that [tokens, 3·hidden] result. Memory: the
// mapped file (only the embedding rows in use stay hot), 21 MB of half-float panels and a
// 3.5 MB float32 copy of the joined attention projections.
//
// BLAS threading: Create sets OpenBLAS to one thread. The router embeds from many request
// threads at once, where a BLAS thread pool per call would only oversubscribe the cores; the
// setting is process-wide (FAISS's BLAS calls run single-threaded too).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "cache/semantic/bert_matmul.h"
#include "cache/semantic/safetensors.h"

namespace saola::cache {

/// The hyperparameters of a BERT model, from its HF config.json.
struct BertConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int intermediate_size = 0;
  int max_position_embeddings = 0;
  int type_vocab_size = 0;
  float layer_norm_eps = 1e-12f;
};

/// Parses a HF BERT config.json; INVALID_ARGUMENT for missing or out-of-range fields and for
/// variants this encoder does not implement (an activation other than "gelu", relative
/// position embeddings).
absl::StatusOr<BertConfig> ParseBertConfig(std::string_view json_text);

class BertEncoder {
 public:
  /// Checks that `weights` holds every tensor of `config` as F32 with the right shape (names as
  /// HF BertModel exports them, optionally prefixed "bert.") and keeps the file mapped.
  static absl::StatusOr<std::unique_ptr<BertEncoder>> Create(
      const BertConfig& config, std::unique_ptr<SafetensorsFile> weights);

  /// The mean over tokens of the last hidden states of `ids` (not normalized). INVALID_ARGUMENT
  /// when `ids` is empty, longer than max_position_embeddings or holds an id outside the
  /// vocabulary. Thread-safe.
  absl::StatusOr<std::vector<float>> MeanPooled(absl::Span<const int32_t> ids) const;

  const BertConfig& config() const { return config_; }

 private:
  struct Layer {
    std::vector<float> qkv_weight;  // [3·hidden, hidden]: query, key, value rows
    std::vector<float> qkv_bias;    // [3·hidden]
    std::optional<PackedWeight> qkv;
    std::optional<PackedWeight> attn_out;  // [hidden, hidden]
    const float* attn_out_bias;
    const float* attn_norm_weight;
    const float* attn_norm_bias;
    std::optional<PackedWeight> ffn_in;  // [intermediate, hidden]
    const float* ffn_in_bias;
    std::optional<PackedWeight> ffn_out;  // [hidden, intermediate]
    const float* ffn_out_bias;
    const float* ffn_norm_weight;
    const float* ffn_norm_bias;
  };

  BertEncoder() = default;
  absl::Status BindWeights(std::string_view prefix);

  // x[T, hidden] = LayerNorm(x + attention(x)) and the feed-forward block, in place.
  void RunLayer(const Layer& layer, int num_tokens, float* x, float* scratch) const;

  BertConfig config_;
  std::unique_ptr<SafetensorsFile> weights_;
  const float* word_embeddings_ = nullptr;
  const float* position_embeddings_ = nullptr;
  const float* token_type_embeddings_ = nullptr;
  const float* embed_norm_weight_ = nullptr;
  const float* embed_norm_bias_ = nullptr;
  std::vector<Layer> layers_;
};

}  // namespace saola::cache
