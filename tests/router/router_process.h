// A real `saola-router serve` process for integration tests: started on port 0 with the given
// flags, its ports read from the line it prints once listening, stopped with SIGTERM (or killed)
// when the test ends.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/child_process.h"

namespace saola::test {

class RouterProcess {
 public:
  /// Starts build/bin/saola-router serve --port 0 --metrics-port 0 --host 127.0.0.1 plus
  /// `flags`, and waits (up to 60 s) until it listens. ok() is false if it did not come up.
  explicit RouterProcess(const std::vector<std::string>& flags);
  ~RouterProcess() = default;  // SIGKILL if still running (ChildProcess does it)

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return child_ ? child_->pid() : -1; }

  /// SIGTERM, then waits up to `timeout_s` for the exit; returns the exit status (or -1).
  int Terminate(int timeout_s = 30);

 private:
  std::unique_ptr<ChildProcess> child_;
  int port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace saola::test
