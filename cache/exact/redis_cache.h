// The exact cache on Redis, shared by every router replica (hiredis, synchronous, with timeouts).
//
// Reads: Lookup takes a connection from a small pool (pool_size; a broken one is dropped, a
// missing one is opened on demand), sends GET with command_timeout, decodes and verifies the value
// (cached_response_codec.h) and DELetes a corrupt or mismatched one.
//
// Writes: Store encodes on the caller's thread (microseconds for a few KB) and hands the bytes to
// one background writer thread through a bounded queue (max_queued_writes / max_queued_bytes; a
// full queue drops the write). The writer sends SET key value EX ttl on its own connection with
// the longer write_timeout. Why not inline: Store runs at the end of a request the client is still
// waiting on, and a large value over a slow link can take longer than the read timeout; a cache
// write is worth nothing to that client, so it never waits for one.
//
// Failures: any connect error, I/O error or timeout opens a circuit breaker. For
// backoff_initial * 2^(n-1) (n consecutive failures, capped at backoff_max: 100 ms, 200 ms, ...
// 5 s by default) no read or write is attempted at all: Lookup is an immediate miss and Store an
// immediate drop, so a dead Redis costs requests no latency. The first operation after the window
// tries again (opening a fresh connection); one success closes the breaker, so hits resume by
// themselves once Redis is back. Failures are counted in stats().errors and logged to stderr at
// most once per log_interval, plus one line when Redis is back.
//
// Timeouts (defaults): command_timeout 5 ms. A GET of a few KB on loopback or within a zone takes
// 0.1-0.5 ms, so 5 ms is 10x headroom over normal latency while bounding what a sick Redis can add
// to one request (after which the breaker makes it free). connect_timeout 10 ms: loopback connects
// in microseconds and a refused connection fails at once; 10 ms covers a remote pod under load.
// write_timeout 100 ms: writes are off the request path, and a 4 MiB value needs several ms.
// Note: a host name is resolved (getaddrinfo) on each connect, outside these timeouts; use an
// address or a name the local resolver answers fast.
#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cache/exact/cached_response_codec.h"
#include "cache/exact/exact_cache.h"
#include "cache/exact/redis_url.h"

struct redisContext;

namespace saola::cache {

struct RedisCacheOptions {
  int pool_size = 4;  ///< Most read connections open at once (the writer has its own).
  absl::Duration connect_timeout = absl::Milliseconds(10);
  absl::Duration command_timeout = absl::Milliseconds(5);  ///< GET (and DEL of a bad entry).
  absl::Duration write_timeout = absl::Milliseconds(100);  ///< SET, on the writer thread.
  absl::Duration ttl = absl::Hours(1);                     ///< EX of every SET, >= 1 s.
  std::string key_prefix;  ///< Prepended to RequestFingerprint::key (e.g. one per deployment).
  size_t max_value_bytes = kMaxCachedValueBytes;
  size_t max_queued_writes = 1024;
  size_t max_queued_bytes = size_t{64} << 20;
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(5);
  absl::Duration log_interval = absl::Seconds(10);
};

class RedisCache final : public ExactCache {
 public:
  /// Parses `url` (redis://[[user]:password@]host[:port][/db]; INVALID_ARGUMENT naming --redis)
  /// and validates `options`. Does not fail when Redis is down: the cache then serves misses
  /// (after one log line) and connects once Redis answers.
  static absl::StatusOr<std::unique_ptr<RedisCache>> Create(std::string_view url,
                                                            RedisCacheOptions options = {});
  /// Writes what is queued (each write bounded by write_timeout, none while the breaker is open),
  /// then joins the writer. No Lookup or Store may be running.
  ~RedisCache() override;

  std::optional<saola::v1::CachedResponse> Lookup(const RequestFingerprint& fingerprint) override;
  void Store(const RequestFingerprint& fingerprint, saola::v1::CachedResponse response) override;
  std::string_view backend() const override { return "redis"; }
  ExactCacheStats stats() const override;

  /// Blocks until every Store that returned before this call has been written or dropped.
  void Flush();

  /// The endpoint as "host:port".
  std::string Describe() const { return endpoint_.Describe(); }

 private:
  struct ContextDeleter {
    void operator()(redisContext* c) const;
  };
  using Connection = std::unique_ptr<redisContext, ContextDeleter>;
  struct PendingWrite {
    std::string key;
    std::string value;
  };

  RedisCache(RedisEndpoint endpoint, RedisCacheOptions options);

  // A new connection (AUTH and SELECT done), or null with `*error` set.
  Connection Connect(absl::Duration command_timeout, std::string* error) const;
  // A read connection; null when the breaker is open, the pool stays busy for command_timeout,
  // or a connect fails (which is reported).
  Connection CheckoutReader();
  // Returns a healthy read connection to the pool and reports the success.
  void ReturnReader(Connection conn);
  // Forgets a broken read connection (it is freed by the caller).
  void DropReader();
  bool BreakerClosed() ABSL_LOCKS_EXCLUDED(mu_);
  bool ReaderReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the breaker (and logs the recovery) after failures.
  void ReportSuccess() ABSL_LOCKS_EXCLUDED(mu_);
  void ReportSuccessLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Opens the breaker for the next backoff, drops the idle readers, logs (rate-limited). The
  // caller counts the error.
  void ReportFailure(std::string_view what) ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes `key` on `conn` (a corrupt or mismatched value); true when the connection survived.
  bool DeleteKey(redisContext* conn, std::string_view key);

  void WriterLoop();
  void WriteOne(Connection& conn, const PendingWrite& write);
  bool WriterIdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  bool WriterHasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);

  const RedisEndpoint endpoint_;
  const RedisCacheOptions options_;

  // Read pool and circuit breaker.
  mutable absl::Mutex mu_;
  std::vector<Connection> idle_ ABSL_GUARDED_BY(mu_);
  int num_open_readers_ ABSL_GUARDED_BY(mu_) = 0;  // idle and checked out
  int consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time down_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_log_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool outage_logged_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t unlogged_failures_ ABSL_GUARDED_BY(mu_) = 0;

  // Write queue, drained by writer_.
  mutable absl::Mutex queue_mu_;
  std::deque<PendingWrite> queue_ ABSL_GUARDED_BY(queue_mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(queue_mu_) = 0;
  bool writer_busy_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;

  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> stores_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> errors_{0};

  std::thread writer_;  // last: starts after everything it reads is built
};

}  // namespace saola::cache
