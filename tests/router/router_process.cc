#include "tests/router/router_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

namespace saola::test {

RouterProcess::RouterProcess(const std::vector<std::string>& flags) {
  const std::string binary = std::string(SAOLA_BINARY_DIR) + "/bin/saola-router";
  std::vector<std::string> args = {binary, "serve", "--port", "0", "--metrics-port", "0",
                                   "--host", "127.0.0.1"};
  args.insert(args.end(), flags.begin(), flags.end());
  int out[2];
  if (pipe(out) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    // Run from the source tree so the default --semantic-model-dir (models/...) resolves.
    if (chdir(SAOLA_SOURCE_DIR) != 0) _exit(126);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  FILE* stream = fdopen(out[0], "r");
  char line[1024];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && fgets(line, sizeof line, stream)) {
    if (std::sscanf(line, "saola-router: listening port=%d metrics_port=%d", &port_,
                    &metrics_port_) == 2) {
      break;
    }
  }
  std::thread([stream] {
    char buf[256];
    while (fgets(buf, sizeof buf, stream)) {
    }
    fclose(stream);
  }).detach();
}

RouterProcess::~RouterProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

int RouterProcess::Terminate(int timeout_s) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

}  // namespace saola::test
