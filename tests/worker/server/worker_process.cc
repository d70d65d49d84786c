#include "tests/worker/server/worker_process.h"

#include <arpa/inet.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>

#include "tests/common/reference_model.h"

namespace saola::test {

WorkerProcess::WorkerProcess(const std::vector<std::string>& extra_flags) {
  std::vector<std::string> args = {std::string(SAOLA_BINARY_DIR) + "/bin/saola-worker",
                                   "serve", "--model", ReferenceModelPath(), "--port", "0",
                                   "--metrics-port", "0", "--host", "127.0.0.1", "--threads", "2"};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start("saola-worker", std::move(args));
  if (!child.ok()) {
    std::fprintf(stderr, "WorkerProcess: %s\n", child.status().ToString().c_str());
    return;
  }
  child_ = *std::move(child);
  absl::StatusOr<std::string> line =
      child_->ReadLineStartingWith("saola-worker: listening", absl::Seconds(120));
  // Keep draining stdout in the background so the child never blocks on a full pipe.
  child_->DiscardStdout();
  char name[512] = {0};
  if (!line.ok() ||
      std::sscanf(line->c_str(), "saola-worker: listening port=%d metrics_port=%d model=%511s",
                  &port_, &metrics_port_, name) != 3) {
    port_ = metrics_port_ = 0;
    return;
  }
  model_name_ = name;
}

int WorkerProcess::Terminate(int timeout_s) {
  if (child_ == nullptr) return -1;
  child_->Signal(SIGTERM);
  const std::optional<int> status = child_->Wait(absl::Seconds(timeout_s));
  return status.has_value() ? ChildProcess::ExitCode(*status) : -1;
}

double MetricValue(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::atof(line.c_str() + series.size() + 1);
  }
  return -1;
}

}  // namespace saola::test
