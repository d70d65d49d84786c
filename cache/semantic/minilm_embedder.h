// all-MiniLM-L6-v2 (sentence-transformers) as the semantic cache's Embedder: WordPiece ids of
// the text (truncated to the model's 256-token window), a 6-layer BERT encoder, mean pooling
// over the tokens and L2 normalization; 384 dimensions. The pieces are wordpiece_tokenizer.h
// and bert_encoder.h; this file only wires them to the model folder that scripts/fetch-models
// installs (model.safetensors in f32, vocab.txt, config.json).
//
// Cost: ~21 MFLOP per token on one thread, bound by streaming the weights for short prompts.
// On this repository's shared 2-core VM: 16 tokens 6.8 ms, 30 tokens 11 ms, 256 tokens 82 ms
// (min of 200 calls; bench/embed_bench.cc measures the same calls).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/semantic/bert_encoder.h"
#include "cache/semantic/embedder.h"
#include "cache/semantic/wordpiece_tokenizer.h"

namespace saola::cache {

class MiniLmEmbedder : public Embedder {
 public:
  /// sentence-transformers' max_seq_length for this model: tokens past it, [CLS] and [SEP]
  /// included, are dropped (the model was trained on windows this long).
  static constexpr int kMaxTokens = 256;

  /// Loads model.safetensors, vocab.txt and config.json from `model_dir`. NOT_FOUND when a file
  /// is missing, INVALID_ARGUMENT when one is malformed or does not fit the others.
  static absl::StatusOr<std::unique_ptr<MiniLmEmbedder>> Load(const std::string& model_dir);

  int dim() const override { return encoder_->config().hidden_size; }
  absl::StatusOr<std::vector<float>> Embed(std::string_view text) const override;

  /// The ids Embed runs the encoder on (for tests and debugging).
  std::vector<int32_t> Tokenize(std::string_view text) const;

 private:
  MiniLmEmbedder() = default;

  std::unique_ptr<WordpieceTokenizer> tokenizer_;
  std::unique_ptr<BertEncoder> encoder_;
};

}  // namespace saola::cache
