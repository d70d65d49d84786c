// Tensor parallelism end to end: `saola-worker generate --tp-size N` (N real processes meeting in
// the host collectives) against N = 1 on the same model and prompts.
//
// Rule: greedy ids must equal those of one rank. A divergence is allowed only at a near-tie (one
// rank's logits for its token and for the group's within kNearTie), and the prompt is compared no
// further. Before that, every logit one rank recorded (its top 5 per step) must be within the
// tolerance of the group's. The all-reduce sums in rank order, so a group's result is deterministic;
// it differs from one rank's only by the order of the partial sums of the row-split matmuls.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "tests/common/reference_model.h"
#include "tests/worker/parallel/tp_tiny_model.h"

namespace saola::test {
namespace {

struct Generation {
  int exit_code = -1;
  std::string err;
  std::vector<int> ids;
  std::vector<std::vector<std::pair<int, double>>> top;  // per step: (id, logit), best first
};

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

Generation Generate(const std::string& model, const std::string& prompt, int tp_size,
                    int max_tokens) {
  const std::string err_path = ::testing::TempDir() + "/tp_generate_err";
  const std::string cmd = std::string(SAOLA_BINARY_DIR) + "/bin/saola-worker generate --model " +
                          Quote(model) + " --prompt " + Quote(prompt) + " --max-tokens " +
                          std::to_string(max_tokens) +
                          " --ignore-eos --json --top-logits 5 --threads 2 --tp-size " +
                          std::to_string(tp_size) + " 2>" + err_path;
  Generation g;
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  g.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_path);
  g.err.assign(std::istreambuf_iterator<char>(err), {});
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const size_t nl = out.rfind('\n');
  auto doc = json::Parse(nl == std::string::npos ? out : out.substr(nl + 1));
  if (!doc.ok() || doc->Find("ids") == nullptr || doc->Find("top_logits") == nullptr) {
    g.exit_code = g.exit_code == 0 ? -2 : g.exit_code;
    return g;
  }
  for (const json::Value& v : doc->Find("ids")->arr()) g.ids.push_back(static_cast<int>(v.num()));
  for (const json::Value& step : doc->Find("top_logits")->arr()) {
    g.top.emplace_back();
    for (const json::Value& pair : step.arr()) {
      g.top.back().emplace_back(static_cast<int>(pair.arr()[0].num()), pair.arr()[1].num());
    }
  }
  return g;
}

struct Comparison {
  double max_logit_diff = 0;
  int near_ties = 0;
};

// Compares a group's generation with one rank's under the rule above.
void Compare(const Generation& one, const Generation& group, double tolerance, double near_tie,
             Comparison* c) {
  ASSERT_EQ(group.ids.size(), one.ids.size());
  ASSERT_EQ(group.top.size(), one.top.size());
  for (size_t step = 0; step < one.ids.size(); ++step) {
    for (const auto& [id, logit] : one.top[step]) {
      for (const auto& [group_id, group_logit] : group.top[step]) {
        if (group_id != id) continue;
        const double diff = std::fabs(group_logit - logit);
        c->max_logit_diff = std::max(c->max_logit_diff, diff);
        EXPECT_LE(diff, tolerance) << "step " << step << " token " << id;
      }
    }
    if (group.ids[step] == one.ids[step]) continue;
    double one_for_group = -INFINITY;
    for (const auto& [id, logit] : one.top[step]) {
      if (id == group.ids[step]) one_for_group = logit;
    }
    EXPECT_LE(one.top[step][0].second - one_for_group, near_tie)
        << "step " << step << ": the group chose " << group.ids[step] << ", one rank "
        << one.ids[step];
    ++c->near_ties;
    return;
  }
}

TEST(TpGenerateTest, TinyModelGivesTheSameTokensOnTwoAndFourRanks) {
  const std::string model = ::testing::TempDir() + "/tp_tiny.gguf";
  ASSERT_TRUE(WriteTinyTensorParallelModel(model).ok());
  const std::vector<std::string> prompts = {"the rain in spain stays", "hello", "0123456789 ab"};
  Comparison two, four;
  for (const std::string& prompt : prompts) {
    SCOPED_TRACE(prompt);
    const Generation one = Generate(model, prompt, 1, 24);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    ASSERT_EQ(one.ids.size(), 24u);
    for (auto [size, comparison] : {std::pair{2, &two}, std::pair{4, &four}}) {
      SCOPED_TRACE("tp " + std::to_string(size));
      const Generation group = Generate(model, prompt, size, 24);
      ASSERT_EQ(group.exit_code, 0) << group.err;
      // F32 weights: only the summation order differs. Float rounding, amplified where a key or
      // value lands on the other side of an f16 rounding step in the KV cache: measured up to
      // 2e-3 on logits of about 10.
      Compare(one, group, /*tolerance=*/1e-2, /*near_tie=*/1e-2, comparison);
    }
  }
  EXPECT_EQ(two.near_ties, 0);
  EXPECT_EQ(four.near_ties, 0);
  std::printf("tiny model: largest |logit(TP=2) - logit(TP=1)| = %.3g, TP=4: %.3g\n",
              two.max_logit_diff, four.max_logit_diff);
}

TEST(TpGenerateTest, ReferenceModelGivesTheSameTokensOnThreeRanks) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  // Prompts whose first steps are not near-ties (one diverges at a near-tie at step 13).
  const std::vector<std::string> prompts = {"The capital of France is", "Water boils at",
                                            "def fibonacci(n):"};
  Comparison three;
  for (const std::string& prompt : prompts) {
    SCOPED_TRACE(prompt);
    const Generation one = Generate(ReferenceModelPath(), prompt, 1, 32);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const Generation group = Generate(ReferenceModelPath(), prompt, 3, 32);  // 9 heads, 3 KV
    ASSERT_EQ(group.exit_code, 0) << group.err;
    // Q4_1 weights: activations are quantized to 8 bits before each matmul, so a last-bit
    // difference after the all-reduce can move a quantization step, and 30 layers amplify it
    // (see tensor_parallel_test): measured up to 0.74 on logits of 15 to 35. Divergences seen
    // were at gaps of 0.035 to 0.15.
    Compare(one, group, /*tolerance=*/1.0, /*near_tie=*/0.5, &three);
  }
  std::printf("SmolLM2-135M: largest |logit(TP=3) - logit(TP=1)| = %.3g, %d near-tie "
              "divergences\n",
              three.max_logit_diff, three.near_ties);
}

TEST(TpGenerateTest, ASizeThatDoesNotSplitTheHeadsFailsClearly) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const Generation g = Generate(ReferenceModelPath(), "hi", 2, 4);  // 9 heads
  EXPECT_EQ(g.exit_code, 2) << g.err;
  EXPECT_NE(g.err.find("do not split across 2 ranks"), std::string::npos) << g.err;
}

}  // namespace
}  // namespace saola::test
