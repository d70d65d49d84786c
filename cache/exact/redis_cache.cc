#include "cache/exact/redis_cache.h"

#include <hiredis/hiredis.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace saola::cache {
namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Sends one command built by hiredis's format string; null on an I/O error or timeout, after
// which the connection is unusable (the reply may still be in flight).
template <typename... Args>
Reply Command(redisContext* c, const char* format, Args... args) {
  return Reply(static_cast<redisReply*>(redisCommand(c, format, args...)));
}

// hiredis reports a socket timeout as EAGAIN's text; say what it means.
std::string DescribeIoError(const redisContext* c, absl::Duration timeout) {
  if (absl::StrContains(c->errstr, "temporarily unavailable")) {
    return absl::StrCat("timed out after ", absl::FormatDuration(timeout));
  }
  return c->errstr[0] != '\0' ? std::string(c->errstr) : "connection lost";
}

absl::Status ValidateOptions(const RedisCacheOptions& o) {
  if (o.pool_size < 1 || o.pool_size > 256) {
    return absl::InvalidArgumentError("redis cache: pool_size must be in 1..256");
  }
  if (o.connect_timeout <= absl::ZeroDuration() || o.command_timeout <= absl::ZeroDuration() ||
      o.write_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis cache: timeouts must be positive");
  }
  if (o.ttl < absl::Seconds(1)) return absl::InvalidArgumentError("redis cache: ttl must be >= 1s");
  if (o.backoff_initial <= absl::ZeroDuration() || o.backoff_max < o.backoff_initial) {
    return absl::InvalidArgumentError("redis cache: need 0 < backoff_initial <= backoff_max");
  }
  if (o.max_value_bytes <= kCachedValueHeaderBytes || o.max_queued_writes < 1) {
    return absl::InvalidArgumentError("redis cache: max_value_bytes and max_queued_writes too small");
  }
  return absl::OkStatus();
}

}  // namespace

void RedisCache::ContextDeleter::operator()(redisContext* c) const { redisFree(c); }

absl::StatusOr<std::unique_ptr<RedisCache>> RedisCache::Create(std::string_view url,
                                                                RedisCacheOptions options) {
  ASSIGN_OR_RETURN(RedisEndpoint endpoint, ParseRedisUrl(url));
  RETURN_IF_ERROR(ValidateOptions(options));
  // hiredis writes with write(2): a write to a connection Redis has closed raises SIGPIPE, whose
  // default action kills the router. A server that talks to peers over sockets ignores it and
  // handles EPIPE; do so unless the program installed its own handler.
  struct sigaction current = {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
  std::unique_ptr<RedisCache> cache(new RedisCache(std::move(endpoint), std::move(options)));
  // Open one reader now so that an unreachable Redis is logged at startup, not at the first
  // request. Failure is not an error: the breaker serves misses until Redis answers.
  if (Connection conn = cache->CheckoutReader()) cache->ReturnReader(std::move(conn));
  return cache;
}

RedisCache::RedisCache(RedisEndpoint endpoint, RedisCacheOptions options)
    : endpoint_(std::move(endpoint)), options_(std::move(options)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

RedisCache::~RedisCache() {
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  writer_.join();
}

RedisCache::Connection RedisCache::Connect(absl::Duration command_timeout,
                                           std::string* error) const {
  Connection conn(redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port,
                                          absl::ToTimeval(options_.connect_timeout)));
  if (conn == nullptr) {
    *error = "cannot allocate a connection";
    return nullptr;
  }
  if (conn->err != 0) {
    *error = DescribeIoError(conn.get(), options_.connect_timeout);
    return nullptr;
  }
  if (redisSetTimeout(conn.get(), absl::ToTimeval(command_timeout)) != REDIS_OK) {
    *error = "cannot set the socket timeout";
    return nullptr;
  }
  if (!endpoint_.password.empty()) {
    Reply reply = endpoint_.username.empty()
                      ? Command(conn.get(), "AUTH %b", endpoint_.password.data(),
                                endpoint_.password.size())
                      : Command(conn.get(), "AUTH %b %b", endpoint_.username.data(),
                                endpoint_.username.size(), endpoint_.password.data(),
                                endpoint_.password.size());
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
      *error = reply == nullptr ? DescribeIoError(conn.get(), command_timeout)
                                : absl::StrCat("AUTH failed: ", reply->str);
      return nullptr;
    }
  }
  if (endpoint_.db != 0) {
    Reply reply = Command(conn.get(), "SELECT %d", endpoint_.db);
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
      *error = reply == nullptr ? DescribeIoError(conn.get(), command_timeout)
                                : absl::StrCat("SELECT ", endpoint_.db, " failed: ", reply->str);
      return nullptr;
    }
  }
  return conn;
}

bool RedisCache::BreakerClosed() {
  absl::MutexLock lock(&mu_);
  return absl::Now() >= retry_at_;
}

bool RedisCache::ReaderReadyLocked() const {
  return !idle_.empty() || num_open_readers_ < options_.pool_size;
}

RedisCache::Connection RedisCache::CheckoutReader() {
  {
    absl::MutexLock lock(&mu_);
    if (absl::Now() < retry_at_) return nullptr;
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &RedisCache::ReaderReadyLocked),
                              options_.command_timeout)) {
      return nullptr;  // every reader busy for a whole timeout: a miss beats more waiting
    }
    if (!idle_.empty()) {
      Connection conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    ++num_open_readers_;  // reserve the slot; connect outside the lock
  }
  std::string error;
  Connection conn = Connect(options_.command_timeout, &error);
  if (conn == nullptr) {
    DropReader();
    ReportFailure(absl::StrCat("connect: ", error));
  }
  return conn;
}

void RedisCache::ReturnReader(Connection conn) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(std::move(conn));
  ReportSuccessLocked();
}

void RedisCache::DropReader() {
  absl::MutexLock lock(&mu_);
  --num_open_readers_;
}

void RedisCache::ReportSuccess() {
  absl::MutexLock lock(&mu_);
  ReportSuccessLocked();
}

void RedisCache::ReportSuccessLocked() {
  if (consecutive_failures_ == 0) return;
  const absl::Time now = absl::Now();
  if (outage_logged_) {
    std::fprintf(stderr, "saola-router: redis %s is back after %s; serving cache hits again\n",
                 endpoint_.Describe().c_str(),
                 absl::FormatDuration(absl::Trunc(now - down_since_, absl::Milliseconds(1))).c_str());
    last_log_at_ = now;
  }
  consecutive_failures_ = 0;
  retry_at_ = absl::InfinitePast();
  outage_logged_ = false;
  unlogged_failures_ = 0;
}

void RedisCache::ReportFailure(std::string_view what) {
  std::vector<Connection> stale;  // freed after the lock is released
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (consecutive_failures_ == 0) down_since_ = now;
  ++consecutive_failures_;
  absl::Duration backoff = options_.backoff_initial;
  for (int i = 1; i < consecutive_failures_ && backoff < options_.backoff_max; ++i) backoff *= 2;
  backoff = std::min(backoff, options_.backoff_max);
  retry_at_ = now + backoff;
  // The idle readers share the fate of the one that failed (Redis restarted, the network broke);
  // dropping them makes the next attempt connect afresh instead of failing on each in turn.
  num_open_readers_ -= static_cast<int>(idle_.size());
  stale.swap(idle_);
  if (now - last_log_at_ >= options_.log_interval) {
    std::string more;
    if (unlogged_failures_ > 0) more = absl::StrCat(" (", unlogged_failures_, " more errors)");
    std::fprintf(stderr,
                 "saola-router: redis %s unavailable (%.*s); serving cache misses, retrying in "
                 "%s%s\n",
                 endpoint_.Describe().c_str(), static_cast<int>(what.size()), what.data(),
                 absl::FormatDuration(backoff).c_str(), more.c_str());
    last_log_at_ = now;
    outage_logged_ = true;
    unlogged_failures_ = 0;
  } else {
    ++unlogged_failures_;
  }
}

bool RedisCache::DeleteKey(redisContext* conn, std::string_view key) {
  Reply reply = Command(conn, "DEL %b", key.data(), key.size());
  return reply != nullptr;
}

std::optional<saola::v1::CachedResponse> RedisCache::Lookup(
    const RequestFingerprint& fingerprint) {
  auto miss = [this](bool error) -> std::optional<saola::v1::CachedResponse> {
    misses_.fetch_add(1, std::memory_order_relaxed);
    if (error) errors_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  };
  Connection conn = CheckoutReader();
  if (conn == nullptr) return miss(/*error=*/true);

  const std::string key = absl::StrCat(options_.key_prefix, fingerprint.key);
  Reply reply = Command(conn.get(), "GET %b", key.data(), key.size());
  if (reply == nullptr) {
    const std::string why = DescribeIoError(conn.get(), options_.command_timeout);
    conn.reset();
    DropReader();
    ReportFailure(absl::StrCat("GET: ", why));
    return miss(/*error=*/true);
  }

  std::optional<saola::v1::CachedResponse> result;
  bool error = false;
  bool delete_entry = false;
  if (reply->type == REDIS_REPLY_NIL) {
    // absent or expired
  } else if (reply->type == REDIS_REPLY_STRING) {
    absl::StatusOr<saola::v1::CachedResponse> decoded = DecodeCachedResponse(
        std::string_view(reply->str, reply->len), options_.max_value_bytes);
    if (!decoded.ok()) {
      error = delete_entry = true;  // corrupt, planted, or from an unknown version
    } else if (decoded->fingerprint() != fingerprint.canonical) {
      delete_entry = true;  // a key collision: make room for this request's answer
    } else {
      result = *std::move(decoded);
    }
  } else {
    error = true;  // an error reply (e.g. WRONGTYPE: something else owns the key) or a non-string
    delete_entry = reply->type == REDIS_REPLY_ERROR && absl::StartsWith(reply->str, "WRONGTYPE");
  }
  reply.reset();

  if (delete_entry && !DeleteKey(conn.get(), key)) {
    const std::string why = DescribeIoError(conn.get(), options_.command_timeout);
    conn.reset();
    DropReader();
    ReportFailure(absl::StrCat("DEL: ", why));
    error = true;
  } else {
    ReturnReader(std::move(conn));
  }
  if (!result) return miss(error);
  hits_.fetch_add(1, std::memory_order_relaxed);
  return result;
}

void RedisCache::Store(const RequestFingerprint& fingerprint,
                       saola::v1::CachedResponse response) {
  response.set_version(kCachedResponseVersion);
  response.set_fingerprint(fingerprint.canonical);
  if (response.created_unix_seconds() == 0) {
    response.set_created_unix_seconds(absl::ToUnixSeconds(absl::Now()));
  }
  absl::StatusOr<std::string> value = EncodeCachedResponse(response, options_.max_value_bytes);
  if (!value.ok()) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  PendingWrite write{absl::StrCat(options_.key_prefix, fingerprint.key), *std::move(value)};
  const size_t bytes = write.key.size() + write.value.size();
  absl::MutexLock lock(&queue_mu_);
  if (queue_.size() >= options_.max_queued_writes ||
      queued_bytes_ + bytes > options_.max_queued_bytes) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queued_bytes_ += bytes;
  queue_.push_back(std::move(write));
}

bool RedisCache::WriterHasWorkLocked() const { return stopping_ || !queue_.empty(); }
bool RedisCache::WriterIdleLocked() const { return queue_.empty() && !writer_busy_; }

void RedisCache::Flush() {
  absl::MutexLock lock(&queue_mu_);
  queue_mu_.Await(absl::Condition(this, &RedisCache::WriterIdleLocked));
}

void RedisCache::WriterLoop() {
  Connection conn;
  for (;;) {
    PendingWrite write;
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.Await(absl::Condition(this, &RedisCache::WriterHasWorkLocked));
      if (queue_.empty()) return;  // stopping, and everything is written
      write = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= write.key.size() + write.value.size();
      writer_busy_ = true;
    }
    WriteOne(conn, write);
    absl::MutexLock lock(&queue_mu_);
    writer_busy_ = false;
  }
}

void RedisCache::WriteOne(Connection& conn, const PendingWrite& write) {
  auto drop = [this] {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    errors_.fetch_add(1, std::memory_order_relaxed);
  };
  if (!BreakerClosed()) {
    conn.reset();  // whatever broke the readers likely broke this one too
    return drop();
  }
  if (conn == nullptr) {
    std::string error;
    conn = Connect(options_.write_timeout, &error);
    if (conn == nullptr) {
      ReportFailure(absl::StrCat("connect: ", error));
      return drop();
    }
  }
  const long long ttl_seconds = std::max<int64_t>(1, absl::ToInt64Seconds(options_.ttl));
  Reply reply = Command(conn.get(), "SET %b %b EX %lld", write.key.data(), write.key.size(),
                        write.value.data(), write.value.size(), ttl_seconds);
  if (reply == nullptr) {
    const std::string why = DescribeIoError(conn.get(), options_.write_timeout);
    conn.reset();
    ReportFailure(absl::StrCat("SET: ", why));
    return drop();
  }
  if (reply->type == REDIS_REPLY_ERROR) {  // e.g. OOM under maxmemory: Redis is up, just full
    return drop();
  }
  stores_.fetch_add(1, std::memory_order_relaxed);
  ReportSuccess();
}

ExactCacheStats RedisCache::stats() const {
  ExactCacheStats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.stores = stores_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  return s;  // bytes and entries stay -1: Redis is shared with other routers
}

}  // namespace saola::cache
