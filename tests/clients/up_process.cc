#include "tests/clients/up_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace saola::test {

UpProcess::UpProcess(const std::vector<std::string>& flags) {
  const std::string binary = std::string(SAOLA_BINARY_DIR) + "/bin/saola";
  std::vector<std::string> args = {binary, "up", "--port", "0"};
  args.insert(args.end(), flags.begin(), flags.end());
  static int counter = 0;
  stderr_path_ = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                 "/saola_up_" + std::to_string(getpid()) + "_" + std::to_string(counter++) +
                 ".err";
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return;  // later forks (popen) must not inherit it
  pid_ = fork();
  if (pid_ == 0) {
    const int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out[1], STDOUT_FILENO);
    if (err >= 0) dup2(err, STDERR_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  FILE* stream = fdopen(out[0], "r");
  char buf[1024];
  // saola up prints one line on stdout; fgets returns at EOF if it exits first.
  if (fgets(buf, sizeof buf, stream) != nullptr) {
    line_ = buf;
    if (!line_.empty() && line_.back() == '\n') line_.pop_back();
    std::sscanf(buf, "saola up: router listening on 127.0.0.1:%d", &port_);
  }
  std::thread([stream] {
    char drain[256];
    while (fgets(drain, sizeof drain, stream)) {
    }
    fclose(stream);
  }).detach();
}

UpProcess::~UpProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::remove(stderr_path_.c_str());
}

std::string UpProcess::Stderr() const {
  std::ifstream in(stderr_path_);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int UpProcess::Wait(int timeout_s) {
  if (pid_ <= 0) return -1;
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

int UpProcess::SignalAndWait(int signal, int timeout_s) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
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
