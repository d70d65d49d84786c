// A real `saola up` process for integration tests: started with the given flags (plus --port 0),
// its router port read from the line it prints on stdout once the cluster answers, its stderr kept
// in a file, and interrupted (SIGINT) like a user's Ctrl-C.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/child_process.h"

namespace saola::test {

class UpProcess {
 public:
  /// Starts build/bin/saola up --port 0 `flags` and waits (up to 300 s) for its line. ok() is
  /// false if the cluster did not come up.
  explicit UpProcess(const std::vector<std::string>& flags);
  ~UpProcess();  // SIGKILL if still running (its children get SIGTERM from the kernel)

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return child_ ? child_->pid() : -1; }
  /// The stdout line it printed ("saola up: router listening on ...").
  const std::string& line() const { return line_; }
  /// What it wrote on stderr so far (its children's stderr included).
  std::string Stderr() const;

  /// Sends `signal` and waits up to `timeout_s` for the exit: the exit code, 128 + signal when
  /// killed, or -1 on timeout.
  int SignalAndWait(int signal, int timeout_s);
  /// Waits up to `timeout_s` for an exit without signalling it.
  int Wait(int timeout_s);

 private:
  std::unique_ptr<ChildProcess> child_;
  int port_ = 0;
  std::string line_;
  std::string stderr_path_;
};

/// The pids whose parent is `parent` (from /proc/PID/stat).
std::vector<pid_t> ChildrenOf(pid_t parent);

/// Whether a process with this pid exists (zombies included).
bool ProcessExists(pid_t pid);

}  // namespace saola::test
