// Parity with llama.cpp on the reference model: greedy continuations and logits against golden
// fixtures made by tests/golden/make_fixtures.py with llama.cpp itself.
//
// Rule: generated ids must equal llama.cpp's. A divergence is allowed only at a near-tie — where
// llama.cpp's own logits for its token and for ours are within kNearTie — and the case stops being
// compared there (the continuations legitimately differ afterwards). Before that point, every
// logit llama.cpp recorded (its top 5 per step) must be within kLogitTolerance of ours.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "tests/common/golden_cases.h"
#include "tests/common/reference_model.h"
#include "worker/engine/generator.h"
#include "worker/model/gguf.h"
#include "worker/model/llama_model.h"
#include "worker/model/tokenizer.h"

namespace saola::model {
namespace {

constexpr double kNearTie = 0.05;
// llama.cpp quantizes activations and rounds attention inputs to f16 in places where we keep
// float; measured differences on the fixtures stay well below this bound.
constexpr double kLogitTolerance = 0.25;

using test::GoldenCase;
using test::LoadGoldenCases;

class ParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    auto file = GgufFile::Open(test::ReferenceModelPath());
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
    auto spec = LoadTokenizerSpec(*file_);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto tokenizer = Tokenizer::Create(std::move(*spec));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    backend_ = std::make_unique<kernels::cpu::CpuBackend>(2);
    auto model = LlamaModel::Load(*file_, *backend_, {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }

  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<kernels::cpu::CpuBackend> backend_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_F(ParityTest, GreedyTokensAndLogitsMatchLlamaCpp) {
  const std::vector<GoldenCase> cases = LoadGoldenCases();
  ASSERT_GE(cases.size(), 10u);
  int identical = 0, near_ties = 0;
  double worst_logit_diff = 0;
  for (const GoldenCase& g : cases) {
    SCOPED_TRACE(g.name);
    EXPECT_EQ(tokenizer_->Encode(g.prompt, true, true), g.prompt_ids);
    auto generator = engine::Generator::Create(
        *model_, *backend_, static_cast<int32_t>(g.prompt_ids.size() + g.ids.size()));
    ASSERT_TRUE(generator.ok()) << generator.status();
    engine::GenerateOptions options;
    options.max_tokens = static_cast<int32_t>(g.ids.size());
    options.ignore_eos = true;
    auto result = (*generator)->Generate(g.prompt_ids, options, /*top_k_logits=*/20);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->ids.size(), g.ids.size());

    bool diverged = false;
    for (size_t step = 0; step < g.ids.size() && !diverged; ++step) {
      // Logits: every id llama.cpp recorded at this step, compared with ours.
      const auto& ours = result->top_logits[step];
      for (const auto& [id, theirs] : g.top5[step]) {
        for (const auto& [our_id, our_logit] : ours) {
          if (our_id != id) continue;
          const double diff = std::fabs(our_logit - theirs);
          worst_logit_diff = std::max(worst_logit_diff, diff);
          EXPECT_LE(diff, kLogitTolerance) << "step " << step << " token " << id;
        }
      }
      if (result->ids[step] == g.ids[step]) continue;
      // A divergence: allowed only where llama.cpp itself nearly tied the two tokens.
      double their_best = g.top5[step][0].second, their_for_ours = -INFINITY;
      for (const auto& [id, logit] : g.top5[step]) {
        if (id == result->ids[step]) their_for_ours = logit;
      }
      EXPECT_LE(their_best - their_for_ours, kNearTie)
          << "step " << step << ": we chose " << result->ids[step] << ", llama.cpp " << g.ids[step];
      diverged = true;
      ++near_ties;
    }
    if (!diverged) ++identical;
  }
  std::printf("parity: %d of %zu cases identical for all tokens, %d diverged at a near-tie; "
              "largest logit difference %.4f\n",
              identical, cases.size(), near_ties, worst_logit_diff);
}

}  // namespace
}  // namespace saola::model
