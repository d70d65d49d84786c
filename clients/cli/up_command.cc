// `saola up`: a local Saola cluster in one command. Starts N `saola-worker serve` processes on
// free loopback ports, waits until each prints its listening line, then starts `saola-router
// serve` in front of them (in-memory or Redis exact cache; the semantic cache when its model is
// installed), waits until the router answers ListModels (a worker is ready behind it), and prints
//   saola up: router listening on 127.0.0.1:PORT (metrics :M), N worker(s)
// on stdout. Ctrl-C or SIGTERM stops the router first (it drains), then the workers, and exits 0.
// If a child dies on its own, the others are stopped and `saola up` exits 1 naming it.
//
// The binaries are found next to the `saola` executable; the default model files are looked up in
// the working directory, then in the source tree the binary was built from (bin/../..).
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "clients/cli/commands.h"
#include "common/child_process.h"
#include "common/flags.h"
#include "grpcpp/grpcpp.h"
#include "saola/v1/llm.grpc.pb.h"

namespace saola::client {
namespace {

constexpr char kDefaultModel[] = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr char kSemanticModelDir[] = "models/all-MiniLM-L6-v2";
constexpr absl::Duration kStartTimeout = absl::Seconds(300);
constexpr absl::Duration kStopTimeout = absl::Seconds(45);  // the children drain for up to 30 s

struct UpArgs {
  int num_workers = 1;
  std::string host = "127.0.0.1";
  int port = 50051;
  int metrics_port = 0;
  std::string redis_url;
  std::string model;
  int threads = 1;  // per worker
  std::string semantic_model_dir;  // empty: semantic cache off
  std::string bin_dir;
};

std::string BinDir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

// `relative` in the working directory, else in the source tree (bin_dir/../..), else nullopt.
std::optional<std::string> FindDefault(const std::string& relative, const std::string& bin_dir) {
  std::error_code ec;
  if (std::filesystem::exists(relative, ec)) return relative;
  const std::filesystem::path in_tree =
      std::filesystem::path(bin_dir).parent_path().parent_path() / relative;
  if (std::filesystem::exists(in_tree, ec)) return in_tree.lexically_normal().string();
  return std::nullopt;
}

absl::StatusOr<UpArgs> ParseUpArgs(const std::vector<std::string>& args) {
  absl::StatusOr<cli::Flags> flags = cli::Flags::Parse(
      args, {"workers", "host", "port", "metrics-port", "redis", "model", "threads"},
      {"semantic-cache", "no-semantic-cache"});
  if (!flags.ok()) return flags.status();
  UpArgs a;
  a.bin_dir = BinDir();
  absl::StatusOr<int64_t> workers = flags->Int("workers", 1, 1, 64);
  if (!workers.ok()) return workers.status();
  a.num_workers = static_cast<int>(*workers);
  if (flags->Has("host")) a.host = *flags->String("host");
  absl::StatusOr<int64_t> port = flags->Int("port", 50051, 0, 65535);
  if (!port.ok()) return port.status();
  a.port = static_cast<int>(*port);
  absl::StatusOr<int64_t> metrics_port = flags->Int("metrics-port", 0, -1, 65535);
  if (!metrics_port.ok()) return metrics_port.status();
  a.metrics_port = static_cast<int>(*metrics_port);
  if (flags->Has("redis")) a.redis_url = *flags->String("redis");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  absl::StatusOr<int64_t> threads =
      flags->Int("threads", std::max(1, cores / a.num_workers), 1, 1024);
  if (!threads.ok()) return threads.status();
  a.threads = static_cast<int>(*threads);

  if (flags->Has("model")) {
    a.model = *flags->String("model");
    if (std::error_code ec; !std::filesystem::exists(a.model, ec)) {
      return absl::InvalidArgumentError(absl::StrCat("--model ", a.model, ": no such file"));
    }
  } else if (std::optional<std::string> found = FindDefault(kDefaultModel, a.bin_dir)) {
    a.model = *found;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--model: the default ", kDefaultModel, " is missing (run scripts/fetch-models)"));
  }

  const bool want = flags->Bool("semantic-cache"), refuse = flags->Bool("no-semantic-cache");
  if (want && refuse) {
    return absl::InvalidArgumentError("--semantic-cache: conflicts with --no-semantic-cache");
  }
  if (!refuse) {
    if (std::optional<std::string> dir = FindDefault(kSemanticModelDir, a.bin_dir)) {
      a.semantic_model_dir = *dir;
    } else if (want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--semantic-cache: ", kSemanticModelDir, " is missing (run scripts/fetch-models)"));
    }
  }
  return a;
}

// SIGINT or SIGTERM pending (they are blocked; this takes one without waiting).
bool Interrupted(const sigset_t& signals) {
  timespec zero{0, 0};
  return sigtimedwait(&signals, nullptr, &zero) > 0;
}

// Why waiting for a child ended without its line.
enum class WaitEnd { kInterrupted, kFailed };

// Reads the child's stdout until a line starting with `prefix` and returns it; other lines go to
// stderr. Stops early on SIGINT/SIGTERM, the child's exit or the start timeout.
absl::StatusOr<std::string> WaitForLine(ChildProcess& child, absl::string_view prefix,
                                        const sigset_t& signals, WaitEnd* end) {
  const absl::Time deadline = absl::Now() + kStartTimeout;
  *end = WaitEnd::kFailed;
  while (absl::Now() < deadline) {
    if (Interrupted(signals)) {
      *end = WaitEnd::kInterrupted;
      return absl::CancelledError("interrupted");
    }
    absl::StatusOr<std::optional<std::string>> line = child.ReadLine(absl::Milliseconds(100));
    if (!line.ok()) {
      const int status = child.Wait(absl::Seconds(5)).value_or(-1);
      return absl::UnavailableError(absl::StrFormat(
          "%s (pid %d) exited before listening (%s)", child.name(), child.pid(),
          status < 0 ? "still running" : ChildProcess::DescribeStatus(status)));
    }
    if (!line->has_value()) continue;
    if (absl::StartsWith(**line, prefix)) return **line;
    std::fprintf(stderr, "%s\n", (*line)->c_str());
  }
  return absl::DeadlineExceededError(
      absl::StrFormat("%s (pid %d) did not listen within %s", child.name(), child.pid(),
                      absl::FormatDuration(kStartTimeout)));
}

// Waits until the router answers ListModels: a worker behind it is ready, so the first request
// after the "listening" line does not meet "no worker is ready yet".
absl::Status WaitRouterReady(int port, ChildProcess& router, const sigset_t& signals,
                             WaitEnd* end) {
  auto stub = saola::v1::Llm::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  const absl::Time deadline = absl::Now() + kStartTimeout;
  *end = WaitEnd::kFailed;
  std::string last_error;
  while (absl::Now() < deadline) {
    if (Interrupted(signals)) {
      *end = WaitEnd::kInterrupted;
      return absl::CancelledError("interrupted");
    }
    if (std::optional<int> status = router.Poll()) {
      return absl::UnavailableError(absl::StrFormat("router (pid %d) exited (%s)", router.pid(),
                                                    ChildProcess::DescribeStatus(*status)));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    saola::v1::ListModelsResponse response;
    const grpc::Status s = stub->ListModels(&context, {}, &response);
    if (s.ok() && response.models_size() > 0) return absl::OkStatus();
    last_error = s.error_message();
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the router did not become ready: ", last_error));
}

// The children, stopped in order: the router first (it drains its streams), then the workers
// together. True when every child exited with status 0.
bool StopAll(std::unique_ptr<ChildProcess>& router,
             std::vector<std::unique_ptr<ChildProcess>>& workers) {
  bool clean = true;
  auto report = [&clean](const ChildProcess& child, int status) {
    std::fprintf(stderr, "saola up: %s (pid %d) stopped (%s)\n", child.name().c_str(),
                 static_cast<int>(child.pid()), ChildProcess::DescribeStatus(status).c_str());
    clean = clean && status == 0;
  };
  if (router != nullptr) report(*router, router->Stop(kStopTimeout));
  for (auto& w : workers) w->Signal(SIGTERM);
  for (auto& w : workers) report(*w, w->Stop(kStopTimeout));
  return clean;
}

}  // namespace

int RunUp(const std::vector<std::string>& args) {
  // Block the signals before any thread exists (threads inherit the mask); this thread takes
  // them with sigtimedwait. Children get their own process group, so a terminal's Ctrl-C reaches
  // only us and the stop order stays ours.
  // A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded, never
  // pending: take the default action back so sigtimedwait sees it (and the children inherit it).
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<UpArgs> a = ParseUpArgs(args);
  if (!a.ok()) {
    std::fprintf(stderr, "saola up: %s\n", std::string(a.status().message()).c_str());
    return 2;
  }
  std::vector<std::unique_ptr<ChildProcess>> workers;
  std::unique_ptr<ChildProcess> router;
  // Ends startup: on Ctrl-C a clean stop (exit 0), on a failure a message and exit 1.
  auto abort_start = [&](const absl::Status& why, WaitEnd end) {
    if (end != WaitEnd::kInterrupted) {
      std::fprintf(stderr, "saola up: %s; stopping\n", std::string(why.message()).c_str());
    }
    StopAll(router, workers);
    return end == WaitEnd::kInterrupted ? 0 : 1;
  };

  std::vector<std::string> worker_addresses;
  for (int i = 0; i < a->num_workers; ++i) {
    absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(
        absl::StrCat("worker ", i + 1),
        {a->bin_dir + "/saola-worker", "serve", "--model", a->model, "--host", "127.0.0.1",
         "--port", "0", "--metrics-port", "0", "--threads", std::to_string(a->threads)});
    if (!child.ok()) return abort_start(child.status(), WaitEnd::kFailed);
    workers.push_back(*std::move(child));
  }
  // The workers load their models in parallel; collect their lines in order.
  for (auto& w : workers) {
    WaitEnd end;
    absl::StatusOr<std::string> line = WaitForLine(*w, "saola-worker: listening", signals, &end);
    if (!line.ok()) return abort_start(line.status(), end);
    int port = 0, metrics_port = 0;
    std::sscanf(line->c_str(), "saola-worker: listening port=%d metrics_port=%d", &port,
                &metrics_port);
    w->ForwardStdoutToStderr();
    worker_addresses.push_back(absl::StrCat("127.0.0.1:", port));
    std::fprintf(stderr, "saola up: %s pid=%d listening on 127.0.0.1:%d (metrics :%d)\n",
                 w->name().c_str(), static_cast<int>(w->pid()), port, metrics_port);
  }

  std::vector<std::string> router_argv = {
      a->bin_dir + "/saola-router", "serve", "--workers", absl::StrJoin(worker_addresses, ","),
      "--host", a->host, "--port", std::to_string(a->port), "--metrics-port",
      std::to_string(a->metrics_port)};
  if (!a->redis_url.empty()) {
    router_argv.insert(router_argv.end(), {"--redis", a->redis_url});
  }
  if (!a->semantic_model_dir.empty()) {
    router_argv.insert(router_argv.end(),
                       {"--semantic-cache", "--semantic-model-dir", a->semantic_model_dir});
  }
  std::fprintf(stderr, "saola up: exact cache %s; semantic cache %s\n",
               a->redis_url.empty() ? "in memory" : a->redis_url.c_str(),
               a->semantic_model_dir.empty()
                   ? "off"
                   : absl::StrCat("on (", a->semantic_model_dir, ")").c_str());
  absl::StatusOr<std::unique_ptr<ChildProcess>> started =
      ChildProcess::Start("router", std::move(router_argv));
  if (!started.ok()) return abort_start(started.status(), WaitEnd::kFailed);
  router = *std::move(started);
  WaitEnd end;
  absl::StatusOr<std::string> line =
      WaitForLine(*router, "saola-router: listening", signals, &end);
  if (!line.ok()) return abort_start(line.status(), end);
  router->ForwardStdoutToStderr();
  int port = 0, metrics_port = -1;
  std::sscanf(line->c_str(), "saola-router: listening port=%d metrics_port=%d", &port,
              &metrics_port);
  if (absl::Status ready = WaitRouterReady(port, *router, signals, &end); !ready.ok()) {
    return abort_start(ready, end);
  }
  std::fprintf(stderr, "saola up: router pid=%d\n", static_cast<int>(router->pid()));
  std::printf("saola up: router listening on 127.0.0.1:%d (metrics :%d), %d worker(s)\n", port,
              metrics_port, a->num_workers);
  std::fflush(stdout);
  std::fprintf(stderr,
               "saola up: try  saola generate --addr 127.0.0.1:%d --prompt 'Hello' "
               "--max-tokens 32; Ctrl-C stops the cluster\n",
               port);

  while (true) {
    timespec tick{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      std::fprintf(stderr, "saola up: %s, stopping the router, then the workers\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      return StopAll(router, workers) ? 0 : 1;
    }
    std::vector<ChildProcess*> all = {router.get()};
    for (auto& w : workers) all.push_back(w.get());
    for (ChildProcess* child : all) {
      if (std::optional<int> status = child->Poll()) {
        std::fprintf(stderr, "saola up: %s (pid %d) exited unexpectedly (%s); stopping the rest\n",
                     child->name().c_str(), static_cast<int>(child->pid()),
                     ChildProcess::DescribeStatus(*status).c_str());
        StopAll(router, workers);
        return 1;
      }
    }
  }
}

}  // namespace saola::client
