#include "cache/semantic/minilm_embedder.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace saola::cache {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MiniLmEmbedder>> MiniLmEmbedder::Load(
    const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string config_text, ReadFile(model_dir + "/config.json"));
  ASSIGN_OR_RETURN(BertConfig config, ParseBertConfig(config_text));
  ASSIGN_OR_RETURN(auto weights, SafetensorsFile::Open(model_dir + "/model.safetensors"));
  auto embedder = std::unique_ptr<MiniLmEmbedder>(new MiniLmEmbedder());
  ASSIGN_OR_RETURN(embedder->tokenizer_, WordpieceTokenizer::FromFile(model_dir + "/vocab.txt"));
  if (embedder->tokenizer_->vocab_size() != config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_dir, ": vocab.txt has ", embedder->tokenizer_->vocab_size(),
                     " tokens, config.json says ", config.vocab_size));
  }
  if (config.max_position_embeddings < kMaxTokens) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, ": fewer than ", kMaxTokens,
                                                   " position embeddings"));
  }
  ASSIGN_OR_RETURN(embedder->encoder_, BertEncoder::Create(config, std::move(weights)));
  return embedder;
}

std::vector<int32_t> MiniLmEmbedder::Tokenize(std::string_view text) const {
  return tokenizer_->Encode(text, kMaxTokens);
}

absl::StatusOr<std::vector<float>> MiniLmEmbedder::Embed(std::string_view text) const {
  ASSIGN_OR_RETURN(std::vector<float> v, encoder_->MeanPooled(Tokenize(text)));
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  // sentence-transformers' Normalize divides by max(norm, 1e-12).
  const float inv = static_cast<float>(1.0 / std::max(std::sqrt(norm), 1e-12));
  for (float& x : v) x *= inv;
  return v;
}

}  // namespace saola::cache
