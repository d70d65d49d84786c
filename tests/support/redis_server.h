// A real redis-server for tests: started on a free loopback port in its own temporary directory,
// with persistence off, and killed when the object goes away.
//
//   ASSERT_OK_AND_ASSIGN-style:
//     absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start();
//     ... connect to (*redis)->url() ...
//     (*redis)->Stop();     // SIGKILL: as if the server crashed
//     (*redis)->Restart();  // a fresh, empty server on the same port
//
// Runs /usr/bin/redis-server (override with $SAOLA_REDIS_SERVER) as
//   redis-server --port N --bind 127.0.0.1 --save "" --appendonly no --dir <tmp>
// and waits until it answers PING. Its log is <tmp>/redis.log.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace saola::testing {

class RedisServer {
 public:
  /// Starts a server on a free port (found by binding port 0) and waits up to 10 s for PING.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start();
  /// Kills the server (if running) and removes its directory.
  ~RedisServer();

  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  /// "redis://127.0.0.1:<port>".
  std::string url() const;
  bool running() const { return pid_ > 0; }

  /// SIGKILLs the server and reaps it; the port is closed when this returns. No-op when stopped.
  absl::Status Stop();
  /// Starts a fresh (empty) server on the same port after Stop(), and waits for PING.
  absl::Status Restart();
  /// SIGSTOP / SIGCONT: the port still accepts connections, but nothing answers (a hung server).
  absl::Status Pause();
  absl::Status Resume();

 private:
  RedisServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  absl::Status Spawn();
  absl::Status WaitForPing();

  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace saola::testing
