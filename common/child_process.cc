#include "common/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace saola {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(std::string name,
                                                                  std::vector<std::string> argv,
                                                                  ChildOptions options) {
  if (argv.empty()) return absl::InvalidArgumentError("no command");
  if (access(argv[0].c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat(argv[0], ": ", std::strerror(errno), " (build it: scripts/build)"));
  }
  // execv runs after chdir, so a relative path must be made absolute first.
  if (!options.working_dir.empty()) argv[0] = std::filesystem::absolute(argv[0]).string();
  int err_fd = -1;
  if (!options.stderr_path.empty()) {
    err_fd = open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err_fd < 0) {
      return absl::InternalError(
          absl::StrCat(options.stderr_path, ": ", std::strerror(errno)));
    }
  }
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed (the parent may have other threads).
  std::vector<char*> c_argv;
  for (std::string& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  int out[2];
  // O_CLOEXEC: a later child must not inherit this child's pipe (it would keep it open).
  if (pipe2(out, O_CLOEXEC) != 0) {
    if (err_fd >= 0) close(err_fd);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    if (err_fd >= 0) close(err_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    // The parent blocks SIGINT/SIGTERM to wait for them, and a shell may have ignored them; both
    // survive exec, so give the child the defaults.
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigaction(SIGINT, &default_action, nullptr);
    sigaction(SIGTERM, &default_action, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(out[1], STDOUT_FILENO);  // the duplicates do not carry O_CLOEXEC
    if (err_fd >= 0) dup2(err_fd, STDERR_FILENO);
    if (!options.working_dir.empty() && chdir(options.working_dir.c_str()) != 0) _exit(126);
    execv(c_argv[0], c_argv.data());
    _exit(127);
  }
  close(out[1]);
  if (err_fd >= 0) close(err_fd);
  return std::unique_ptr<ChildProcess>(new ChildProcess(std::move(name), pid, out[0]));
}

ChildProcess::~ChildProcess() {
  if (!exit_status_.has_value()) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (pump_.joinable()) pump_.join();  // the pipe reaches EOF once the child is gone
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

absl::StatusOr<std::optional<std::string>> ChildProcess::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (const size_t nl = pending_.find('\n'); nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) return std::nullopt;
    pollfd p{stdout_fd_, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left_ms));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    char buf[4096];
    const ssize_t n = read(stdout_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::UnavailableError(absl::StrCat(name_, " closed its stdout"));
    pending_.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> ChildProcess::ReadLineStartingWith(absl::string_view prefix,
                                                                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<std::optional<std::string>> line = ReadLine(deadline - absl::Now());
    if (!line.ok()) return line.status();
    if (!line->has_value()) break;
    if (absl::StartsWith(**line, prefix)) return **line;
  }
  return absl::DeadlineExceededError(absl::StrCat(name_, " did not print \"", prefix, "\" within ",
                                                  absl::FormatDuration(timeout)));
}

void ChildProcess::ForwardStdoutToStderr() { PumpStdout(STDERR_FILENO); }

void ChildProcess::DiscardStdout() { PumpStdout(-1); }

void ChildProcess::PumpStdout(int target_fd) {
  const int fd = stdout_fd_;
  stdout_fd_ = -1;
  std::string already = std::move(pending_);
  pump_ = std::thread([fd, target_fd, already = std::move(already)] {
    if (target_fd >= 0 && !already.empty()) {
      (void)!write(target_fd, already.data(), already.size());
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0 && target_fd >= 0) (void)!write(target_fd, buf, static_cast<size_t>(n));
    }
    close(fd);
  });
}

std::optional<int> ChildProcess::Poll() {
  if (exit_status_.has_value()) return exit_status_;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) exit_status_ = status;
  return exit_status_;
}

void ChildProcess::Signal(int signal) {
  if (!Poll().has_value()) kill(pid_, signal);
}

std::optional<int> ChildProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Poll().has_value() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  return exit_status_;
}

int ChildProcess::Stop(absl::Duration timeout) {
  Signal(SIGTERM);
  if (std::optional<int> status = Wait(timeout)) return *status;
  std::fprintf(stderr, "%s (pid %d) did not stop within %s; killing it\n", name_.c_str(),
               static_cast<int>(pid_), absl::FormatDuration(timeout).c_str());
  Signal(SIGKILL);
  return Wait(absl::InfiniteDuration()).value_or(-1);
}

std::string ChildProcess::DescribeStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exit ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    return absl::StrFormat("signal %d (%s)", sig, strsignal(sig));
  }
  return absl::StrCat("wait status ", wait_status);
}

int ChildProcess::ExitCode(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

}  // namespace saola
