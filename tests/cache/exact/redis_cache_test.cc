// The Redis backend against a real redis-server (tests/support/redis_server.h): round trips, TTL,
// and what happens when Redis dies, hangs, comes back, or holds bytes we did not write.
#include "cache/exact/redis_cache.h"

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cache/exact/exact_cache_factory.h"
#include "gtest/gtest.h"
#include "tests/cache/exact/test_responses.h"
#include "tests/support/redis_server.h"

namespace saola::cache {
namespace {

// The most one cache call may take while Redis is dead or hung: far above the cache's own
// timeouts (milliseconds), far below what an unbounded call would take (seconds or forever).
constexpr absl::Duration kBoundedCall = absl::Milliseconds(500);

using saola::testing::RedisServer;
using testing::MakeResponse;

RequestFingerprint FpFor(int i, std::string_view tenant = "acme") {
  saola::v1::GenerateRequest r;
  r.mutable_sampling()->set_temperature(0.0f);
  const int32_t ids[] = {1, i};
  return FingerprintRequest(tenant, "tinyllama", ids, r);
}

// A plain hiredis connection for looking behind the cache's back.
class RawRedis {
 public:
  explicit RawRedis(int port) {
    c_ = redisConnectWithTimeout("127.0.0.1", port, timeval{2, 0});
  }
  ~RawRedis() {
    if (c_ != nullptr) redisFree(c_);
  }
  bool ok() const { return c_ != nullptr && c_->err == 0; }
  // The integer reply of a command on one key, or -100 on error.
  long long Integer(const char* cmd, const std::string& key) {
    auto* r = static_cast<redisReply*>(redisCommand(c_, "%s %b", cmd, key.data(), key.size()));
    long long v = (r != nullptr && r->type == REDIS_REPLY_INTEGER) ? r->integer : -100;
    if (r != nullptr) freeReplyObject(r);
    return v;
  }
  bool Set(const std::string& key, const std::string& value) {
    auto* r = static_cast<redisReply*>(
        redisCommand(c_, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
    bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    if (r != nullptr) freeReplyObject(r);
    return ok;
  }
  bool Push(const std::string& key) {
    auto* r = static_cast<redisReply*>(redisCommand(c_, "LPUSH %b x", key.data(), key.size()));
    bool ok = r != nullptr && r->type == REDIS_REPLY_INTEGER;
    if (r != nullptr) freeReplyObject(r);
    return ok;
  }

 private:
  redisContext* c_ = nullptr;
};

class RedisCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Generous timeouts for the round-trip tests: this machine is shared, and a miss there would
  // be a flaky failure, not a finding. The failure tests use the defaults.
  static RedisCacheOptions Relaxed() {
    RedisCacheOptions o;
    o.command_timeout = absl::Milliseconds(500);
    o.connect_timeout = absl::Milliseconds(500);
    o.write_timeout = absl::Milliseconds(500);
    return o;
  }

  std::unique_ptr<RedisCache> MakeCache(RedisCacheOptions options) {
    absl::StatusOr<std::unique_ptr<RedisCache>> cache = RedisCache::Create(server_->url(), options);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return cache.ok() ? *std::move(cache) : nullptr;
  }

  // Stores fp and polls Lookup until it hits or `limit` passes.
  static bool StoreUntilHit(RedisCache& cache, const RequestFingerprint& fp, absl::Duration limit) {
    const absl::Time deadline = absl::Now() + limit;
    while (absl::Now() < deadline) {
      cache.Store(fp, MakeResponse());
      cache.Flush();
      if (cache.Lookup(fp).has_value()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::unique_ptr<RedisServer> server_;
};

TEST_F(RedisCacheTest, StoreThenLookupRoundTrips) {
  std::unique_ptr<RedisCache> cache = MakeCache(Relaxed());
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->backend(), "redis");
  const RequestFingerprint fp = FpFor(1);
  EXPECT_FALSE(cache->Lookup(fp).has_value());
  saola::v1::CachedResponse stored = MakeResponse(6, 300);
  cache->Store(fp, stored);
  cache->Flush();
  std::optional<saola::v1::CachedResponse> hit = cache->Lookup(fp);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->fingerprint(), fp.canonical);
  EXPECT_EQ(hit->version(), kCachedResponseVersion);
  stored.set_version(hit->version());
  stored.set_fingerprint(hit->fingerprint());
  stored.set_created_unix_seconds(hit->created_unix_seconds());
  EXPECT_EQ(hit->SerializeAsString(), stored.SerializeAsString());
  EXPECT_FALSE(cache->Lookup(FpFor(1, "other-tenant")).has_value());

  const ExactCacheStats s = cache->stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.stores, 1u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.dropped, 0u);
}

TEST_F(RedisCacheTest, SetsTheTtlAndTheKeyPrefix) {
  RedisCacheOptions options = Relaxed();
  options.ttl = absl::Seconds(120);
  options.key_prefix = "tenant-cluster-1:";
  std::unique_ptr<RedisCache> cache = MakeCache(options);
  ASSERT_NE(cache, nullptr);
  const RequestFingerprint fp = FpFor(2);
  cache->Store(fp, MakeResponse());
  cache->Flush();
  RawRedis raw(server_->port());
  ASSERT_TRUE(raw.ok());
  const long long ttl = raw.Integer("TTL", "tenant-cluster-1:" + fp.key);
  EXPECT_GT(ttl, 110);
  EXPECT_LE(ttl, 120);
  EXPECT_EQ(raw.Integer("EXISTS", fp.key), 0);
}

TEST_F(RedisCacheTest, CorruptOrForeignValuesAreMissesAndDeleted) {
  std::unique_ptr<RedisCache> cache = MakeCache(Relaxed());
  ASSERT_NE(cache, nullptr);
  RawRedis raw(server_->port());
  ASSERT_TRUE(raw.ok());

  const RequestFingerprint garbage = FpFor(3);
  ASSERT_TRUE(raw.Set(garbage.key, "not a cached response"));
  EXPECT_FALSE(cache->Lookup(garbage).has_value());
  EXPECT_EQ(raw.Integer("EXISTS", garbage.key), 0);

  // A valid entry whose canonical bytes are another request's (a forced key collision).
  const RequestFingerprint owner = FpFor(4);
  cache->Store(owner, MakeResponse());
  cache->Flush();
  RequestFingerprint collider = FpFor(5);
  collider.key = owner.key;
  EXPECT_FALSE(cache->Lookup(collider).has_value());
  EXPECT_EQ(raw.Integer("EXISTS", owner.key), 0);

  const RequestFingerprint wrong_type = FpFor(6);
  ASSERT_TRUE(raw.Push(wrong_type.key));
  EXPECT_FALSE(cache->Lookup(wrong_type).has_value());
  EXPECT_EQ(raw.Integer("EXISTS", wrong_type.key), 0);

  // The connection survived all of that.
  EXPECT_TRUE(StoreUntilHit(*cache, FpFor(7), absl::Seconds(2)));
  EXPECT_EQ(cache->stats().errors, 2u);  // garbage and wrong type; a collision is no error
}

TEST_F(RedisCacheTest, DeadRedisCostsMissesNotLatencyAndHitsResumeAfterRestart) {
  RedisCacheOptions options;  // production timeouts
  options.backoff_max = absl::Milliseconds(400);
  std::unique_ptr<RedisCache> cache = MakeCache(options);
  ASSERT_NE(cache, nullptr);
  const RequestFingerprint fp = FpFor(8);
  ASSERT_TRUE(StoreUntilHit(*cache, fp, absl::Seconds(5)));

  ASSERT_TRUE(server_->Stop().ok());
  absl::Duration slowest;
  for (int i = 0; i < 300; ++i) {
    const absl::Time start = absl::Now();
    EXPECT_FALSE(cache->Lookup(fp).has_value());
    cache->Store(FpFor(100 + i), MakeResponse());
    slowest = std::max(slowest, absl::Now() - start);
    absl::SleepFor(absl::Milliseconds(2));  // ~0.6 s: spans several reconnect attempts
  }
  // Bounded by the cache's own millisecond timeouts and its breaker, not by TCP's or a hung
  // server's (seconds, or forever). The bound is loose on purpose: a loaded CI machine stalls
  // threads for tens of milliseconds; the real latencies are in bench/exact_cache_bench.cc.
  EXPECT_LT(slowest, kBoundedCall);
  cache->Flush();
  ExactCacheStats down = cache->stats();
  EXPECT_GE(down.errors, 300u);
  EXPECT_GE(down.dropped, 300u);

  // Same port, empty server; the same cache object must find it by itself.
  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_TRUE(StoreUntilHit(*cache, fp, absl::Seconds(5)));
}

TEST_F(RedisCacheTest, DownAtStartupIsNotAnError) {
  ASSERT_TRUE(server_->Stop().ok());
  RedisCacheOptions options;
  options.backoff_max = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<ExactCache>> cache =
      MakeExactCache(server_->url(), ExactCacheOptions{{}, options});
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->backend(), "redis");
  const absl::Time start = absl::Now();
  EXPECT_FALSE((*cache)->Lookup(FpFor(9)).has_value());
  EXPECT_LT(absl::Now() - start, kBoundedCall);

  ASSERT_TRUE(server_->Restart().ok());
  auto* redis = static_cast<RedisCache*>(cache->get());
  EXPECT_TRUE(StoreUntilHit(*redis, FpFor(9), absl::Seconds(5)));
}

TEST_F(RedisCacheTest, HungRedisIsBoundedByTheTimeout) {
  RedisCacheOptions options;  // 5 ms command timeout
  options.backoff_max = absl::Milliseconds(200);
  std::unique_ptr<RedisCache> cache = MakeCache(options);
  ASSERT_NE(cache, nullptr);
  const RequestFingerprint fp = FpFor(10);
  ASSERT_TRUE(StoreUntilHit(*cache, fp, absl::Seconds(5)));

  ASSERT_TRUE(server_->Pause().ok());  // connections still open, nobody answers
  absl::Duration slowest;
  for (int i = 0; i < 100; ++i) {
    const absl::Time start = absl::Now();
    EXPECT_FALSE(cache->Lookup(fp).has_value());
    slowest = std::max(slowest, absl::Now() - start);
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_LT(slowest, kBoundedCall);
  EXPECT_GT(cache->stats().errors, 0u);

  ASSERT_TRUE(server_->Resume().ok());
  EXPECT_TRUE(StoreUntilHit(*cache, fp, absl::Seconds(5)));
}

TEST_F(RedisCacheTest, OversizedValuesAreDroppedNotSent) {
  RedisCacheOptions options = Relaxed();
  options.max_value_bytes = 2048;
  std::unique_ptr<RedisCache> cache = MakeCache(options);
  ASSERT_NE(cache, nullptr);
  cache->Store(FpFor(11), MakeResponse(8, 1024));
  cache->Flush();
  EXPECT_EQ(cache->stats().dropped, 1u);
  EXPECT_EQ(cache->stats().stores, 0u);
  EXPECT_FALSE(cache->Lookup(FpFor(11)).has_value());
}

}  // namespace
}  // namespace saola::cache
