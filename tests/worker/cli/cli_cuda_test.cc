// `saola-worker generate|bench --device cuda` as a user runs them. Where the worker has no CUDA
// (no device, or a build without it) the command must fail with exit code 2 and say so; the
// test checks that and then skips. With a device, greedy tokens equal --device cpu's up to a
// near tie: a divergence is allowed only where the CPU's logits for its token and the GPU's are
// within kNearTie (the GPU keeps float activations where the CPU quantizes them).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "tests/common/reference_model.h"

namespace saola::cli {
namespace {

constexpr double kNearTie = 0.05;

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

Outcome RunWorker(const std::string& args) {
  const std::string err_path = ::testing::TempDir() + "/cli_cuda_err";
  const std::string cmd =
      std::string(SAOLA_BINARY_DIR) + "/bin/saola-worker " + args + " </dev/null 2>" + err_path;
  Outcome o;
  FILE* pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) o.out.append(buf, n);
  const int status = pclose(pipe);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_path);
  o.err.assign(std::istreambuf_iterator<char>(err), {});
  return o;
}

std::string LastLine(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

std::string Model() { return "'" + test::ReferenceModelPath() + "'"; }

// Skips (after checking the failure is the documented one) when this worker cannot use CUDA.
#define SAOLA_REQUIRE_CUDA_WORKER(outcome)                                            \
  do {                                                                                \
    const std::string& e = (outcome).err;                                             \
    const bool no_device = e.find("--device cuda: no CUDA device") != std::string::npos; \
    const bool no_build = e.find("--device cuda: built without CUDA") != std::string::npos; \
    if (no_device || no_build) {                                                      \
      EXPECT_EQ((outcome).exit_code, 2) << e;                                         \
      GTEST_SKIP() << (no_device ? "no CUDA device" : "saola-worker built without CUDA"); \
    }                                                                                 \
  } while (0)

TEST(CliCudaTest, GenerateOnCudaMatchesTheCpu) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const std::string common = "generate --model " + Model() +
                             " --prompt 'The capital of France is' --max-tokens 24 --ignore-eos"
                             " --json --top-logits 20 --threads 2";
  const Outcome gpu = RunWorker(common + " --device cuda");
  SAOLA_REQUIRE_CUDA_WORKER(gpu);
  ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
  const Outcome cpu = RunWorker(common + " --device cpu");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  auto gpu_doc = json::Parse(LastLine(gpu.out));
  auto cpu_doc = json::Parse(LastLine(cpu.out));
  ASSERT_TRUE(gpu_doc.ok()) << gpu.out;
  ASSERT_TRUE(cpu_doc.ok()) << cpu.out;
  const auto& gpu_ids = gpu_doc->Find("ids")->arr();
  const auto& cpu_ids = cpu_doc->Find("ids")->arr();
  const auto& cpu_top = cpu_doc->Find("top_logits")->arr();
  ASSERT_EQ(gpu_ids.size(), 24u);
  ASSERT_EQ(cpu_ids.size(), 24u);
  for (size_t step = 0; step < cpu_ids.size(); ++step) {
    if (gpu_ids[step].num() == cpu_ids[step].num()) continue;
    double best = cpu_top[step].arr()[0].arr()[1].num(), for_gpu = -1e30;
    for (const json::Value& pair : cpu_top[step].arr()) {
      if (pair.arr()[0].num() == gpu_ids[step].num()) for_gpu = pair.arr()[1].num();
    }
    EXPECT_LE(best - for_gpu, kNearTie) << "step " << step;
    break;  // the continuations legitimately differ after a near tie
  }
}

TEST(CliCudaTest, BenchRunsOnCuda) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const Outcome o = RunWorker("bench --model " + Model() +
                              " --prompt-tokens 256 --gen-tokens 32 --repetitions 1 --json"
                              " --device cuda");
  SAOLA_REQUIRE_CUDA_WORKER(o);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto doc = json::Parse(LastLine(o.out));
  ASSERT_TRUE(doc.ok()) << o.out;
  EXPECT_GT(doc->Find("prefill_tokens_per_s")->num(), 0);
  EXPECT_GT(doc->Find("decode_tokens_per_s")->num(), 0);
}

}  // namespace
}  // namespace saola::cli
