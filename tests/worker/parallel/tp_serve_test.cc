// `saola-worker serve --tp-size N` as a user runs it: real processes, real gRPC over loopback.
// A group serves what one rank serves, stays up while idle (keep-alives), stops its ranks on
// SIGTERM, and when a rank is killed the request in flight fails at once with UNAVAILABLE naming
// the rank, the worker exits 1 with that message, and no rank process is left behind.
#include <gtest/gtest.h>
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/child_process.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "saola/v1/llm.grpc.pb.h"
#include "tests/common/reference_model.h"
#include "tests/worker/parallel/tp_tiny_model.h"

namespace saola::test {
namespace {

using Clock = std::chrono::steady_clock;

// The pids whose parent is `parent` (from /proc/<pid>/stat).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return children;
  while (dirent* e = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t close = line.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos) continue;
    char state;
    int ppid;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent) {
      children.push_back(pid);
    }
  }
  closedir(proc);
  return children;
}

// The --tp-rank a rank process was started with (from its command line), or -1.
int RankOf(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/cmdline");
  std::string cmdline(std::istreambuf_iterator<char>(file), {});
  const std::string flag = std::string("--tp-rank") + '\0';
  const size_t at = cmdline.find(flag);
  return at == std::string::npos ? -1 : std::atoi(cmdline.c_str() + at + flag.size());
}

bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

bool WaitGone(const std::vector<pid_t>& pids, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool any = false;
    for (pid_t pid : pids) any = any || Alive(pid);
    if (!any) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// `saola-worker serve` with its stderr in a file, so a test can read its last words.
class Server {
 public:
  Server(const std::string& model, int tp_size, std::vector<std::string> extra = {}) {
    err_path_ = ::testing::TempDir() + "/tp_serve_err_" + std::to_string(counter_++);
    std::vector<std::string> args = {std::string(SAOLA_BINARY_DIR) + "/bin/saola-worker",
                                     "serve", "--model", model, "--port", "0", "--host",
                                     "127.0.0.1", "--threads", "2", "--kv-cache-mb", "64",
                                     "--tp-size", std::to_string(tp_size)};
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start("saola-worker", args, {.stderr_path = err_path_});
    if (!child.ok()) return;
    child_ = std::move(*child);
    auto line = child_->ReadLineStartingWith("saola-worker: listening", absl::Seconds(120));
    child_->DiscardStdout();
    if (!line.ok() || std::sscanf(line->c_str(), "saola-worker: listening port=%d", &port_) != 1) {
      port_ = 0;
      return;
    }
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    llm_ = saola::v1::Llm::NewStub(channel_);
  }

  bool ok() const { return port_ > 0; }
  pid_t pid() const { return child_->pid(); }
  ChildProcess& process() { return *child_; }
  saola::v1::Llm::Stub& llm() { return *llm_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  std::string Stderr() const {
    std::ifstream err(err_path_);
    return std::string(std::istreambuf_iterator<char>(err), {});
  }

 private:
  static inline int counter_ = 0;
  std::string err_path_;
  std::unique_ptr<ChildProcess> child_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<saola::v1::Llm::Stub> llm_;
};

saola::v1::GenerateRequest Greedy(const std::string& prompt, uint32_t max_tokens) {
  saola::v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.mutable_sampling()->set_temperature(0);
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  return r;
}

std::vector<uint32_t> GenerateIds(saola::v1::Llm::Stub& llm, const saola::v1::GenerateRequest& r,
                                  grpc::Status* status) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = llm.Generate(&context, r);
  saola::v1::GenerateResponse msg;
  std::vector<uint32_t> ids;
  while (reader->Read(&msg)) ids.insert(ids.end(), msg.token_ids().begin(), msg.token_ids().end());
  *status = reader->Finish();
  return ids;
}

TEST(TpServeTest, TwoRanksServeWhatOneRankServesAndStayUpWhileIdle) {
  const std::string model = ::testing::TempDir() + "/tp_serve_tiny.gguf";
  ASSERT_TRUE(WriteTinyTensorParallelModel(model).ok());
  // A 2 s collective timeout: without keep-alives the idle ranks would give up within it.
  Server two(model, 2, {"--tp-timeout-seconds", "2"});
  ASSERT_TRUE(two.ok()) << two.Stderr();
  const auto started = Clock::now();
  const std::vector<pid_t> ranks = ChildrenOf(two.pid());
  ASSERT_EQ(ranks.size(), 1u);
  Server one(model, 1);
  ASSERT_TRUE(one.ok()) << one.Stderr();

  const auto request = Greedy("the rain in spain stays mainly", 48);
  grpc::Status status;
  const std::vector<uint32_t> expected = GenerateIds(one.llm(), request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(expected.size(), 48u);
  std::this_thread::sleep_until(started + std::chrono::seconds(5));  // idle past the timeout
  EXPECT_EQ(GenerateIds(two.llm(), request, &status), expected);
  EXPECT_TRUE(status.ok()) << status.error_message() << "\n" << two.Stderr();

  // SIGTERM drains, stops the rank (exit 0) and leaves nothing behind.
  two.process().Signal(SIGTERM);
  const std::optional<int> exit = two.process().Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(ChildProcess::ExitCode(*exit), 0) << two.Stderr();
  EXPECT_TRUE(WaitGone(ranks, std::chrono::seconds(5)));
}

TEST(TpServeTest, KillingARankFailsTheRequestInFlightAndTheWorkerExits) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  Server server(ReferenceModelPath(), 3, {"--tp-timeout-seconds", "30"});  // 9 heads, 3 KV heads
  ASSERT_TRUE(server.ok()) << server.Stderr();
  std::vector<pid_t> ranks = ChildrenOf(server.pid());
  ASSERT_EQ(ranks.size(), 2u);
  if (RankOf(ranks[0]) != 1) std::swap(ranks[0], ranks[1]);
  ASSERT_EQ(RankOf(ranks[0]), 1);
  ASSERT_EQ(RankOf(ranks[1]), 2);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = server.llm().Generate(&context, Greedy("Tell me a long story about a lighthouse.",
                                                       2000));
  saola::v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg)) << server.Stderr();  // tokens are flowing
  const auto killed_at = Clock::now();
  ASSERT_EQ(kill(ranks[0], SIGKILL), 0);
  while (reader->Read(&msg)) {
  }
  const grpc::Status status = reader->Finish();
  const double seconds = std::chrono::duration<double>(Clock::now() - killed_at).count();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_NE(status.error_message().find("tensor-parallel rank 1"), std::string::npos)
      << status.error_message();
  EXPECT_LT(seconds, 5.0) << "the rank's exit must be noticed long before the 30 s timeout";
  std::printf("the request failed %.3f s after the rank was killed: %s\n", seconds,
              status.error_message().c_str());

  // Health is NOT_SERVING, or the worker is already gone.
  auto health = grpc::health::v1::Health::NewStub(server.channel());
  grpc::ClientContext hc;
  hc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckResponse h;
  if (health->Check(&hc, {}, &h).ok()) {
    EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  const std::optional<int> exit = server.process().Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value()) << "the worker did not exit";
  EXPECT_EQ(ChildProcess::ExitCode(*exit), 1);
  const std::string err = server.Stderr();
  EXPECT_NE(err.find("NOT_SERVING: tensor-parallel rank 1"), std::string::npos) << err;
  EXPECT_TRUE(WaitGone(ranks, std::chrono::seconds(5))) << "a rank outlived the worker";
}

TEST(TpServeTest, AHungRankTimesOutAndTheWorkerExits) {
  const std::string model = ::testing::TempDir() + "/tp_serve_tiny_hang.gguf";
  ASSERT_TRUE(WriteTinyTensorParallelModel(model).ok());
  Server server(model, 2, {"--tp-timeout-seconds", "2"});
  ASSERT_TRUE(server.ok()) << server.Stderr();
  const std::vector<pid_t> ranks = ChildrenOf(server.pid());
  ASSERT_EQ(ranks.size(), 1u);
  grpc::Status status;
  ASSERT_EQ(GenerateIds(server.llm(), Greedy("hello", 8), &status).size(), 8u);

  // A rank that stops answering (alive, so only the timeout can tell): the next collective, a
  // step or an idle keep-alive, gives up after 2 s and the worker exits naming the rank.
  const auto stopped_at = Clock::now();
  ASSERT_EQ(kill(ranks[0], SIGSTOP), 0);
  GenerateIds(server.llm(), Greedy("hello again", 8), &status);
  const double failed_after = std::chrono::duration<double>(Clock::now() - stopped_at).count();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  const std::optional<int> exit = server.process().Wait(absl::Seconds(20));
  ASSERT_TRUE(exit.has_value()) << "the worker did not exit";
  const double seconds = std::chrono::duration<double>(Clock::now() - stopped_at).count();
  EXPECT_EQ(ChildProcess::ExitCode(*exit), 1);
  EXPECT_LT(seconds, 10.0);
  const std::string err = server.Stderr();
  EXPECT_NE(err.find("NOT_SERVING: tensor-parallel shard group: rank 1"), std::string::npos)
      << err;
  std::printf("a stopped rank failed the request after %.2f s and ended the worker after %.2f s: "
              "%s", failed_after, seconds,
              err.substr(err.find("NOT_SERVING")).c_str());
  EXPECT_TRUE(WaitGone(ranks, std::chrono::seconds(5))) << "the stopped rank was left behind";
}

}  // namespace
}  // namespace saola::test
