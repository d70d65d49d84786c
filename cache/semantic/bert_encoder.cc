#include "cache/semantic/bert_encoder.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace saola::cache {
namespace {

absl::Status ReadInt(const json::Value& config, std::string_view key, int max, int* out) {
  const json::Value* v = config.Find(key);
  if (v == nullptr || !v->is_number() || v->num() < 1 || v->num() > max ||
      v->num() != std::floor(v->num())) {
    return absl::InvalidArgumentError(
        absl::StrCat("BERT config: ", std::string(key), " must be an integer in [1, ", max, "]"));
  }
  *out = static_cast<int>(v->num());
  return absl::OkStatus();
}

// x[T, n] = LayerNorm(x + residual) row by row; no residual when it is null.
void AddLayerNorm(float* x, const float* residual, int num_tokens, int n, const float* gamma,
                  const float* beta, float eps) {
  for (int t = 0; t < num_tokens; ++t) {
    float* row = x + t * n;
    if (residual != nullptr) {
      for (int i = 0; i < n; ++i) row[i] += residual[t * n + i];
    }
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += row[i];
    const float mean = static_cast<float>(sum / n);
    double var = 0;
    for (int i = 0; i < n; ++i) {
      const float d = row[i] - mean;
      var += d * d;
    }
    const float inv = 1.0f / std::sqrt(static_cast<float>(var / n) + eps);
    for (int i = 0; i < n; ++i) row[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
  }
}

void Gelu(float* x, size_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f;
  for (size_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

void SoftmaxRow(float* row, int n) {
  const float max = *std::max_element(row, row + n);
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    row[i] = std::exp(row[i] - max);
    sum += row[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) row[i] *= inv;
}

}  // namespace

absl::StatusOr<BertConfig> ParseBertConfig(std::string_view json_text) {
  ASSIGN_OR_RETURN(json::Value config, json::Parse(json_text));
  if (!config.is_object()) return absl::InvalidArgumentError("BERT config: not a JSON object");
  BertConfig c;
  RETURN_IF_ERROR(ReadInt(config, "vocab_size", 1 << 20, &c.vocab_size));
  RETURN_IF_ERROR(ReadInt(config, "hidden_size", 1 << 14, &c.hidden_size));
  RETURN_IF_ERROR(ReadInt(config, "num_hidden_layers", 256, &c.num_layers));
  RETURN_IF_ERROR(ReadInt(config, "num_attention_heads", 256, &c.num_heads));
  RETURN_IF_ERROR(ReadInt(config, "intermediate_size", 1 << 16, &c.intermediate_size));
  RETURN_IF_ERROR(ReadInt(config, "max_position_embeddings", 1 << 16, &c.max_position_embeddings));
  RETURN_IF_ERROR(ReadInt(config, "type_vocab_size", 1 << 10, &c.type_vocab_size));
  if (c.hidden_size % c.num_heads != 0) {
    return absl::InvalidArgumentError("BERT config: hidden_size not a multiple of the heads");
  }
  if (const json::Value* eps = config.Find("layer_norm_eps"); eps != nullptr) {
    if (!eps->is_number() || !(eps->num() > 0 && eps->num() < 1)) {
      return absl::InvalidArgumentError("BERT config: layer_norm_eps must be in (0, 1)");
    }
    c.layer_norm_eps = static_cast<float>(eps->num());
  }
  const json::Value* act = config.Find("hidden_act");
  if (act == nullptr || !act->is_string() || act->str() != "gelu") {
    return absl::InvalidArgumentError("BERT config: only hidden_act \"gelu\" is supported");
  }
  if (const json::Value* pos = config.Find("position_embedding_type");
      pos != nullptr && !(pos->is_string() && pos->str() == "absolute")) {
    return absl::InvalidArgumentError("BERT config: only absolute position embeddings");
  }
  return c;
}

absl::StatusOr<std::unique_ptr<BertEncoder>> BertEncoder::Create(
    const BertConfig& config, std::unique_ptr<SafetensorsFile> weights) {
  // One BLAS thread per call: see the header.
  openblas_set_num_threads(1);
  auto encoder = std::unique_ptr<BertEncoder>(new BertEncoder());
  encoder->config_ = config;
  encoder->weights_ = std::move(weights);
  const bool prefixed = encoder->weights_->Find("embeddings.word_embeddings.weight") == nullptr &&
                        encoder->weights_->Find("bert.embeddings.word_embeddings.weight");
  RETURN_IF_ERROR(encoder->BindWeights(prefixed ? "bert." : ""));
  return encoder;
}

absl::Status BertEncoder::BindWeights(std::string_view prefix) {
  const int64_t h = config_.hidden_size, inter = config_.intermediate_size;
  const SafetensorsFile& w = *weights_;
  auto get = [&](std::string_view name, std::initializer_list<int64_t> shape,
                 const float** out) -> absl::Status {
    ASSIGN_OR_RETURN(*out, w.GetF32(std::string(prefix) + std::string(name), shape));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(get("embeddings.word_embeddings.weight", {config_.vocab_size, h},
                      &word_embeddings_));
  RETURN_IF_ERROR(get("embeddings.position_embeddings.weight",
                      {config_.max_position_embeddings, h}, &position_embeddings_));
  RETURN_IF_ERROR(get("embeddings.token_type_embeddings.weight", {config_.type_vocab_size, h},
                      &token_type_embeddings_));
  RETURN_IF_ERROR(get("embeddings.LayerNorm.weight", {h}, &embed_norm_weight_));
  RETURN_IF_ERROR(get("embeddings.LayerNorm.bias", {h}, &embed_norm_bias_));
  layers_.resize(config_.num_layers);
  for (int i = 0; i < config_.num_layers; ++i) {
    Layer& layer = layers_[i];
    const std::string p = absl::StrCat("encoder.layer.", i, ".");
    layer.qkv_weight.resize(3 * h * h);
    layer.qkv_bias.resize(3 * h);
    const char* kProjections[] = {"query", "key", "value"};
    for (int j = 0; j < 3; ++j) {
      const float* weight;
      const float* bias;
      const std::string name = absl::StrCat(p, "attention.self.", kProjections[j]);
      RETURN_IF_ERROR(get(name + ".weight", {h, h}, &weight));
      RETURN_IF_ERROR(get(name + ".bias", {h}, &bias));
      std::copy(weight, weight + h * h, layer.qkv_weight.begin() + j * h * h);
      std::copy(bias, bias + h, layer.qkv_bias.begin() + j * h);
    }
    layer.qkv.emplace(layer.qkv_weight.data(), 3 * h, h);
    const float* weight;
    RETURN_IF_ERROR(get(p + "attention.output.dense.weight", {h, h}, &weight));
    layer.attn_out.emplace(weight, h, h);
    RETURN_IF_ERROR(get(p + "attention.output.dense.bias", {h}, &layer.attn_out_bias));
    RETURN_IF_ERROR(get(p + "attention.output.LayerNorm.weight", {h}, &layer.attn_norm_weight));
    RETURN_IF_ERROR(get(p + "attention.output.LayerNorm.bias", {h}, &layer.attn_norm_bias));
    RETURN_IF_ERROR(get(p + "intermediate.dense.weight", {inter, h}, &weight));
    layer.ffn_in.emplace(weight, inter, h);
    RETURN_IF_ERROR(get(p + "intermediate.dense.bias", {inter}, &layer.ffn_in_bias));
    RETURN_IF_ERROR(get(p + "output.dense.weight", {h, inter}, &weight));
    layer.ffn_out.emplace(weight, h, inter);
    RETURN_IF_ERROR(get(p + "output.dense.bias", {h}, &layer.ffn_out_bias));
    RETURN_IF_ERROR(get(p + "output.LayerNorm.weight", {h}, &layer.ffn_norm_weight));
    RETURN_IF_ERROR(get(p + "output.LayerNorm.bias", {h}, &layer.ffn_norm_bias));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> BertEncoder::MeanPooled(absl::Span<const int32_t> ids) const {
  const int num_tokens = static_cast<int>(ids.size());
  if (num_tokens == 0 || num_tokens > config_.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("BERT: ", num_tokens, " tokens, want 1 to ",
                                                   config_.max_position_embeddings));
  }
  const int h = config_.hidden_size;
  // x, then scratch for one layer: qkv [T, 3h], context [T, h], scores [T, T],
  // feed-forward [T, intermediate], projection output [T, h].
  const size_t t = num_tokens;
  std::vector<float> buffer(t * h + t * 3 * h + t * h + t * t + t * config_.intermediate_size +
                            t * h);
  float* x = buffer.data();
  for (int i = 0; i < num_tokens; ++i) {
    if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("BERT: token id ", ids[i], " out of range"));
    }
    const float* word = word_embeddings_ + static_cast<size_t>(ids[i]) * h;
    const float* position = position_embeddings_ + static_cast<size_t>(i) * h;
    // One sentence: every token has token type 0.
    const float* type = token_type_embeddings_;
    for (int j = 0; j < h; ++j) x[i * h + j] = word[j] + position[j] + type[j];
  }
  AddLayerNorm(x, nullptr, num_tokens, h, embed_norm_weight_, embed_norm_bias_,
               config_.layer_norm_eps);
  for (const Layer& layer : layers_) RunLayer(layer, num_tokens, x, x + t * h);

  std::vector<float> pooled(h, 0.0f);
  for (int i = 0; i < num_tokens; ++i) {
    for (int j = 0; j < h; ++j) pooled[j] += x[i * h + j];
  }
  for (float& v : pooled) v /= num_tokens;
  return pooled;
}

void BertEncoder::RunLayer(const Layer& layer, int num_tokens, float* x, float* scratch) const {
  const int h = config_.hidden_size, inter = config_.intermediate_size;
  const int num_heads = config_.num_heads, head_dim = h / num_heads;
  const size_t t = num_tokens;
  float* qkv = scratch;
  float* context = qkv + t * 3 * h;
  float* scores = context + t * h;
  float* ffn = scores + t * t;
  float* projected = ffn + t * inter;

  MatMulBias(*layer.qkv, x, num_tokens, layer.qkv_bias.data(), qkv);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int head = 0; head < num_heads; ++head) {
    const float* q = qkv + head * head_dim;
    const float* k = q + h;
    const float* v = q + 2 * h;
    // scores[T, T] = scale · Q_head · K_headᵀ; rows of Q/K/V are 3h apart inside qkv.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, num_tokens, num_tokens, head_dim, scale,
                q, 3 * h, k, 3 * h, 0.0f, scores, num_tokens);
    for (int i = 0; i < num_tokens; ++i) SoftmaxRow(scores + i * t, num_tokens);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, num_tokens, head_dim, num_tokens, 1.0f,
                scores, num_tokens, v, 3 * h, 0.0f, context + head * head_dim, h);
  }
  MatMulBias(*layer.attn_out, context, num_tokens, layer.attn_out_bias, projected);
  AddLayerNorm(x, projected, num_tokens, h, layer.attn_norm_weight, layer.attn_norm_bias,
               config_.layer_norm_eps);

  MatMulBias(*layer.ffn_in, x, num_tokens, layer.ffn_in_bias, ffn);
  Gelu(ffn, t * inter);
  MatMulBias(*layer.ffn_out, ffn, num_tokens, layer.ffn_out_bias, projected);
  AddLayerNorm(x, projected, num_tokens, h, layer.ffn_norm_weight, layer.ffn_norm_bias,
               config_.layer_norm_eps);
}

}  // namespace saola::cache
