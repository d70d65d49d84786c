#include "worker/model/llama_model.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/model/gguf.h"
#include "worker/model/weight_placement.h"

namespace saola::model {
namespace {

float* F(const kernels::Buffer& b) { return static_cast<float*>(b.get()); }

}  // namespace

LlamaModel::LlamaModel(kernels::Backend& backend, ModelConfig config, LlamaWeights weights,
                       std::vector<kernels::Buffer> weight_memory, Options options)
    : backend_(backend),
      config_(std::move(config)),
      weights_(std::move(weights)),
      weight_memory_(std::move(weight_memory)),
      options_(options) {
  const size_t n = options_.max_batch_tokens;
  const size_t hd = config_.head_dim;
  const ShardLayout& s = weights_.shard;
  auto floats = [&](size_t count) { return backend_.Allocate(count * sizeof(float)); };
  x_ = floats(n * config_.hidden_dim);
  h_ = floats(n * config_.hidden_dim);
  q_ = floats(n * s.num_q_heads * hd);
  k_ = floats(n * s.num_kv_heads * hd);
  v_ = floats(n * s.num_kv_heads * hd);
  attn_ = floats(n * s.num_q_heads * hd);
  proj_ = floats(n * config_.hidden_dim);
  gate_ = floats(n * s.ffn_dim);
  up_ = floats(n * s.ffn_dim);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const GgufFile& file,
                                                             kernels::Backend& backend,
                                                             const Options& options) {
  if (options.max_batch_tokens <= 0) {
    return absl::InvalidArgumentError("model: max_batch_tokens must be positive");
  }
  if (options.shard.world_size > 1 && options.communicator == nullptr) {
    return absl::InvalidArgumentError("model: a sharded model needs a communicator");
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(file));
  ASSIGN_OR_RETURN(LlamaWeights weights, LoadLlamaWeights(file, config, options.shard));
  ASSIGN_OR_RETURN(PlacedLlamaWeights placed, PlaceLlamaWeights(weights, backend));
  auto model = std::unique_ptr<LlamaModel>(new LlamaModel(
      backend, std::move(config), std::move(placed.weights), std::move(placed.memory), options));
  for (const kernels::Buffer* b : {&model->x_, &model->h_, &model->q_, &model->k_, &model->v_,
                                   &model->attn_, &model->proj_, &model->gate_, &model->up_}) {
    if (*b == nullptr) return absl::ResourceExhaustedError("model: out of memory for activations");
  }
  return model;
}

KvCacheStorage::Shape LlamaModel::KvShape(int32_t num_blocks, int32_t block_size) const {
  KvCacheStorage::Shape shape;
  shape.num_layers = config_.num_layers;
  shape.num_blocks = num_blocks;
  shape.block_size = block_size;
  shape.num_kv_heads = weights_.shard.num_kv_heads;
  shape.head_dim = config_.head_dim;
  return shape;
}

absl::Status LlamaModel::Validate(const StepBatch& batch, const KvCacheStorage& kv) const {
  const KvCacheStorage::Shape& shape = kv.shape();
  if (shape.num_layers != config_.num_layers || shape.num_kv_heads != weights_.shard.num_kv_heads ||
      shape.head_dim != config_.head_dim) {
    return absl::InvalidArgumentError("batch: KV cache shape does not match the model");
  }
  const int64_t n = static_cast<int64_t>(batch.token_ids.size());
  if (n == 0 || n > options_.max_batch_tokens) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "batch: %d tokens, expected 1 to %d", n, options_.max_batch_tokens));
  }
  int64_t counted = 0;
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SequenceStep& s = batch.seqs[i];
    if (s.num_tokens <= 0 || s.num_tokens > s.context_len) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "batch: sequence %d has %d new tokens for context %d", i, s.num_tokens, s.context_len));
    }
    if (s.context_len > config_.context_length) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "batch: sequence %d context %d exceeds the model's %d", i, s.context_len,
          config_.context_length));
    }
    if (s.num_logits < 0 || s.num_logits > s.num_tokens) {
      return absl::InvalidArgumentError(
          absl::StrFormat("batch: sequence %d asks logits for %d of %d tokens", i, s.num_logits,
                          s.num_tokens));
    }
    if (s.backend_sampling && (s.num_logits != 1 || !backend_.SamplesRows())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "batch: sequence %d asks the backend to sample %s", i,
          s.num_logits != 1 ? "without exactly one logit row" : "but it does not sample"));
    }
    const int64_t blocks_needed = (s.context_len + shape.block_size - 1) / shape.block_size;
    if (static_cast<int64_t>(s.block_table.size()) < blocks_needed) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "batch: sequence %d has %d blocks for %d tokens", i, s.block_table.size(),
          s.context_len));
    }
    for (int64_t b = 0; b < blocks_needed; ++b) {
      if (s.block_table[b] < 0 || s.block_table[b] >= shape.num_blocks) {
        return absl::InvalidArgumentError(
            absl::StrFormat("batch: sequence %d block id %d out of range", i, s.block_table[b]));
      }
    }
    counted += s.num_tokens;
  }
  if (counted != n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("batch: sequences cover %d tokens, batch has %d", counted, n));
  }
  for (int32_t id : batch.token_ids) {
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrFormat("batch: token id %d out of range", id));
    }
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::AllReduce(float* data, size_t count) {
  if (options_.shard.world_size == 1) return absl::OkStatus();
  return options_.communicator->AllReduceSum(data, count);
}

absl::Status LlamaModel::RunLayer(int layer, int64_t n, KvCacheStorage& kv,
                                  const float* next_norm) {
  const LayerWeights& w = weights_.layers[layer];
  const ShardLayout& s = weights_.shard;
  const int64_t dim = config_.hidden_dim;
  const float eps = config_.rms_norm_eps;

  const kernels::Weight qkv[] = {w.q, w.k, w.v};
  float* const qkv_out[] = {F(q_), F(k_), F(v_)};
  backend_.MatMulShared(qkv, F(h_), n, qkv_out);
  backend_.Rope(F(q_), positions_.data(), n, s.num_q_heads, config_.head_dim, config_.rope);
  backend_.Rope(F(k_), positions_.data(), n, s.num_kv_heads, config_.head_dim, config_.rope);
  const kernels::KvLayer kv_layer = kv.layer(layer);
  backend_.StoreKv(F(k_), F(v_), slots_.data(), n, kv_layer);
  backend_.Attention(F(q_), kv_layer, attention_seqs_, s.num_q_heads,
                     1.0f / std::sqrt(static_cast<float>(config_.head_dim)), F(attn_));
  backend_.MatMul(w.o, F(attn_), n, F(proj_));
  RETURN_IF_ERROR(AllReduce(F(proj_), n * dim));
  backend_.AddRmsNorm(F(x_), F(proj_), w.ffn_norm, n, dim, eps, F(h_));

  const kernels::Weight gate_up[] = {w.gate, w.up};
  float* const gate_up_out[] = {F(gate_), F(up_)};
  backend_.MatMulShared(gate_up, F(h_), n, gate_up_out);
  backend_.SiluMul(F(gate_), F(up_), n, s.ffn_dim, F(gate_));
  backend_.MatMul(w.down, F(gate_), n, F(proj_));
  RETURN_IF_ERROR(AllReduce(F(proj_), n * dim));
  if (next_norm != nullptr) {
    backend_.AddRmsNorm(F(x_), F(proj_), next_norm, n, dim, eps, F(h_));
  } else {
    backend_.Add(F(x_), F(proj_), n, dim);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::span<const float>> LlamaModel::Forward(const StepBatch& batch,
                                                           KvCacheStorage& kv) {
  for (const SequenceStep& s : batch.seqs) {
    if (s.backend_sampling) return absl::InvalidArgumentError("batch: Forward does not sample");
  }
  ASSIGN_OR_RETURN(const StepOutput out, Step(batch, kv));
  return out.logits;
}

absl::StatusOr<StepOutput> LlamaModel::Step(const StepBatch& batch, KvCacheStorage& kv) {
  RETURN_IF_ERROR(Validate(batch, kv));
  const int64_t n = static_cast<int64_t>(batch.token_ids.size());
  const int32_t block_size = kv.block_size();

  // Positions, KV slots, attention ranges and the rows that need logits: the rows the backend
  // samples first (their logits never leave the backend), then the rows whose logits the host
  // reads, each group in batch order.
  positions_.clear();
  slots_.clear();
  attention_seqs_.clear();
  logit_rows_.clear();
  row_sampling_.clear();
  host_rows_.clear();
  int32_t row = 0;
  for (const SequenceStep& s : batch.seqs) {
    kernels::AttentionSeq a;
    a.q_begin = row;
    a.num_q = s.num_tokens;
    a.context_len = s.context_len;
    a.block_table = s.block_table.data();
    attention_seqs_.push_back(a);
    for (int32_t i = 0; i < s.num_tokens; ++i) {
      const int32_t pos = s.context_len - s.num_tokens + i;
      positions_.push_back(pos);
      slots_.push_back(s.block_table[pos / block_size] * block_size + pos % block_size);
    }
    const int32_t first_logit = row + s.num_tokens - s.num_logits;
    if (s.backend_sampling) {
      logit_rows_.push_back(first_logit);
      row_sampling_.push_back(*s.backend_sampling);
    } else {
      for (int32_t r = first_logit; r < row + s.num_tokens; ++r) host_rows_.push_back(r);
    }
    row += s.num_tokens;
  }
  logit_rows_.insert(logit_rows_.end(), host_rows_.begin(), host_rows_.end());

  const int64_t dim = config_.hidden_dim;
  backend_.Embed(weights_.token_embedding, batch.token_ids.data(), n, F(x_));
  backend_.RmsNorm(F(x_), weights_.layers[0].attn_norm, n, dim, config_.rms_norm_eps, F(h_));
  for (int l = 0; l < config_.num_layers; ++l) {
    const float* next_norm = l + 1 < config_.num_layers ? weights_.layers[l + 1].attn_norm : nullptr;
    RETURN_IF_ERROR(RunLayer(l, n, kv, next_norm));
  }

  // Final norm and the vocabulary projection, only for the rows that need logits. The last layer
  // ends with a plain residual add, so h_ is free to hold the selected rows. The rows are gathered
  // by an Embed over x_ seen as an F32 table (a plain row copy), which works in any backend's
  // memory.
  const int64_t m = static_cast<int64_t>(logit_rows_.size());
  if (m == 0) return StepOutput{};
  float* selected = F(h_);
  kernels::Weight rows_of_x;
  rows_of_x.type = kernels::DType::kF32;
  rows_of_x.data = F(x_);
  rows_of_x.rows = n;
  rows_of_x.cols = dim;
  rows_of_x.row_stride_bytes = dim * sizeof(float);
  backend_.Embed(rows_of_x, logit_rows_.data(), m, selected);
  backend_.RmsNorm(selected, weights_.output_norm, m, dim, config_.rms_norm_eps, selected);
  if (static_cast<size_t>(m) > logits_capacity_) {
    logits_ = backend_.Allocate(size_t(m) * config_.vocab_size * sizeof(float));
    if (logits_ == nullptr) {
      logits_capacity_ = 0;
      return absl::ResourceExhaustedError("model: out of memory for logits");
    }
    logits_capacity_ = m;
  }
  backend_.MatMul(weights_.output, selected, m, F(logits_));

  StepOutput out;
  const int64_t vocab = config_.vocab_size;
  const size_t sampled = row_sampling_.size();
  if (sampled > 0) {
    sampled_.resize(sampled);
    RETURN_IF_ERROR(backend_.SampleRows(F(logits_), vocab, row_sampling_, sampled_.data()));
    out.sampled = sampled_;
  }
  const float* host_part = F(logits_) + sampled * vocab;
  const size_t count = host_rows_.size() * vocab;
  if (count == 0 || backend_.HostAddressable()) {
    out.logits = std::span<const float>(host_part, count);
    return out;
  }
  host_logits_.resize(count);
  RETURN_IF_ERROR(backend_.CopyToHost(host_logits_.data(), host_part, count * sizeof(float)));
  out.logits = std::span<const float>(host_logits_.data(), count);
  return out;
}

}  // namespace saola::model
