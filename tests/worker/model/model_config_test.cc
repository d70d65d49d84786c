// Loading a model whose GGUF parses but whose metadata or tensors are inconsistent: each case must
// give a clear error naming the key or tensor, never a crash or a huge allocation. Small F32
// models are written by the test itself.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <set>

#include "kernels/cpu/cpu_backend.h"
#include "tests/common/gguf_writer.h"
#include "worker/model/gguf.h"
#include "worker/model/llama_model.h"

namespace saola::model {
namespace {

using kernels::DType;

struct TinyModel {
  std::string architecture = "llama";
  uint32_t block_count = 1;
  uint32_t hidden = 64;
  uint32_t heads = 2;
  uint32_t kv_heads = 1;
  uint32_t ffn = 128;
  uint32_t vocab = 64;
  std::optional<uint32_t> vocab_key;
  float freq_base = 10000.0f;
  float eps = 1e-5f;
  std::set<std::string> skip;  // tensors left out

  std::unique_ptr<GgufFile> Build() const {
    test::GgufWriter w;
    w.AddString("general.architecture", architecture);
    const std::string p = architecture + ".";
    w.AddUint32(p + "block_count", block_count);
    w.AddUint32(p + "embedding_length", hidden);
    w.AddUint32(p + "feed_forward_length", ffn);
    w.AddUint32(p + "attention.head_count", heads);
    w.AddUint32(p + "attention.head_count_kv", kv_heads);
    w.AddUint32(p + "context_length", 128);
    w.AddFloat32(p + "rope.freq_base", freq_base);
    w.AddFloat32(p + "attention.layer_norm_rms_epsilon", eps);
    if (vocab_key) w.AddUint32(p + "vocab_size", *vocab_key);
    uint64_t seed = 1;
    auto tensor = [&](const std::string& name, std::vector<int64_t> dims) {
      if (skip.count(name)) return;
      const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<>());
      w.AddTensor(name, DType::kF32, dims, test::RandomTensorData(DType::kF32, n, seed++));
    };
    const int64_t h = hidden, kv = int64_t{kv_heads} * (hidden / heads);
    tensor("token_embd.weight", {h, vocab});
    tensor("output_norm.weight", {h});
    for (uint32_t l = 0; l < 1; ++l) {  // only layer 0 exists, whatever block_count says
      const std::string b = "blk." + std::to_string(l) + ".";
      tensor(b + "attn_norm.weight", {h});
      tensor(b + "ffn_norm.weight", {h});
      tensor(b + "attn_q.weight", {h, h});
      tensor(b + "attn_k.weight", {h, kv});
      tensor(b + "attn_v.weight", {h, kv});
      tensor(b + "attn_output.weight", {h, h});
      tensor(b + "ffn_gate.weight", {h, ffn});
      tensor(b + "ffn_up.weight", {h, ffn});
      tensor(b + "ffn_down.weight", {ffn, h});
    }
    auto file = GgufFile::FromBytes(w.ToBytes());
    EXPECT_TRUE(file.ok()) << file.status();
    return file.ok() ? std::move(*file) : nullptr;
  }
};

absl::Status Load(const TinyModel& tiny) {
  auto file = tiny.Build();
  if (file == nullptr) return absl::InternalError("writer");
  kernels::cpu::CpuBackend backend(1);
  return LlamaModel::Load(*file, backend, {}).status();
}

void ExpectError(const TinyModel& tiny, absl::StatusCode code, const std::string& substring) {
  const absl::Status status = Load(tiny);
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_NE(status.message().find(substring), std::string::npos) << status;
}

TEST(ModelConfigTest, TinyModelLoadsAndRuns) {
  TinyModel tiny;
  auto file = tiny.Build();
  ASSERT_NE(file, nullptr);
  kernels::cpu::CpuBackend backend(1);
  auto model = LlamaModel::Load(*file, backend, {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto kv = KvCacheStorage::Create(backend, (*model)->KvShape(1, 16));
  ASSERT_TRUE(kv.ok());
  const std::vector<int32_t> table = {0};
  StepBatch batch{{1, 2, 3}, {{3, 3, table, 1}}};
  auto logits = (*model)->Forward(batch, **kv);
  ASSERT_TRUE(logits.ok()) << logits.status();
  ASSERT_EQ(logits->size(), 64u);
  for (float v : *logits) EXPECT_TRUE(std::isfinite(v));
}

TEST(ModelConfigTest, HugeLayerCountFailsOnTheFirstMissingLayer) {
  TinyModel tiny;
  tiny.block_count = 2000000000;
  ExpectError(tiny, absl::StatusCode::kInvalidArgument, "missing tensor blk.1.");
}

TEST(ModelConfigTest, RejectsInconsistentShapes) {
  TinyModel heads;
  heads.heads = 3;  // 64 is not a multiple of 3
  ExpectError(heads, absl::StatusCode::kInvalidArgument, "not a multiple of head_count");
  TinyModel kv;
  kv.kv_heads = 3;  // 2 heads are not a multiple of 3 KV heads
  ExpectError(kv, absl::StatusCode::kInvalidArgument, "head_count_kv");
  TinyModel vocab;
  vocab.vocab_key = 100;  // the key says 100, the embedding has 64 rows
  ExpectError(vocab, absl::StatusCode::kInvalidArgument, "token_embd.weight must be [100 x 64]");
  TinyModel missing;
  missing.skip = {"blk.0.attn_q.weight"};
  ExpectError(missing, absl::StatusCode::kInvalidArgument, "missing tensor blk.0.attn_q.weight");
}

TEST(ModelConfigTest, RejectsNonFiniteHyperParameters) {
  TinyModel base;
  base.freq_base = std::numeric_limits<float>::quiet_NaN();
  ExpectError(base, absl::StatusCode::kInvalidArgument, "rope.freq_base");
  TinyModel eps;
  eps.eps = std::numeric_limits<float>::infinity();
  ExpectError(eps, absl::StatusCode::kInvalidArgument, "layer_norm_rms_epsilon");
}

TEST(ModelConfigTest, RejectsOtherArchitectures) {
  TinyModel gpt2;
  gpt2.architecture = "gpt2";
  ExpectError(gpt2, absl::StatusCode::kUnimplemented, "unsupported architecture 'gpt2'");
}

}  // namespace
}  // namespace saola::model
