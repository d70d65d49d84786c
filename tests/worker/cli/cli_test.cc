// The saola-worker binary as a user runs it: real process, real model, exit codes and output.
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

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `saola-worker args` with `input` on stdin; stdout and stderr captured separately.
Outcome RunWorker(const std::string& args, const std::string& input = "") {
  const std::string dir = ::testing::TempDir();
  const std::string in_path = dir + "/cli_in", err_path = dir + "/cli_err";
  std::ofstream(in_path) << input;
  const std::string cmd = std::string(SAOLA_BINARY_DIR) + "/bin/saola-worker " + args + " <" +
                          in_path + " 2>" + err_path;
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

std::string LastLine(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

std::string Model() { return Quote(test::ReferenceModelPath()); }

std::vector<int> IdsOf(const json::Value& doc) {
  std::vector<int> ids;
  for (const json::Value& v : doc.Find("ids")->arr()) ids.push_back(static_cast<int>(v.num()));
  return ids;
}

TEST(CliTest, BadInputExitsWithCodeTwoAndOneLine) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const std::string not_gguf = ::testing::TempDir() + "/not_a_model.gguf";
  std::ofstream(not_gguf) << "this is not a gguf file at all, just text";
  struct Case {
    std::string args;
    std::string message;
  };
  const Case cases[] = {
      {"", "usage"},
      {"frobnicate", "unknown command"},
      {"generate --prompt hi", "--model is required"},
      {"generate --model /nonexistent/x.gguf --prompt hi", "/nonexistent/x.gguf"},
      {"generate --model " + Quote(not_gguf) + " --prompt hi", "not a GGUF file"},
      {"generate --model " + Model() + " --prompt hi --threads 0", "--threads"},
      {"generate --model " + Model() + " --prompt hi --max-tokens -3", "--max-tokens"},
      {"generate --model " + Model() + " --prompt hi --temperature -1", "--temperature"},
      {"generate --model " + Model() + " --prompt hi --temperature nan", "--temperature"},
      {"generate --model " + Model() + " --prompt hi --device tpu", "--device must be cpu or cuda"},
      {"generate --model " + Model() + " --prompt hi --max-tokens 9000", "context"},
      {"generate --model " + Model() + " --prompt hi --bogus", "unknown flag --bogus"},
      {"generate --model " + Model() + " --prompt ''", "--prompt"},
      {"bench --model " + Model() + " --prompt-tokens 100000", "context"},
  };
  for (const Case& c : cases) {
    const Outcome o = RunWorker(c.args);
    EXPECT_EQ(o.exit_code, 2) << c.args << "\n" << o.err;
    EXPECT_NE(o.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << o.err;
    EXPECT_TRUE(o.out.empty()) << c.args;
  }
}

TEST(CliTest, GenerateJsonReportsIdsTextAndSpeed) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const Outcome o = RunWorker("generate --model " + Model() +
                              " --prompt 'The capital of France is' --max-tokens 8 --threads 2 --json");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto doc = json::Parse(LastLine(o.out));
  ASSERT_TRUE(doc.ok()) << doc.status() << "\n" << o.out;
  const auto& prompt_ids = doc->Find("prompt_ids")->arr();
  const auto& ids = doc->Find("ids")->arr();
  ASSERT_EQ(prompt_ids.size(), 5u);  // "The", " capital", " of", " France", " is"
  EXPECT_GE(ids.size(), 1u);
  EXPECT_LE(ids.size(), 8u);
  const std::string text = doc->Find("text")->str();
  EXPECT_FALSE(text.empty());
  EXPECT_NE(o.out.find(text), std::string::npos) << "the text was streamed before the JSON line";
  EXPECT_GT(doc->Find("prefill_tokens_per_s")->num(), 0);
  EXPECT_GT(doc->Find("decode_tokens_per_s")->num(), 0);

  // Greedy decoding is deterministic, whatever the thread count.
  const Outcome again = RunWorker("generate --model " + Model() +
                                  " --prompt 'The capital of France is' --max-tokens 8 --threads 1 --json");
  ASSERT_EQ(again.exit_code, 0);
  auto again_doc = json::Parse(LastLine(again.out));
  ASSERT_TRUE(again_doc.ok()) << again.out;
  EXPECT_EQ(IdsOf(*again_doc), IdsOf(*doc));
  EXPECT_EQ(again_doc->Find("text")->str(), text);
}

TEST(CliTest, SeededSamplingIsReproducible) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const std::string args = "generate --model " + Model() +
                           " --prompt 'Once upon a time' --max-tokens 16 --ignore-eos "
                           "--temperature 1.5 --json --seed ";
  std::vector<std::vector<int>> runs;
  for (const char* seed : {"7", "7", "8"}) {
    const Outcome o = RunWorker(args + seed);
    ASSERT_EQ(o.exit_code, 0) << o.err;
    auto doc = json::Parse(LastLine(o.out));
    ASSERT_TRUE(doc.ok()) << o.out;
    runs.push_back(IdsOf(*doc));
  }
  EXPECT_EQ(runs[0].size(), 16u);
  EXPECT_EQ(runs[0], runs[1]);  // same seed, same tokens
  EXPECT_NE(runs[0], runs[2]);  // the seed (and the temperature) are really used
}

TEST(CliTest, TokenizeReadsJsonLines) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const Outcome o = RunWorker("tokenize --model " + Model() + " --json",
                              "{\"text\": \"Hello world\"}\n\n{\"text\": \"<|im_start|>user\"}\n");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = o.out.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(o.out.substr(start, nl - start));
  }
  ASSERT_EQ(lines.size(), 2u) << o.out;
  EXPECT_EQ(lines[0], "{\"ids\":[19556,905]}");
  EXPECT_EQ(lines[1].rfind("{\"ids\":[1,", 0), 0u) << "<|im_start|> is the special token 1: " << lines[1];

  const Outcome bad = RunWorker("tokenize --model " + Model() + " --json", "{\"txt\": 1}\n");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("line 1"), std::string::npos) << bad.err;
}

TEST(CliTest, BenchPrintsJson) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  const Outcome o = RunWorker("bench --model " + Model() +
                              " --prompt-tokens 32 --gen-tokens 4 --repetitions 1 --threads 2 --json");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto doc = json::Parse(LastLine(o.out));
  ASSERT_TRUE(doc.ok()) << o.out;
  EXPECT_GT(doc->Find("prefill_tokens_per_s")->num(), 0);
  EXPECT_GT(doc->Find("decode_tokens_per_s")->num(), 0);
}

}  // namespace
}  // namespace saola::cli
