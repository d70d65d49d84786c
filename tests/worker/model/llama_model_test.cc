// The forward pass on the real reference model: batching, chunking and rollback must not change
// the numbers, and malformed batches are rejected before anything is written.
//
// The kernels reproduce llama.cpp's arithmetic bit for bit, including its one deliberate
// inconsistency: attention over a sequence with one new token (decode) sums in another order than
// attention over several new tokens (prefill, speculative verification). So results are exactly
// equal whenever both sides use the same kind of step, whatever else shares the batch, and within
// the model's quantization noise (a few percent of the largest logit) across kinds.
#include "worker/model/llama_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "kernels/cpu/cpu_backend.h"
#include "tests/common/reference_model.h"
#include "worker/model/gguf.h"

namespace saola::model {
namespace {

constexpr int32_t kBlockSize = 16;
// Decode-order versus prefill-order attention, amplified by 8-bit activation quantization.
constexpr double kAcrossStepKinds = 5e-2;

class LlamaModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    auto file = GgufFile::Open(test::ReferenceModelPath());
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
    backend_ = std::make_unique<kernels::cpu::CpuBackend>(2);
    LlamaModel::Options options;
    options.max_batch_tokens = 64;
    auto model = LlamaModel::Load(*file_, *backend_, options);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto kv = KvCacheStorage::Create(*backend_, model_->KvShape(32, kBlockSize));
    ASSERT_TRUE(kv.ok()) << kv.status();
    kv_ = std::move(*kv);
  }

  std::vector<int32_t> RandomTokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> pick(0, model_->config().vocab_size - 1);
    std::vector<int32_t> ids(n);
    for (auto& id : ids) id = pick(rng);
    return ids;
  }

  // Logits of one sequence fed in `chunks` steps with the given block table.
  std::vector<float> Run(const std::vector<int32_t>& tokens, const std::vector<int>& chunks,
                         const std::vector<int32_t>& table, int start = 0) {
    std::span<const float> logits;
    int done = start;
    for (int chunk : chunks) {
      StepBatch batch;
      batch.token_ids.assign(tokens.begin() + done, tokens.begin() + done + chunk);
      batch.seqs.push_back({chunk, done + chunk, table, 1});
      auto out = model_->Forward(batch, *kv_);
      EXPECT_TRUE(out.ok()) << out.status();
      if (!out.ok()) return {};
      logits = *out;
      done += chunk;
    }
    return std::vector<float>(logits.begin(), logits.end());
  }

  static double NormalizedError(std::span<const float> a, std::span<const float> b) {
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(double(a[i]) - b[i]));
      max_ref = std::max(max_ref, std::fabs(double(b[i])));
    }
    return max_diff / max_ref;
  }

  std::vector<int32_t> Table(int first, int count) {
    std::vector<int32_t> t(count);
    std::iota(t.begin(), t.end(), first);
    return t;
  }

  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<kernels::cpu::CpuBackend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCacheStorage> kv_;
};

TEST_F(LlamaModelTest, ReadsTheReferenceConfig) {
  const ModelConfig& c = model_->config();
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_dim, 576);
  EXPECT_EQ(c.ffn_dim, 1536);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_FLOAT_EQ(c.rope.freq_base, 100000.0f);
  EXPECT_EQ(c.rope.rope_dim, 64);
}

TEST_F(LlamaModelTest, ChunkedPrefillEqualsOneStep) {
  const auto tokens = RandomTokens(50, 1);
  const auto one = Run(tokens, {50}, Table(0, 4));
  const auto chunked = Run(tokens, {16, 16, 7, 11}, Table(4, 4));
  ASSERT_EQ(one.size(), chunked.size());
  EXPECT_EQ(chunked, one);
}

TEST_F(LlamaModelTest, TokenByTokenEqualsPrefill) {
  const auto tokens = RandomTokens(20, 2);
  const auto prefill = Run(tokens, {20}, Table(0, 2));
  const auto stepwise = Run(tokens, std::vector<int>(20, 1), Table(2, 2));
  EXPECT_LT(NormalizedError(stepwise, prefill), kAcrossStepKinds);
  // The same decode steps again give the same bits.
  EXPECT_EQ(Run(tokens, std::vector<int>(20, 1), Table(4, 2)), stepwise);
}

TEST_F(LlamaModelTest, ScatteredBlockTableEqualsContiguous) {
  const auto tokens = RandomTokens(45, 3);
  const auto contiguous = Run(tokens, {45}, Table(0, 3));
  const auto scattered = Run(tokens, {45}, {17, 5, 29});
  EXPECT_EQ(scattered, contiguous);
}

TEST_F(LlamaModelTest, BatchOfSequencesEqualsEachAlone) {
  const auto a = RandomTokens(23, 4);
  const auto b = RandomTokens(40, 5);
  const auto alone_a = Run(a, {23}, Table(0, 2));
  const auto alone_b = Run(b, {40}, Table(2, 3));

  const auto table_a = Table(8, 2), table_b = Table(12, 3);
  StepBatch batch;
  batch.token_ids = a;
  batch.token_ids.insert(batch.token_ids.end(), b.begin(), b.end());
  batch.seqs.push_back({23, 23, table_a, 1});
  batch.seqs.push_back({40, 40, table_b, 1});
  auto out = model_->Forward(batch, *kv_);
  ASSERT_TRUE(out.ok()) << out.status();
  const size_t vocab = model_->config().vocab_size;
  ASSERT_EQ(out->size(), 2 * vocab);
  EXPECT_EQ(std::vector<float>(out->begin(), out->begin() + vocab), alone_a);
  EXPECT_EQ(std::vector<float>(out->begin() + vocab, out->end()), alone_b);
}

TEST_F(LlamaModelTest, AllPositionLogitsEqualStepwiseLogits) {
  // Speculative verification asks for the logits of every new token at once.
  const auto tokens = RandomTokens(12, 6);
  const auto table = Table(0, 1);
  Run(tokens, {8}, table);
  StepBatch batch;
  batch.token_ids.assign(tokens.begin() + 8, tokens.end());
  batch.seqs.push_back({4, 12, table, 4});
  auto all = model_->Forward(batch, *kv_);
  ASSERT_TRUE(all.ok()) << all.status();
  const std::vector<float> verify(all->begin(), all->end());
  const size_t vocab = model_->config().vocab_size;
  ASSERT_EQ(verify.size(), 4 * vocab);
  const auto other = Table(1, 1);
  Run(tokens, {8}, other);
  for (int i = 0; i < 4; ++i) {
    const auto step = Run(tokens, {1}, other, 8 + i);
    EXPECT_LT(NormalizedError(std::span<const float>(verify).subspan(i * vocab, vocab), step),
              kAcrossStepKinds)
        << "position " << 8 + i;
  }
  // Against a prefill of the same tokens (the same kind of step), the last row is exact.
  const auto prefill = Run(tokens, {12}, Table(2, 1));
  EXPECT_EQ(std::vector<float>(verify.end() - vocab, verify.end()), prefill);
}

TEST_F(LlamaModelTest, RollbackThenAppendEqualsFreshRun) {
  // Rejected draft tokens are rolled back by restarting at a shorter context_len.
  const auto prefix = RandomTokens(30, 7);
  auto draft = prefix;
  const auto rejected = RandomTokens(5, 8);
  draft.insert(draft.end(), rejected.begin(), rejected.end());
  const auto table = Table(0, 3);
  Run(draft, {35}, table);  // the prefix plus 5 tokens that get rejected
  auto accepted = prefix;
  const auto fresh_tail = RandomTokens(3, 9);
  accepted.insert(accepted.end(), fresh_tail.begin(), fresh_tail.end());
  const auto after_rollback = Run(accepted, {3}, table, 30);
  const auto fresh = Run(accepted, {33}, Table(3, 3));
  EXPECT_EQ(after_rollback, fresh);
}

TEST_F(LlamaModelTest, RejectsMalformedBatchesWithoutTouchingTheCache) {
  const auto table = Table(0, 2);
  const kernels::KvLayer layer0 = kv_->layer(0);
  const size_t layer_bytes = size_t{32} * kBlockSize * layer0.num_kv_heads * layer0.head_dim * 2;
  std::vector<uint8_t> before(layer_bytes);
  std::memcpy(before.data(), layer0.k, layer_bytes);

  struct Case {
    const char* what;
    StepBatch batch;
  };
  std::vector<int32_t> bad_table = {0, 99};
  std::vector<Case> cases;
  cases.push_back({"token id", {{5, 49152}, {{2, 2, table, 1}}}});
  cases.push_back({"token id", {{-1}, {{1, 1, table, 1}}}});
  cases.push_back({"block id", {{1, 2, 3}, {{3, 20, bad_table, 1}}}});
  cases.push_back({"blocks for", {{1, 2, 3}, {{3, 40, table, 1}}}});
  cases.push_back({"new tokens", {{1, 2, 3}, {{3, 2, table, 1}}}});
  cases.push_back({"cover", {{1, 2, 3}, {{2, 2, table, 1}}}});
  cases.push_back({"logits", {{1, 2}, {{2, 2, table, 3}}}});
  cases.push_back({"tokens, expected", {std::vector<int32_t>(65, 1), {{65, 65, Table(0, 5), 1}}}});
  cases.push_back({"tokens, expected", {{}, {}}});
  for (const Case& c : cases) {
    auto out = model_->Forward(c.batch, *kv_);
    ASSERT_FALSE(out.ok()) << c.what;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find(c.what), std::string::npos) << out.status();
  }
  EXPECT_EQ(std::memcmp(before.data(), layer0.k, layer_bytes), 0);
}

TEST(ShardLayoutTest, SplitsHeadsAndReplicatesKvHeads) {
  ModelConfig c;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.ffn_dim = 1536;
  auto three = ComputeShardLayout(c, {2, 3});
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->q_head_begin, 6);
  EXPECT_EQ(three->num_q_heads, 3);
  EXPECT_EQ(three->kv_head_begin, 2);
  EXPECT_EQ(three->num_kv_heads, 1);
  EXPECT_EQ(three->ffn_begin, 1024);
  EXPECT_EQ(three->ffn_dim, 512);

  c.num_heads = 8;
  c.num_kv_heads = 2;
  auto four = ComputeShardLayout(c, {3, 4});  // 2 KV heads over 4 ranks: each replicated twice
  ASSERT_TRUE(four.ok());
  EXPECT_EQ(four->q_head_begin, 6);
  EXPECT_EQ(four->num_q_heads, 2);
  EXPECT_EQ(four->kv_head_begin, 1);
  EXPECT_EQ(four->num_kv_heads, 1);

  auto bad = ComputeShardLayout(c, {0, 3});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("do not split"), std::string::npos);
  EXPECT_FALSE(ComputeShardLayout(c, {4, 4}).ok());
}

}  // namespace
}  // namespace saola::model
