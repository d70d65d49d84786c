#include "tests/router/router_process.h"

#include <signal.h>

#include <cstdio>
#include <optional>

namespace saola::test {

RouterProcess::RouterProcess(const std::vector<std::string>& flags) {
  std::vector<std::string> args = {std::string(SAOLA_BINARY_DIR) + "/bin/saola-router",
                                   "serve", "--port", "0", "--metrics-port", "0",
                                   "--host", "127.0.0.1"};
  args.insert(args.end(), flags.begin(), flags.end());
  ChildOptions options;
  // Run from the source tree so the default --semantic-model-dir (models/...) resolves.
  options.working_dir = SAOLA_SOURCE_DIR;
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start("saola-router", std::move(args), options);
  if (!child.ok()) {
    std::fprintf(stderr, "RouterProcess: %s\n", child.status().ToString().c_str());
    return;
  }
  child_ = *std::move(child);
  absl::StatusOr<std::string> line =
      child_->ReadLineStartingWith("saola-router: listening", absl::Seconds(60));
  // Keep draining stdout in the background so the child never blocks on a full pipe.
  child_->DiscardStdout();
  if (!line.ok() || std::sscanf(line->c_str(), "saola-router: listening port=%d metrics_port=%d",
                                &port_, &metrics_port_) != 2) {
    port_ = metrics_port_ = 0;
  }
}

int RouterProcess::Terminate(int timeout_s) {
  if (child_ == nullptr) return -1;
  child_->Signal(SIGTERM);
  const std::optional<int> status = child_->Wait(absl::Seconds(timeout_s));
  return status.has_value() ? ChildProcess::ExitCode(*status) : -1;
}

}  // namespace saola::test
