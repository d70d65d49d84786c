#include "worker/model/llama_weights.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/model/gguf.h"

namespace saola::model {
namespace {

using kernels::DType;
using kernels::Weight;

// Weight types every backend multiplies (the kernels' contract in kernels/cpu/matmul.h).
bool IsMatMulType(DType type) {
  return type == DType::kF32 || type == DType::kF16 || type == DType::kQ8_0 ||
         type == DType::kQ4_0 || type == DType::kQ4_1;
}

absl::StatusOr<const GgufTensor*> Find(const GgufFile& file, const std::string& name) {
  const GgufTensor* t = file.FindTensor(name);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("model: missing tensor ", name));
  return t;
}

absl::StatusOr<const float*> FindNorm(const GgufFile& file, const std::string& name, int64_t dim) {
  ASSIGN_OR_RETURN(const GgufTensor* t, Find(file, name));
  if (t->type != DType::kF32 || t->dims.size() != 1 || t->dims[0] != dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("model: tensor ", name, " must be F32 [", dim, "]"));
  }
  return reinterpret_cast<const float*>(t->data);
}

// The whole matrix [rows, cols] (ggml dims {cols, rows}) as a Weight.
absl::StatusOr<Weight> FindMatrix(const GgufFile& file, const std::string& name, int64_t rows,
                                  int64_t cols) {
  ASSIGN_OR_RETURN(const GgufTensor* t, Find(file, name));
  if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows) {
    return absl::InvalidArgumentError(
        absl::StrFormat("model: tensor %s must be [%d x %d] (rows x cols)", name, rows, cols));
  }
  if (!IsMatMulType(t->type)) {
    return absl::UnimplementedError(absl::StrCat("model: tensor ", name, " has type ",
                                                 std::string(kernels::GetDTypeInfo(t->type).name),
                                                 ", which the kernels do not multiply"));
  }
  Weight w;
  w.type = t->type;
  w.data = t->data;
  w.rows = rows;
  w.cols = cols;
  w.row_stride_bytes = kernels::RowBytes(t->type, cols);
  return w;
}

// Rows [begin, begin + count): the output features of a column-split (QKV, gate, up) layer.
Weight SliceRows(const Weight& w, int64_t begin, int64_t count) {
  Weight s = w;
  s.data = static_cast<const uint8_t*>(w.data) + begin * w.row_stride_bytes;
  s.rows = count;
  return s;
}

// Columns [begin, begin + count) of every row: the input features of a row-split (O, down) layer.
absl::StatusOr<Weight> SliceCols(const Weight& w, int64_t begin, int64_t count,
                                 const std::string& name) {
  const int block = kernels::GetDTypeInfo(w.type).block_elems;
  if (begin % block != 0 || count % block != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model: tensor %s cannot be split at column %d: not a multiple of its %d-element blocks",
        name, begin, block));
  }
  Weight s = w;
  s.data = static_cast<const uint8_t*>(w.data) + kernels::RowBytes(w.type, begin);
  s.cols = count;
  return s;  // row_stride_bytes stays the full row
}

absl::StatusOr<LayerWeights> LoadLayer(const GgufFile& file, const ModelConfig& c,
                                       const ShardLayout& s, int layer) {
  const std::string p = absl::StrCat("blk.", layer, ".");
  const int64_t hd = c.head_dim;
  LayerWeights l;
  ASSIGN_OR_RETURN(l.attn_norm, FindNorm(file, p + "attn_norm.weight", c.hidden_dim));
  ASSIGN_OR_RETURN(l.ffn_norm, FindNorm(file, p + "ffn_norm.weight", c.hidden_dim));
  const int64_t kv_rows = int64_t{c.num_kv_heads} * hd;
  ASSIGN_OR_RETURN(Weight q, FindMatrix(file, p + "attn_q.weight", c.hidden_dim, c.hidden_dim));
  ASSIGN_OR_RETURN(Weight k, FindMatrix(file, p + "attn_k.weight", kv_rows, c.hidden_dim));
  ASSIGN_OR_RETURN(Weight v, FindMatrix(file, p + "attn_v.weight", kv_rows, c.hidden_dim));
  ASSIGN_OR_RETURN(Weight o, FindMatrix(file, p + "attn_output.weight", c.hidden_dim, c.hidden_dim));
  ASSIGN_OR_RETURN(Weight gate, FindMatrix(file, p + "ffn_gate.weight", c.ffn_dim, c.hidden_dim));
  ASSIGN_OR_RETURN(Weight up, FindMatrix(file, p + "ffn_up.weight", c.ffn_dim, c.hidden_dim));
  ASSIGN_OR_RETURN(Weight down, FindMatrix(file, p + "ffn_down.weight", c.hidden_dim, c.ffn_dim));
  l.q = SliceRows(q, s.q_head_begin * hd, s.num_q_heads * hd);
  l.k = SliceRows(k, s.kv_head_begin * hd, s.num_kv_heads * hd);
  l.v = SliceRows(v, s.kv_head_begin * hd, s.num_kv_heads * hd);
  ASSIGN_OR_RETURN(l.o, SliceCols(o, s.q_head_begin * hd, s.num_q_heads * hd, p + "attn_output"));
  l.gate = SliceRows(gate, s.ffn_begin, s.ffn_dim);
  l.up = SliceRows(up, s.ffn_begin, s.ffn_dim);
  ASSIGN_OR_RETURN(l.down, SliceCols(down, s.ffn_begin, s.ffn_dim, p + "ffn_down"));
  return l;
}

}  // namespace

absl::StatusOr<ShardLayout> ComputeShardLayout(const ModelConfig& c, const ShardSpec& spec) {
  const int32_t n = spec.world_size;
  if (n < 1 || spec.rank < 0 || spec.rank >= n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("shard: rank %d is outside world size %d", spec.rank, n));
  }
  if (c.num_heads % n != 0 || c.ffn_dim % n != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shard: %d heads and FFN size %d do not split across %d ranks", c.num_heads, c.ffn_dim, n));
  }
  ShardLayout s;
  s.num_q_heads = c.num_heads / n;
  s.q_head_begin = spec.rank * s.num_q_heads;
  if (c.num_kv_heads % n == 0) {
    s.num_kv_heads = c.num_kv_heads / n;
    s.kv_head_begin = spec.rank * s.num_kv_heads;
  } else if (n % c.num_kv_heads == 0) {
    s.num_kv_heads = 1;  // replicated: N / num_kv_heads consecutive ranks share one KV head
    s.kv_head_begin = spec.rank / (n / c.num_kv_heads);
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shard: %d KV heads neither split across nor replicate onto %d ranks", c.num_kv_heads, n));
  }
  s.ffn_dim = c.ffn_dim / n;
  s.ffn_begin = spec.rank * s.ffn_dim;
  return s;
}

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const GgufFile& file, const ModelConfig& c,
                                              const ShardSpec& spec) {
  LlamaWeights w;
  ASSIGN_OR_RETURN(w.shard, ComputeShardLayout(c, spec));
  ASSIGN_OR_RETURN(w.token_embedding,
                   FindMatrix(file, "token_embd.weight", c.vocab_size, c.hidden_dim));
  ASSIGN_OR_RETURN(w.output_norm, FindNorm(file, "output_norm.weight", c.hidden_dim));
  if (file.FindTensor("output.weight") != nullptr) {
    ASSIGN_OR_RETURN(w.output, FindMatrix(file, "output.weight", c.vocab_size, c.hidden_dim));
  } else {
    w.output = w.token_embedding;  // tied embeddings
  }
  for (int i = 0; i < c.num_layers; ++i) {
    ASSIGN_OR_RETURN(LayerWeights layer, LoadLayer(file, c, w.shard, i));
    w.layers.push_back(layer);
  }
  return w;
}

}  // namespace saola::model
