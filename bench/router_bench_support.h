// Plumbing for saola-router-bench (router_bench.cc): child server processes, a timed streaming
// Generate call, Prometheus scraping and percentiles. Nothing here knows the benchmark's parts.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/child_process.h"
#include "common/metrics_scrape.h"
#include "grpcpp/grpcpp.h"
#include "saola/v1/llm.grpc.pb.h"

namespace saola::bench {

/// A `saola-worker serve` or `saola-router serve` child. It is started on port 0 and metrics
/// port 0; its ports are read from the one line it prints on stdout once listening
/// ("<name>: listening port=P metrics_port=M ..."). Its stderr goes to `log_path`. The destructor
/// sends SIGTERM, waits up to 5 s, then SIGKILLs.
class ServerProcess {
 public:
  /// Runs `argv` (argv[0] is the binary) in `cwd`, and waits up to `timeout_s` for the line
  /// starting with `listening_prefix` (e.g. "saola-worker: listening").
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::vector<std::string>& argv, const std::string& cwd,
      const std::string& listening_prefix, const std::string& log_path, int timeout_s = 120);
  ~ServerProcess();

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return child_->pid(); }

 private:
  explicit ServerProcess(std::unique_ptr<ChildProcess> child) : child_(std::move(child)) {}

  std::unique_ptr<ChildProcess> child_;
  int port_ = 0;
  int metrics_port_ = 0;
};

/// Starts the servers of one benchmark run, numbering their logs in `log_dir`.
struct ClusterConfig {
  std::string bin_dir;  // holds saola-worker and saola-router
  std::string model;    // GGUF path
  std::string log_dir;  // stderr of every server, and their working directory
  int kv_cache_mb = 256;
};

class Cluster {
 public:
  explicit Cluster(ClusterConfig config) : config_(std::move(config)) {}

  /// saola-worker serve --threads 1 --kv-cache-mb N on loopback.
  absl::StatusOr<std::unique_ptr<ServerProcess>> StartWorker();
  /// saola-router serve over `workers` plus `flags`, waited for until it routes to all of them
  /// (its saola_router_workers{state="up"} gauge).
  absl::StatusOr<std::unique_ptr<ServerProcess>> StartRouter(
      const std::vector<const ServerProcess*>& workers, const std::vector<std::string>& flags);

 private:
  ClusterConfig config_;
  int num_workers_ = 0;
  int num_routers_ = 0;
};


/// Sum of every sample of `name` in Prometheus text whose labels contain `label_filter`
/// (e.g. `reason="prefix_hit"`; empty: all samples, labelled or not).
double SumSeries(const std::string& text, const std::string& name,
                 const std::string& label_filter = "");

/// What one streamed Generate call gave, timed on the client.
struct CallResult {
  grpc::Status status;
  double ttft_ms = 0;  // call start to the first message carrying token ids (or text)
  double e2e_ms = 0;   // call start to Finish() returning
  std::string text;
  saola::v1::Finish finish;
};

/// A client on one channel (HTTP/2 connection kept open across calls, as a real client would).
class LlmClient {
 public:
  explicit LlmClient(const std::string& target);
  /// One blocking streamed call with a `timeout_ms` deadline.
  CallResult Generate(const saola::v1::GenerateRequest& request, int timeout_ms = 120000);
  /// Waits until a call succeeds (the channel is connected and the server answers), up to
  /// `timeout_s`.
  bool WaitReady(int timeout_s);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<saola::v1::Llm::Stub> stub_;
};

/// The q-quantile (0..1) of `values`, by linear interpolation between the closest ranks; 0 for
/// an empty vector. Sorts a copy.
double Percentile(std::vector<double> values, double q);

/// The three load averages from /proc/loadavg, as "1.23 0.98 0.75".
std::string LoadAverage();

}  // namespace saola::bench
