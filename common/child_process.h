// A child process that `saola up` starts and owns: its stdout comes back through a pipe (read
// line by line until the child announces it is listening, then forwarded to our stderr), its
// stderr is ours, and it is stopped with a signal and reaped by its owner.
//
// The child runs in its own process group, so a terminal's Ctrl-C reaches only `saola up`, which
// then stops the children in order (router first, workers after). It also gets SIGTERM if `saola
// up` dies without stopping it (PR_SET_PDEATHSIG), so a crash or SIGKILL leaves no orphans.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace saola::client {

class ChildProcess {
 public:
  /// Starts `argv[0]` (a path to an executable) with `argv`. `name` names the child in messages
  /// ("worker 1", "router"). Fails when the executable is missing or fork fails.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(std::string name,
                                                             std::vector<std::string> argv);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  /// Kills (SIGKILL) and reaps the child if it still runs, and joins the forwarding thread.
  ~ChildProcess();

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

  /// The next line the child writes on stdout, without the newline. nullopt when none arrives
  /// within `timeout`; an error once stdout is closed (the child exited or closed it).
  absl::StatusOr<std::optional<std::string>> ReadLine(absl::Duration timeout);

  /// From now on, copies the child's stdout to our stderr on a thread owned by this object, so the
  /// child never blocks on a full pipe. ReadLine must not be called after this.
  void ForwardStdoutToStderr();

  /// Reaps the child if it has exited (without blocking): its wait status, else nullopt.
  std::optional<int> Poll();

  /// Sends `signal` if the child still runs.
  void Signal(int signal);

  /// Waits up to `timeout` for the child to exit: its wait status, else nullopt.
  std::optional<int> Wait(absl::Duration timeout);

  /// SIGTERM, then waits up to `timeout`; SIGKILL after. Returns the wait status.
  int Stop(absl::Duration timeout);

  /// "exit 0", "exit 3" or "signal 9 (Killed)" for a wait status.
  static std::string DescribeStatus(int wait_status);

 private:
  ChildProcess(std::string name, pid_t pid, int stdout_fd)
      : name_(std::move(name)), pid_(pid), stdout_fd_(stdout_fd) {}

  std::string name_;
  pid_t pid_;
  int stdout_fd_;                   // read end of the child's stdout; -1 once handed to forwarder_
  std::string pending_;             // bytes read past the last full line
  std::optional<int> exit_status_;  // set once reaped
  std::thread forwarder_;
};

}  // namespace saola::client
