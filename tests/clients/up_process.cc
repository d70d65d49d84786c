#include "tests/clients/up_process.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

namespace saola::test {

UpProcess::UpProcess(const std::vector<std::string>& flags) {
  std::vector<std::string> args = {std::string(SAOLA_BINARY_DIR) + "/bin/saola", "up", "--port",
                                   "0"};
  args.insert(args.end(), flags.begin(), flags.end());
  static int counter = 0;
  stderr_path_ = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                 "/saola_up_" + std::to_string(getpid()) + "_" + std::to_string(counter++) +
                 ".err";
  ChildOptions options;
  options.stderr_path = stderr_path_;
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start("saola up", std::move(args), options);
  if (!child.ok()) {
    std::fprintf(stderr, "UpProcess: %s\n", child.status().ToString().c_str());
    return;
  }
  child_ = *std::move(child);
  // saola up prints one line on stdout; ReadLine fails at EOF if it exits first.
  absl::StatusOr<std::optional<std::string>> line = child_->ReadLine(absl::Seconds(300));
  child_->DiscardStdout();
  if (line.ok() && line->has_value()) {
    line_ = **line;
    std::sscanf(line_.c_str(), "saola up: router listening on 127.0.0.1:%d", &port_);
  }
}

UpProcess::~UpProcess() {
  child_.reset();  // SIGKILL if still running
  std::remove(stderr_path_.c_str());
}

std::string UpProcess::Stderr() const {
  std::ifstream in(stderr_path_);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int UpProcess::Wait(int timeout_s) {
  if (child_ == nullptr) return -1;
  const std::optional<int> status = child_->Wait(absl::Seconds(timeout_s));
  return status.has_value() ? ChildProcess::ExitCode(*status) : -1;
}

int UpProcess::SignalAndWait(int signal, int timeout_s) {
  if (child_ == nullptr) return -1;
  child_->Signal(signal);
  return Wait(timeout_s);
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return children;
  while (dirent* entry = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), {});
    // pid (comm) state ppid ...; comm may hold spaces, so parse after the last ')'.
    const size_t close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 1));
    char state;
    pid_t ppid = 0;
    if (rest >> state >> ppid && ppid == parent) children.push_back(pid);
  }
  closedir(proc);
  return children;
}

bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

}  // namespace saola::test
