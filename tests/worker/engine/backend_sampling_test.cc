// The engine's backend-sampling path (Backend::SampleRows, StepBatch::backend_sampling) on the
// reference model: requests whose tokens a backend may pick are sampled there, the others keep
// their logits row on the host, and every request streams exactly the tokens it streams when the
// host samples everything.
//
// The backend here is the CPU backend plus SampleRows applying the host's rule
// (Sampler::SampleRow) to each row: it stands in for the CUDA sampler, which needs a GPU, so that
// the plumbing (which rows go where, the order of the sampled ids, the generator's draws) is
// checked on every CI run. The CUDA sampler itself is checked against the same rule by
// tests/kernels/cuda/cuda_sampling_test.cc on a GPU.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/common/reference_model.h"
#include "tests/kernels/cpu_delegating_backend.h"
#include "worker/engine/engine.h"
#include "worker/engine/sampler.h"
#include "worker/model/gguf.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"
#include "worker/model/tokenizer.h"

namespace saola::engine {
namespace {

using std::chrono::seconds;

// The CPU backend with SampleRows; counts the rows it sampled.
class SamplingCpuBackend final : public test::CpuDelegatingBackend {
 public:
  explicit SamplingCpuBackend(int threads) : CpuDelegatingBackend(threads) {}


  bool SamplesRows() const override { return true; }
  absl::Status SampleRows(const float* logits, int64_t vocab,
                          std::span<const kernels::RowSampling> params, int32_t* out) override {
    for (size_t i = 0; i < params.size(); ++i) {
      out[i] = Sampler::SampleRow(params[i], std::span<const float>(logits + i * vocab, vocab));
    }
    rows_sampled += static_cast<int64_t>(params.size());
    return absl::OkStatus();
  }

  std::atomic<int64_t> rows_sampled{0};
};

class Collect : public RequestSink {
 public:
  void Push(RequestOutput out) override {
    std::lock_guard lock(mu_);
    tokens_.insert(tokens_.end(), out.token_ids.begin(), out.token_ids.end());
    for (const SampledToken& t : out.logprobs) logprobs_.push_back(t.logprob);
    if (out.finished || !out.error.ok()) {
      done_ = true;
      error_ = out.error;
      cv_.notify_all();
    }
  }
  std::vector<int32_t> Wait() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, seconds(120), [&] { return done_; });
    EXPECT_TRUE(done_);
    EXPECT_TRUE(error_.ok()) << error_;
    return tokens_;
  }
  size_t num_logprobs() {
    std::lock_guard lock(mu_);
    return logprobs_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  absl::Status error_;
  std::vector<int32_t> tokens_;
  std::vector<float> logprobs_;
};

class BackendSamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    auto file = model::GgufFile::Open(test::ReferenceModelPath());
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
    auto spec = model::LoadTokenizerSpec(*file_);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto tokenizer = model::Tokenizer::Create(std::move(*spec));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
  }

  std::unique_ptr<model::LlamaModel> LoadModel(kernels::Backend& backend) {
    model::LlamaModel::Options options;
    options.max_batch_tokens = 128;
    auto model = model::LlamaModel::Load(*file_, backend, options);
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? std::move(*model) : nullptr;
  }

  // Runs every spec at once on an engine over `backend`; the tokens of each, in spec order.
  std::vector<std::vector<int32_t>> RunAll(kernels::Backend& backend,
                                           const std::vector<RequestSpec>& specs,
                                           std::vector<size_t>* logprob_counts = nullptr) {
    std::unique_ptr<model::LlamaModel> model = LoadModel(backend);
    if (model == nullptr) return {};
    auto engine = Engine::Create(*model, backend, *tokenizer_,
                                 {.max_batch_tokens = 64, .num_kv_blocks = 128});
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return {};
    std::vector<std::shared_ptr<Collect>> sinks;
    for (const RequestSpec& spec : specs) {
      sinks.push_back(std::make_shared<Collect>());
      const absl::Status submitted = (*engine)->Submit(spec, sinks.back());
      EXPECT_TRUE(submitted.ok()) << submitted;
    }
    std::vector<std::vector<int32_t>> out;
    for (auto& sink : sinks) {
      out.push_back(sink->Wait());
      if (logprob_counts != nullptr) logprob_counts->push_back(sink->num_logprobs());
    }
    return out;
  }

  std::unique_ptr<model::GgufFile> file_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
};

RequestSpec Spec(std::string id, std::vector<int32_t> prompt, int32_t max_tokens,
                 SamplingParams sampling) {
  RequestSpec spec;
  spec.id = std::move(id);
  spec.prompt = std::move(prompt);
  spec.max_tokens = max_tokens;
  spec.ignore_eos = true;
  spec.sampling = sampling;
  return spec;
}

TEST_F(BackendSamplingTest, MixedBatchStreamsTheTokensOfHostSampling) {
  const auto text = [&](const std::string& s) {
    return tokenizer_->Encode(s, /*add_special=*/false, /*parse_special=*/false);
  };
  const auto params = [](float t, int32_t k, float p, float min_p, uint64_t seed) {
    SamplingParams s;
    s.temperature = t;
    s.top_k = k;
    s.top_p = p;
    s.min_p = min_p;
    s.seed = seed;
    return s;
  };
  SamplingParams penalized = params(0.8f, 0, 0.95f, 0.0f, 5);
  penalized.repetition_penalty = 1.3f;
  SamplingParams with_logprobs = params(0.9f, 50, 1.0f, 0.0f, 6);
  with_logprobs.logprobs = true;
  with_logprobs.top_logprobs = 2;

  // A long prompt is prefilled in several chunks (max_batch_tokens 64) while the others decode.
  std::string long_text;
  for (int i = 0; i < 12; ++i) long_text += "Rivers run north to the sea with boats full of fish. ";

  const std::vector<RequestSpec> specs = {
      Spec("greedy", text("The capital of France is"), 12, params(0, 0, 1, 0, 0)),
      Spec("dense", text("Once upon a time"), 16, params(1.0f, 0, 1.0f, 0.0f, 1)),
      Spec("top-k", text("My favourite colour is"), 16, params(0.7f, 40, 1.0f, 0.0f, 2)),
      Spec("top-p", text("Write a haiku about snow"), 16, params(1.2f, 0, 0.9f, 0.0f, 3)),
      Spec("k-p-min-p", text(long_text), 10, params(0.9f, 60, 0.8f, 0.05f, 4)),
      Spec("penalized", text("List three fruits:"), 12, penalized),
      Spec("logprobs", text("Two plus two is"), 8, with_logprobs),
  };
  constexpr int kOnHost = 2;  // the last two: penalties and logprobs need the host

  kernels::cpu::CpuBackend host(2);
  std::vector<size_t> host_logprobs;
  const std::vector<std::vector<int32_t>> expected = RunAll(host, specs, &host_logprobs);

  SamplingCpuBackend sampling(2);
  std::vector<size_t> backend_logprobs;
  const std::vector<std::vector<int32_t>> got = RunAll(sampling, specs, &backend_logprobs);

  ASSERT_EQ(got.size(), specs.size());
  ASSERT_EQ(expected.size(), specs.size());
  int64_t backend_tokens = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].id);
    EXPECT_EQ(static_cast<int32_t>(got[i].size()), specs[i].max_tokens);
    EXPECT_EQ(got[i], expected[i]);
    if (i < specs.size() - kOnHost) backend_tokens += specs[i].max_tokens;
  }
  // Every token of the eligible requests, and none of the others, came from SampleRows.
  EXPECT_EQ(sampling.rows_sampled.load(), backend_tokens);
  // The host-sampled request still reports its log-probabilities.
  EXPECT_EQ(backend_logprobs.back(), static_cast<size_t>(specs.back().max_tokens));
  EXPECT_EQ(backend_logprobs, host_logprobs);
}

TEST_F(BackendSamplingTest, StepRefusesBackendSamplingItCannotHonour) {
  kernels::cpu::CpuBackend host(2);
  std::unique_ptr<model::LlamaModel> model = LoadModel(host);
  ASSERT_NE(model, nullptr);
  EXPECT_FALSE(model->SamplesOnBackend());
  auto kv = model::KvCacheStorage::Create(host, model->KvShape(4, 16));
  ASSERT_TRUE(kv.ok()) << kv.status();
  const std::vector<int32_t> blocks = {0, 1};
  model::StepBatch batch;
  batch.token_ids = {1, 2, 3};
  batch.seqs.push_back({.num_tokens = 3, .context_len = 3, .block_table = blocks,
                        .num_logits = 1, .backend_sampling = kernels::RowSampling{}});
  // The CPU backend does not sample.
  EXPECT_EQ(model->Step(batch, **kv).status().code(), absl::StatusCode::kInvalidArgument);

  SamplingCpuBackend sampling(2);
  std::unique_ptr<model::LlamaModel> sampling_model = LoadModel(sampling);
  ASSERT_NE(sampling_model, nullptr);
  EXPECT_TRUE(sampling_model->SamplesOnBackend());
  auto sampling_kv = model::KvCacheStorage::Create(sampling, sampling_model->KvShape(4, 16));
  ASSERT_TRUE(sampling_kv.ok()) << sampling_kv.status();
  // One token needs exactly one logit row.
  batch.seqs[0].num_logits = 3;
  EXPECT_EQ(sampling_model->Step(batch, **sampling_kv).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Forward returns logits only, so it refuses any backend sampling.
  batch.seqs[0].num_logits = 1;
  EXPECT_EQ(sampling_model->Forward(batch, **sampling_kv).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sampling.rows_sampled.load(), 0);

  // Accepted: one sampled token and no logits; greedy settings give the argmax of the logits
  // Forward computes for the same step.
  auto step = sampling_model->Step(batch, **sampling_kv);
  ASSERT_TRUE(step.ok()) << step.status();
  ASSERT_EQ(step->sampled.size(), 1u);
  EXPECT_TRUE(step->logits.empty());
  const int32_t sampled = step->sampled[0];
  batch.seqs[0].backend_sampling.reset();
  auto logits = sampling_model->Forward(batch, **sampling_kv);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ(sampled, Sampler::Argmax(*logits));
}

}  // namespace
}  // namespace saola::engine
