#include "bench/router_bench_support.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace saola::bench {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::vector<std::string>& argv, const std::string& cwd,
    const std::string& listening_prefix, const std::string& log_path, int timeout_s) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start(argv.empty() ? "" : argv[0], argv,
                          {.working_dir = cwd, .stderr_path = log_path});
  if (!child.ok()) return child.status();
  std::unique_ptr<ServerProcess> process(new ServerProcess(*std::move(child)));
  absl::StatusOr<std::string> line =
      process->child_->ReadLineStartingWith(listening_prefix, absl::Seconds(timeout_s));
  // Keep draining stdout so the child never blocks on a full pipe.
  process->child_->DiscardStdout();
  if (!line.ok() || std::sscanf(line->c_str() + listening_prefix.size(),
                                " port=%d metrics_port=%d", &process->port_,
                                &process->metrics_port_) != 2) {
    return absl::UnavailableError(
        absl::StrCat(argv[0], " did not print \"", listening_prefix, "\" within ", timeout_s,
                     " s; see ", log_path));
  }
  return process;
}

ServerProcess::~ServerProcess() { child_->Stop(absl::Seconds(5)); }

absl::StatusOr<std::unique_ptr<ServerProcess>> Cluster::StartWorker() {
  const std::string log = absl::StrCat(config_.log_dir, "/worker-", ++num_workers_, ".log");
  return ServerProcess::Start(
      {config_.bin_dir + "/saola-worker", "serve", "--model", config_.model, "--host",
       "127.0.0.1", "--port", "0", "--metrics-port", "0", "--threads", "1", "--kv-cache-mb",
       std::to_string(config_.kv_cache_mb)},
      config_.log_dir, "saola-worker: listening", log);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> Cluster::StartRouter(
    const std::vector<const ServerProcess*>& workers, const std::vector<std::string>& flags) {
  std::vector<std::string> targets;
  for (const ServerProcess* w : workers) targets.push_back(w->target());
  std::vector<std::string> argv = {config_.bin_dir + "/saola-router",
                                   "serve",
                                   "--host",
                                   "127.0.0.1",
                                   "--port",
                                   "0",
                                   "--metrics-port",
                                   "0",
                                   "--workers",
                                   absl::StrJoin(targets, ",")};
  argv.insert(argv.end(), flags.begin(), flags.end());
  const std::string log = absl::StrCat(config_.log_dir, "/router-", ++num_routers_, ".log");
  absl::StatusOr<std::unique_ptr<ServerProcess>> router =
      ServerProcess::Start(argv, config_.log_dir, "saola-router: listening", log);
  if (!router.ok()) return router.status();
  // Its status loop marks workers up within about half a second.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (SumSeries(ScrapeMetrics((*router)->metrics_port()), "saola_router_workers",
                  "state=\"up\"") == static_cast<double>(workers.size())) {
      return router;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::UnavailableError(absl::StrCat("the router did not see ", workers.size(),
                                             " workers up within 60 s; see ", log));
}

double SumSeries(const std::string& text, const std::string& name,
                 const std::string& label_filter) {
  std::istringstream lines(text);
  std::string line;
  double sum = 0;
  while (std::getline(lines, line)) {
    if (!absl::StartsWith(line, name)) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != ' ' && next != '{') continue;  // another series sharing the prefix
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    if (!label_filter.empty() && line.substr(0, space).find(label_filter) == std::string::npos) {
      continue;
    }
    sum += std::atof(line.c_str() + space + 1);
  }
  return sum;
}

LlmClient::LlmClient(const std::string& target)
    : channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
      stub_(saola::v1::Llm::NewStub(channel_)) {}

CallResult LlmClient::Generate(const saola::v1::GenerateRequest& request, int timeout_ms) {
  CallResult result;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  const auto t0 = std::chrono::steady_clock::now();
  auto ms_since_start = [t0] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  std::unique_ptr<grpc::ClientReader<saola::v1::GenerateResponse>> reader =
      stub_->Generate(&context, request);
  saola::v1::GenerateResponse message;
  bool first = true;
  while (reader->Read(&message)) {
    if (first && (message.token_ids_size() > 0 || !message.text().empty())) {
      result.ttft_ms = ms_since_start();
      first = false;
    }
    result.text += message.text();
    if (message.has_finish()) result.finish = message.finish();
  }
  result.status = reader->Finish();
  result.e2e_ms = ms_since_start();
  if (first) result.ttft_ms = result.e2e_ms;
  return result;
}

bool LlmClient::WaitReady(int timeout_s) {
  saola::v1::GenerateRequest probe;
  probe.set_prompt("Hello");
  probe.set_max_tokens(1);
  probe.mutable_sampling()->set_temperature(0);
  probe.mutable_cache()->set_bypass(true);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Generate(probe, 10000).status.ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = q * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  in >> a >> b >> c;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", a, b, c);
  return buf;
}

}  // namespace saola::bench
