// The `saola` CLI as a user runs it: `saola up` starts a real local cluster (router and worker
// processes on loopback), `saola generate` talks to it; exit codes, streamed text, the summary
// line, --json lines, the exact cache, and a clean stop on Ctrl-C with no process left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "tests/clients/up_process.h"
#include "tests/common/reference_model.h"

namespace saola::test {
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

// Runs `saola args`; stdout and stderr captured separately.
Outcome RunSaola(const std::string& args) {
  const std::string err_path = ::testing::TempDir() + "/saola_cli_err";
  const std::string cmd =
      std::string(SAOLA_BINARY_DIR) + "/bin/saola " + args + " </dev/null 2>" + err_path;
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

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

TEST(GenerateFlagsTest, UsageErrorsExitTwoNamingTheProblem) {
  const std::string bad_json = WriteFile("bad_chat.json", "[{\"role\": \"user\", \"content\": ");
  const std::string wrong_shape = WriteFile("wrong_shape.json", "{\"messages\": [{\"role\": 1}]}");
  const std::string empty = WriteFile("empty_chat.json", "[]");
  struct Case {
    std::string args;
    std::string message;
  };
  // None of these reaches the address: flags and files are checked first.
  const Case cases[] = {
      {"generate --addr 127.0.0.1:1 --prompt hi --bogus", "unknown flag --bogus"},
      {"generate --prompt hi", "--addr is required"},
      {"generate --addr 127.0.0.1:1", "exactly one of --prompt, --chat, --chat-file"},
      {"generate --addr 127.0.0.1:1 --prompt hi --chat hi", "exactly one of"},
      {"generate --addr 127.0.0.1:1 --prompt hi --max-tokens -1", "--max-tokens"},
      {"generate --addr 127.0.0.1:1 --prompt hi --temperature x", "--temperature"},
      {"generate --addr 127.0.0.1:1 --prompt hi --semantic-threshold 2", "--semantic-threshold"},
      {"generate --addr 127.0.0.1:1 --target 127.0.0.1:1 --prompt hi", "--target"},
      {"generate --addr 127.0.0.1:1 --chat-file " + Quote(bad_json), bad_json},
      {"generate --addr 127.0.0.1:1 --chat-file " + Quote(wrong_shape), wrong_shape},
      {"generate --addr 127.0.0.1:1 --chat-file " + Quote(empty), empty},
      {"generate --addr 127.0.0.1:1 --chat-file /nonexistent/chat.json", "/nonexistent/chat.json"},
      {"up --workers 0", "--workers"},
      {"up --model /nonexistent/m.gguf", "/nonexistent/m.gguf"},
      {"up --semantic-cache --no-semantic-cache", "conflicts"},
      {"frobnicate", "unknown command"},
  };
  for (const Case& c : cases) {
    const Outcome o = RunSaola(c.args);
    EXPECT_EQ(o.exit_code, 2) << c.args << "\n" << o.err;
    EXPECT_NE(o.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << o.err;
    EXPECT_TRUE(o.out.empty()) << c.args << "\nstdout: " << o.out;
  }
}

TEST(GenerateFlagsTest, UnreachableServerExitsOneWithTheStatusName) {
  const Outcome o = RunSaola("generate --addr 127.0.0.1:1 --prompt hi --timeout-seconds 5");
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_NE(o.err.find("UNAVAILABLE"), std::string::npos) << o.err;
}

// One cluster (one worker, default caches) shared by the tests below.
class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    up_ = new UpProcess({"--workers", "1", "--threads", "2"});
  }
  static void TearDownTestSuite() {
    up_->SignalAndWait(SIGINT, 120);
    delete up_;
    up_ = nullptr;
  }
  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    ASSERT_TRUE(up_->ok()) << up_->line() << "\n" << up_->Stderr();
  }
  static std::string Addr() { return up_->address(); }
  static UpProcess* up_;
};
UpProcess* ClusterTest::up_ = nullptr;

TEST_F(ClusterTest, PrintsTheRouterLine) {
  EXPECT_NE(up_->line().find("saola up: router listening on 127.0.0.1:"), std::string::npos);
  EXPECT_NE(up_->line().find("1 worker(s)"), std::string::npos) << up_->line();
}

TEST_F(ClusterTest, PromptStreamsTextAndPrintsASummary) {
  const Outcome o = RunSaola("generate --addr " + Addr() +
                             " --prompt 'The capital of France is' --max-tokens 8 "
                             "--temperature 0 --no-cache");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_FALSE(o.out.empty());
  EXPECT_NE(o.err.find("finish=length"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("completion_tokens=8"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("cache=none"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("ttft_ms="), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("total_ms="), std::string::npos) << o.err;
}

TEST_F(ClusterTest, ChatFileJsonLinesAndTheExactCacheAnswersTheRepeat) {
  const std::string chat = WriteFile(
      "chat.json",
      R"({"messages": [{"role": "system", "content": "You are terse."},
                       {"role": "user", "content": "Name one ocean on Earth."}]})");
  const std::string args =
      "generate --addr " + Addr() + " --chat-file " + Quote(chat) +
      " --max-tokens 12 --temperature 0 --json";
  std::string texts[2];
  std::string sources[2];
  for (int run = 0; run < 2; ++run) {
    const Outcome o = RunSaola(args);
    ASSERT_EQ(o.exit_code, 0) << o.err;
    const std::vector<std::string> lines = Lines(o.out);
    ASSERT_FALSE(lines.empty());
    for (size_t i = 0; i < lines.size(); ++i) {
      absl::StatusOr<json::Value> doc = json::Parse(lines[i]);
      ASSERT_TRUE(doc.ok()) << doc.status() << "\n" << lines[i];
      ASSERT_NE(doc->Find("text"), nullptr);
      ASSERT_NE(doc->Find("token_ids"), nullptr);
      EXPECT_TRUE(doc->Find("token_ids")->is_array());
      texts[run] += doc->Find("text")->str();
      const bool last = i + 1 == lines.size();
      EXPECT_EQ(doc->Find("finish_reason") != nullptr, last) << lines[i];
      if (!last) continue;
      const json::Value* usage = doc->Find("usage");
      ASSERT_NE(usage, nullptr);
      EXPECT_GT(usage->Find("prompt_tokens")->num(), 0);
      EXPECT_GT(usage->Find("completion_tokens")->num(), 0);
      EXPECT_LE(usage->Find("completion_tokens")->num(), 12);
      sources[run] = doc->Find("cache_source")->str();
      ASSERT_NE(doc->Find("stop"), nullptr);
    }
    EXPECT_NE(o.err.find("cache=" + sources[run]), std::string::npos) << o.err;
  }
  EXPECT_EQ(sources[0], "none");
  EXPECT_EQ(sources[1], "exact");
  EXPECT_FALSE(texts[0].empty());
  EXPECT_EQ(texts[1], texts[0]);
}

TEST_F(ClusterTest, ChatFlagAndTargetAliasStillWork) {
  const Outcome o = RunSaola("generate --target " + Addr() +
                             " --chat 'Say hello.' --system 'Be brief.' --max-tokens 4 --seed 7");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.err.find("finish="), std::string::npos) << o.err;
}

TEST_F(ClusterTest, ServerRejectionExitsTwoWithTheStatusName) {
  // Far beyond the model's context: the router refuses it as INVALID_ARGUMENT.
  const Outcome o =
      RunSaola("generate --addr " + Addr() + " --prompt hi --max-tokens 100000000");
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_NE(o.err.find("INVALID_ARGUMENT"), std::string::npos) << o.err;
}

TEST_F(ClusterTest, ModelsListsTheServedModel) {
  const Outcome o = RunSaola("models --addr " + Addr());
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("SmolLM2"), std::string::npos) << o.out;
}

// Ctrl-C: the router and every worker stop, `saola up` exits 0, nothing is left running.
TEST(UpTest, InterruptStopsEveryChildAndExitsZero) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  UpProcess up({"--workers", "2", "--threads", "1", "--no-semantic-cache"});
  ASSERT_TRUE(up.ok()) << up.Stderr();
  EXPECT_NE(up.line().find("2 worker(s)"), std::string::npos) << up.line();
  const std::vector<pid_t> children = ChildrenOf(up.pid());
  ASSERT_EQ(children.size(), 3u) << up.Stderr();  // two workers and the router
  EXPECT_EQ(up.SignalAndWait(SIGINT, 120), 0) << up.Stderr();
  for (pid_t pid : children) EXPECT_FALSE(ProcessExists(pid)) << pid;
  const std::string err = up.Stderr();
  // The router stops before the workers.
  const size_t router = err.find("router (pid");
  const size_t worker = err.find("worker 1 (pid");
  ASSERT_NE(router, std::string::npos) << err;
  ASSERT_NE(worker, std::string::npos) << err;
  EXPECT_LT(router, worker) << err;
}

// A worker that dies on its own takes the cluster down with a message naming it.
TEST(UpTest, ChildDeathStopsTheRestAndExitsNonZero) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  UpProcess up({"--workers", "1", "--threads", "1", "--no-semantic-cache"});
  ASSERT_TRUE(up.ok()) << up.Stderr();
  const std::vector<pid_t> children = ChildrenOf(up.pid());
  ASSERT_EQ(children.size(), 2u);
  // The worker is the child that is not the router (whose pid saola up printed).
  const std::string err = up.Stderr();
  const size_t at = err.find("saola up: worker 1 pid=");
  ASSERT_NE(at, std::string::npos) << err;
  const pid_t worker = static_cast<pid_t>(std::atoi(err.c_str() + at + 23));
  ASSERT_GT(worker, 0);
  kill(worker, SIGKILL);
  EXPECT_EQ(up.Wait(120), 1) << up.Stderr();
  EXPECT_NE(up.Stderr().find("worker 1 (pid " + std::to_string(worker) +
                             ") exited unexpectedly"),
            std::string::npos)
      << up.Stderr();
  for (pid_t pid : children) EXPECT_FALSE(ProcessExists(pid)) << pid;
}

// SIGKILL cannot be forwarded, but the children get SIGTERM from the kernel when `saola up` dies
// (PR_SET_PDEATHSIG), so they drain and exit instead of lingering as orphans.
TEST(UpTest, KilledUpLeavesNoOrphans) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  UpProcess up({"--workers", "1", "--threads", "1", "--no-semantic-cache"});
  ASSERT_TRUE(up.ok()) << up.Stderr();
  const std::vector<pid_t> children = ChildrenOf(up.pid());
  ASSERT_EQ(children.size(), 2u);
  EXPECT_EQ(up.SignalAndWait(SIGKILL, 30), 128 + SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (pid_t pid : children) {
    // Reparented, they are reaped by init (or the nearest subreaper) once they exit.
    while (ProcessExists(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_FALSE(ProcessExists(pid)) << pid;
  }
}

}  // namespace
}  // namespace saola::test
