#include "cache/exact/memory_cache.h"

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/cache/exact/test_responses.h"

namespace saola::cache {
namespace {

using testing::MakeResponse;

RequestFingerprint FpFor(int i) {
  saola::v1::GenerateRequest r;
  r.mutable_sampling()->set_temperature(0.0f);
  const int32_t ids[] = {1, i};
  return FingerprintRequest("acme", "tinyllama", ids, r);
}

struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1700000000);
  std::function<absl::Time()> Fn() {
    return [this] { return now; };
  }
};

TEST(MemoryCacheTest, HitReturnsExactlyWhatWasStored) {
  MemoryCache cache;
  EXPECT_EQ(cache.backend(), "memory");
  const RequestFingerprint fp = FpFor(1);
  EXPECT_FALSE(cache.Lookup(fp).has_value());
  saola::v1::CachedResponse stored = MakeResponse(3, 16);
  cache.Store(fp, stored);
  std::optional<saola::v1::CachedResponse> hit = cache.Lookup(fp);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->version(), kCachedResponseVersion);
  EXPECT_EQ(hit->fingerprint(), fp.canonical);
  EXPECT_GT(hit->created_unix_seconds(), 0);
  stored.set_version(hit->version());
  stored.set_fingerprint(hit->fingerprint());
  stored.set_created_unix_seconds(hit->created_unix_seconds());
  EXPECT_EQ(hit->SerializeAsString(), stored.SerializeAsString());
  EXPECT_FALSE(cache.Lookup(FpFor(2)).has_value());

  const ExactCacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.stores, 1u);
  EXPECT_EQ(s.entries, 1);
  EXPECT_EQ(s.bytes, static_cast<int64_t>(kCachedValueHeaderBytes + hit->ByteSizeLong() +
                                          fp.key.size() + kMemoryEntryOverheadBytes));
}

TEST(MemoryCacheTest, ByteBoundEvictsLeastRecentlyUsed) {
  // Learn one entry's charge, then make room for exactly three.
  int64_t charge = 0;
  {
    MemoryCache probe;
    probe.Store(FpFor(0), MakeResponse());
    charge = probe.stats().bytes;
  }
  MemoryCacheOptions options;
  options.capacity_bytes = static_cast<size_t>(3 * charge + charge / 2);
  MemoryCache cache(options);
  for (int i = 1; i <= 3; ++i) cache.Store(FpFor(i), MakeResponse());
  EXPECT_EQ(cache.stats().entries, 3);
  ASSERT_TRUE(cache.Lookup(FpFor(1)).has_value());  // 1 is now the most recent; 2 the least
  cache.Store(FpFor(4), MakeResponse());
  EXPECT_EQ(cache.stats().entries, 3);
  EXPECT_LE(cache.stats().bytes, static_cast<int64_t>(options.capacity_bytes));
  EXPECT_FALSE(cache.Lookup(FpFor(2)).has_value());
  EXPECT_TRUE(cache.Lookup(FpFor(1)).has_value());
  EXPECT_TRUE(cache.Lookup(FpFor(3)).has_value());
  EXPECT_TRUE(cache.Lookup(FpFor(4)).has_value());
  // Order now (most recent first): 4 3 1. One entry about twice as large evicts 1, then 3.
  cache.Store(FpFor(5), MakeResponse(1, static_cast<int>(charge)));
  EXPECT_TRUE(cache.Lookup(FpFor(5)).has_value());
  EXPECT_TRUE(cache.Lookup(FpFor(4)).has_value());
  EXPECT_FALSE(cache.Lookup(FpFor(1)).has_value());
  EXPECT_FALSE(cache.Lookup(FpFor(3)).has_value());
}

TEST(MemoryCacheTest, ReplacingAKeyKeepsTheByteCountExact) {
  MemoryCache cache;
  cache.Store(FpFor(1), MakeResponse(2, 10));
  cache.Store(FpFor(1), MakeResponse(2, 1000));
  cache.Store(FpFor(1), MakeResponse(2, 10));
  MemoryCache once;
  once.Store(FpFor(1), MakeResponse(2, 10));
  EXPECT_EQ(cache.stats().entries, 1);
  EXPECT_EQ(cache.stats().bytes, once.stats().bytes);
}

TEST(MemoryCacheTest, EntriesExpireAfterTheirTtl) {
  FakeClock clock;
  MemoryCacheOptions options;
  options.ttl = absl::Seconds(60);
  options.now = clock.Fn();
  MemoryCache cache(options);
  cache.Store(FpFor(1), MakeResponse());
  clock.now += absl::Seconds(59);
  cache.Store(FpFor(2), MakeResponse());
  EXPECT_TRUE(cache.Lookup(FpFor(1)).has_value());
  clock.now += absl::Seconds(1);
  EXPECT_FALSE(cache.Lookup(FpFor(1)).has_value());  // exactly at the deadline: expired
  EXPECT_EQ(cache.stats().entries, 1);               // and dropped
  EXPECT_TRUE(cache.Lookup(FpFor(2)).has_value());
  EXPECT_EQ(cache.Lookup(FpFor(2))->created_unix_seconds(), 1700000059);
  clock.now += absl::Seconds(59);
  EXPECT_FALSE(cache.Lookup(FpFor(2)).has_value());
  EXPECT_EQ(cache.stats().entries, 0);
  EXPECT_EQ(cache.stats().bytes, 0);
}

TEST(MemoryCacheTest, FingerprintMismatchUnderTheSameKeyIsAMiss) {
  MemoryCache cache;
  const RequestFingerprint owner = FpFor(1);
  cache.Store(owner, MakeResponse());
  RequestFingerprint collider = FpFor(2);
  collider.key = owner.key;  // force a collision
  EXPECT_FALSE(cache.Lookup(collider).has_value());
  EXPECT_TRUE(cache.Lookup(owner).has_value());  // the owner's entry survives
}

TEST(MemoryCacheTest, DropsWhatItCannotReplay) {
  MemoryCacheOptions options;
  options.max_value_bytes = 1024;
  MemoryCache cache(options);
  cache.Store(FpFor(1), MakeResponse(4, 1024));  // too large
  saola::v1::CachedResponse unfinished = MakeResponse();
  unfinished.mutable_messages(3)->clear_finish();
  cache.Store(FpFor(2), unfinished);
  cache.Store(FpFor(3), saola::v1::CachedResponse());
  EXPECT_EQ(cache.stats().dropped, 3u);
  EXPECT_EQ(cache.stats().entries, 0);
  EXPECT_FALSE(cache.Lookup(FpFor(1)).has_value());
}

TEST(MemoryCacheTest, ConcurrentUseKeepsTheBound) {
  MemoryCacheOptions options;
  options.capacity_bytes = 16 * 1024;
  MemoryCache cache(options);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 5000; ++i) {
        const int k = static_cast<int>(rng() % 64);
        if (rng() % 3 == 0) {
          cache.Store(FpFor(k), MakeResponse(2, 16 + k, static_cast<char>('a' + k % 20)));
        } else if (auto hit = cache.Lookup(FpFor(k))) {
          if (hit->messages(0).text().size() != static_cast<size_t>(16 + k)) ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(cache.stats().bytes, static_cast<int64_t>(options.capacity_bytes));
  EXPECT_GT(cache.stats().hits, 0u);
}

}  // namespace
}  // namespace saola::cache
