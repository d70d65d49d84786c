// A child process owned by the process that starts it: `saola up`'s workers and router, the
// integration tests' servers, the benchmark's servers. Its stdout comes back through a pipe (read
// line by line, e.g. until the child announces it is listening, then forwarded to our stderr or
// discarded), its stderr is ours or a file, and it is stopped with a signal and reaped by its
// owner.
//
// The child runs in its own process group, so a terminal's Ctrl-C reaches only the owner, which
// then stops its children in the order it chooses. It also gets SIGTERM if the thread that
// started it dies without stopping it (PR_SET_PDEATHSIG), so a crash or SIGKILL leaves no orphans.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace saola {

/// Where a child runs and where its stderr goes; the defaults inherit ours.
struct ChildOptions {
  std::string working_dir;  // empty: our working directory
  std::string stderr_path;  // empty: our stderr; else this file, created or truncated
};

class ChildProcess {
 public:
  /// Starts `argv[0]` (a path to an executable; a relative one is taken from our working
  /// directory, not `options.working_dir`) with `argv`. `name` names the child in messages
  /// ("worker 1", "router"). Fails when the executable is missing, the stderr file cannot be
  /// opened, or fork fails; a working directory that cannot be entered makes the child exit 126.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(std::string name,
                                                             std::vector<std::string> argv,
                                                             ChildOptions options = {});

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  /// Kills (SIGKILL) and reaps the child if it still runs, and joins the stdout thread.
  ~ChildProcess();

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

  /// The next line the child writes on stdout, without the newline. nullopt when none arrives
  /// within `timeout`; an error once stdout is closed (the child exited or closed it).
  absl::StatusOr<std::optional<std::string>> ReadLine(absl::Duration timeout);

  /// Reads stdout lines, skipping others, until one starts with `prefix`, and returns it.
  /// DeadlineExceeded when none comes within `timeout`; Unavailable when stdout closes first.
  absl::StatusOr<std::string> ReadLineStartingWith(absl::string_view prefix,
                                                   absl::Duration timeout);

  /// From now on, copies the child's stdout to our stderr on a thread owned by this object, so the
  /// child never blocks on a full pipe. ReadLine must not be called after this.
  void ForwardStdoutToStderr();

  /// As ForwardStdoutToStderr, but drops what the child writes.
  void DiscardStdout();

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

  /// The exit code of a wait status, or 128 + the signal that killed the child (as a shell says).
  static int ExitCode(int wait_status);

 private:
  ChildProcess(std::string name, pid_t pid, int stdout_fd)
      : name_(std::move(name)), pid_(pid), stdout_fd_(stdout_fd) {}

  // Hands stdout to a thread that copies it to `target_fd` (-1: nowhere) until EOF.
  void PumpStdout(int target_fd);

  std::string name_;
  pid_t pid_;
  int stdout_fd_;                   // read end of the child's stdout; -1 once handed to pump_
  std::string pending_;             // bytes read past the last full line
  std::optional<int> exit_status_;  // set once reaped
  std::thread pump_;
};

}  // namespace saola
