// A real `saola-worker serve` process for integration tests: started on port 0, its ports read
// from the line it prints once listening, stopped with SIGTERM (or killed) when the test ends.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/metrics_scrape.h"

#include "common/child_process.h"

namespace saola::test {

class WorkerProcess {
 public:
  /// Starts build/bin/saola-worker serve --model PATH --port 0 --metrics-port 0 plus `extra`
  /// flags, and waits (up to 120 s) until it listens. ok() is false if it did not come up.
  explicit WorkerProcess(const std::vector<std::string>& extra_flags = {});
  ~WorkerProcess() = default;  // SIGKILL if still running (ChildProcess does it)

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& model_name() const { return model_name_; }
  pid_t pid() const { return child_ ? child_->pid() : -1; }

  /// Sends SIGTERM and waits up to `timeout_s` for the exit; returns the exit status (or -1).
  int Terminate(int timeout_s = 60);

 private:
  std::unique_ptr<ChildProcess> child_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string model_name_;
};

using saola::ScrapeMetrics;  // tests call it unqualified

/// The value of one unlabelled (or exactly labelled) series in Prometheus text, or -1.
double MetricValue(const std::string& text, const std::string& series);

}  // namespace saola::test
