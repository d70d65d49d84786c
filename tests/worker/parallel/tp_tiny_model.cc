#include "tests/worker/parallel/tp_tiny_model.h"

#include <numeric>
#include <vector>

#include "kernels/dtype.h"
#include "tests/common/gguf_writer.h"

namespace saola::test {
namespace {

// GPT-2's byte-to-unicode alphabet: printable bytes stand for themselves, the rest are mapped
// to U+0100 and up, in byte order.
std::string ByteToken(int byte) {
  const bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) ||
                         (byte >= 174 && byte <= 255);
  int code = byte;
  if (!printable) {
    int n = 0;
    for (int b = 0; b < byte; ++b) {
      if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) ++n;
    }
    code = 256 + n;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {
    utf8 += static_cast<char>(0xC0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3F));
  }
  return utf8;
}

}  // namespace

absl::Status WriteTinyTensorParallelModel(const std::string& path) {
  constexpr int64_t kHidden = 128, kHeads = 8, kKvHeads = 4, kFfn = 256, kLayers = 2;
  constexpr int64_t kVocab = 300;
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddString("general.name", "tiny-tp");
  w.AddUint32("llama.block_count", kLayers);
  w.AddUint32("llama.embedding_length", kHidden);
  w.AddUint32("llama.feed_forward_length", kFfn);
  w.AddUint32("llama.attention.head_count", kHeads);
  w.AddUint32("llama.attention.head_count_kv", kKvHeads);
  w.AddUint32("llama.context_length", 2048);
  w.AddFloat32("llama.rope.freq_base", 10000.0f);
  w.AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);

  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(ByteToken(b));
    types.push_back(1);
  }
  tokens.push_back("<|endoftext|>");
  types.push_back(3);  // control
  std::vector<std::string> merges;
  const std::string letters = "etaoinshr";
  for (char a : letters) {
    for (char b : letters) {
      if (static_cast<int64_t>(tokens.size()) == kVocab) break;
      merges.push_back(std::string(1, a) + " " + std::string(1, b));
      tokens.push_back(std::string(1, a) + std::string(1, b));
      types.push_back(1);
    }
  }
  w.AddString("tokenizer.ggml.model", "gpt2");
  w.AddString("tokenizer.ggml.pre", "default");
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  w.AddIntArray("tokenizer.ggml.token_type", model::GgufType::kInt32, types);
  w.AddStringArray("tokenizer.ggml.merges", merges);
  w.AddUint32("tokenizer.ggml.bos_token_id", 256);
  w.AddUint32("tokenizer.ggml.eos_token_id", 256);
  w.AddBool("tokenizer.ggml.add_bos_token", false);

  uint64_t seed = 1;
  auto tensor = [&](const std::string& name, std::vector<int64_t> dims) {
    const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<>());
    w.AddTensor(name, kernels::DType::kF32, dims,
                RandomTensorData(kernels::DType::kF32, n, seed++));
  };
  const int64_t kv = kKvHeads * (kHidden / kHeads);
  tensor("token_embd.weight", {kHidden, kVocab});
  tensor("output_norm.weight", {kHidden});
  tensor("output.weight", {kHidden, kVocab});
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    tensor(b + "attn_norm.weight", {kHidden});
    tensor(b + "ffn_norm.weight", {kHidden});
    tensor(b + "attn_q.weight", {kHidden, kHidden});
    tensor(b + "attn_k.weight", {kHidden, kv});
    tensor(b + "attn_v.weight", {kHidden, kv});
    tensor(b + "attn_output.weight", {kHidden, kHidden});
    tensor(b + "ffn_gate.weight", {kHidden, kFfn});
    tensor(b + "ffn_up.weight", {kHidden, kFfn});
    tensor(b + "ffn_down.weight", {kFfn, kHidden});
  }
  return w.WriteFile(path);
}

}  // namespace saola::test
