#include "tests/support/redis_server.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

extern char** environ;

namespace saola::testing {
namespace {

// A port no one listens on right now: bind port 0 on loopback and read what the kernel chose.
// (Another process could take it before redis-server binds it; Start retries on failure.)
absl::StatusOr<int> FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("bind port 0: ", std::strerror(err)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string RedisServerBinary() {
  const char* env = std::getenv("SAOLA_REDIS_SERVER");
  return env != nullptr && env[0] != '\0' ? env : "/usr/bin/redis-server";
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start() {
  std::string base = std::filesystem::temp_directory_path() / "saola-redis-XXXXXX";
  if (mkdtemp(base.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    std::unique_ptr<RedisServer> server(new RedisServer(base, *port));
    last = server->Spawn();
    if (last.ok()) return server;
    server->dir_.clear();  // keep the directory for the next attempt
  }
  std::error_code ignored;
  std::filesystem::remove_all(base, ignored);
  return last;
}

RedisServer::~RedisServer() {
  (void)Stop();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string RedisServer::url() const { return absl::StrCat("redis://127.0.0.1:", port_); }

absl::Status RedisServer::Spawn() {
  const std::string binary = RedisServerBinary();
  const std::string log = dir_ + "/redis.log";
  std::vector<std::string> args = {binary,       "--port",       std::to_string(port_),
                                   "--bind",     "127.0.0.1",    "--save",
                                   "",           "--appendonly", "no",
                                   "--dir",      dir_,           "--logfile",
                                   log,          "--daemonize",  "no"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", binary, ": ", std::strerror(rc)));
  }
  pid_ = pid;
  absl::Status ready = WaitForPing();
  if (!ready.ok()) (void)Stop();
  return ready;
}

absl::Status RedisServer::WaitForPing() {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("redis-server on port ", port_,
                                                 " exited at startup; see ", dir_, "/redis.log"));
    }
    timeval tv = {0, 200 * 1000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c != nullptr && c->err == 0) {
      redisSetTimeout(c, tv);
      auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
      const bool pong = reply != nullptr && reply->type == REDIS_REPLY_STATUS &&
                        std::string(reply->str, reply->len) == "PONG";
      if (reply != nullptr) freeReplyObject(reply);
      redisFree(c);
      if (pong) return absl::OkStatus();
    } else if (c != nullptr) {
      redisFree(c);
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("redis-server on port ", port_, " did not answer PING within 10 s"));
}

absl::Status RedisServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, SIGKILL);  // SIGKILL also ends a SIGSTOPped process
  int wstatus = 0;
  while (waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status RedisServer::Restart() {
  if (pid_ > 0) return absl::FailedPreconditionError("redis-server is still running; Stop() first");
  return Spawn();
}

absl::Status RedisServer::Pause() {
  if (pid_ <= 0 || kill(pid_, SIGSTOP) != 0) return absl::FailedPreconditionError("not running");
  return absl::OkStatus();
}

absl::Status RedisServer::Resume() {
  if (pid_ <= 0 || kill(pid_, SIGCONT) != 0) return absl::FailedPreconditionError("not running");
  return absl::OkStatus();
}

}  // namespace saola::testing
