// saola-exact-cache-bench: how long the router's exact-cache Lookup takes, memory vs Redis.
//
// For a ~2 KB cached response (64 token deltas, the size of a short chat answer; the stored value
// also carries the 2 KB canonical request of a 512-token prompt) it times 10,000
// single Lookup calls per case with a steady clock and prints p50 / p99 / p99.9 / max, which
// Google Benchmark does not report; then the Google Benchmark cases give mean and throughput.
// Cases: memory hit, Redis hit, Redis miss (a deterministic request the cache has not seen), and
// FingerprintRequest for a 512-token prompt (paid on every deterministic request).
//
// Redis: by default a private redis-server is started on a free loopback port
// (tests/support/redis_server.h); set SAOLA_BENCH_REDIS_URL=redis://host:port to use a running one.
// The router's target for its whole cache path is p99 <= 2 ms with Redis on loopback.
//
//   build-exact/bin/saola-exact-cache-bench [--benchmark_min_time=0.2]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "cache/exact/memory_cache.h"
#include "cache/exact/redis_cache.h"
#include "cache/exact/request_fingerprint.h"
#include "tests/support/redis_server.h"

namespace saola::cache {
namespace {

constexpr int kTimedCalls = 10000;
constexpr int kPromptTokens = 512;

ExactCache* g_memory = nullptr;
ExactCache* g_redis = nullptr;
RequestFingerprint g_hit;
RequestFingerprint g_miss;

saola::v1::GenerateRequest GreedyRequest() {
  saola::v1::GenerateRequest r;
  r.mutable_sampling()->set_temperature(0.0f);
  r.set_max_tokens(64);
  r.add_stop("\n\n");
  return r;
}

std::vector<int32_t> Prompt(int salt) {
  std::vector<int32_t> ids(kPromptTokens);
  for (int i = 0; i < kPromptTokens; ++i) ids[i] = (i * 7919 + salt) % 32000;
  return ids;
}

// 64 deltas of ~24 bytes of text and one token each, the last with a finish: ~2 KB encoded.
saola::v1::CachedResponse TwoKilobyteResponse() {
  saola::v1::CachedResponse r;
  for (int i = 0; i < 64; ++i) {
    saola::v1::GenerateResponse* m = r.add_messages();
    m->set_text(std::string(24, static_cast<char>('a' + i % 26)));
    m->add_token_ids(1000 + i);
  }
  auto* f = r.mutable_messages(63)->mutable_finish();
  f->set_reason(saola::v1::STOP);
  f->mutable_usage()->set_prompt_tokens(kPromptTokens);
  f->mutable_usage()->set_completion_tokens(64);
  return r;
}

template <typename Fn>
void ReportPercentiles(const char* name, Fn call) {
  for (int i = 0; i < 1000; ++i) call();  // warm up connections and caches
  std::vector<double> us(kTimedCalls);
  for (int i = 0; i < kTimedCalls; ++i) {
    const auto start = std::chrono::steady_clock::now();
    call();
    us[i] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                .count();
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[static_cast<size_t>(q * (us.size() - 1))]; };
  std::printf("%-28s n=%d  p50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  max %8.1f us\n", name,
              kTimedCalls, at(0.50), at(0.99), at(0.999), us.back());
}

void BM_MemoryLookupHit(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_memory->Lookup(g_hit));
}
void BM_RedisLookupHit(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_redis->Lookup(g_hit));
}
void BM_RedisLookupMiss(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_redis->Lookup(g_miss));
}
void BM_Fingerprint512Tokens(benchmark::State& state) {
  const saola::v1::GenerateRequest r = GreedyRequest();
  const std::vector<int32_t> ids = Prompt(1);
  for (auto _ : state) benchmark::DoNotOptimize(FingerprintRequest("acme", "tinyllama", ids, r));
}

int Main(int argc, char** argv) {
  const saola::v1::GenerateRequest request = GreedyRequest();
  const std::vector<int32_t> hit_ids = Prompt(1);
  const std::vector<int32_t> miss_ids = Prompt(2);
  g_hit = FingerprintRequest("acme", "tinyllama", hit_ids, request);
  g_miss = FingerprintRequest("acme", "tinyllama", miss_ids, request);
  const saola::v1::CachedResponse response = TwoKilobyteResponse();

  std::unique_ptr<saola::testing::RedisServer> server;
  std::string url;
  if (const char* env = std::getenv("SAOLA_BENCH_REDIS_URL"); env != nullptr && env[0] != '\0') {
    url = env;
  } else {
    absl::StatusOr<std::unique_ptr<saola::testing::RedisServer>> started =
        saola::testing::RedisServer::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "cannot start redis-server: %s\n", started.status().ToString().c_str());
      return 1;
    }
    server = *std::move(started);
    url = server->url();
  }

  MemoryCache memory;
  absl::StatusOr<std::unique_ptr<RedisCache>> redis = RedisCache::Create(url);  // default options
  if (!redis.ok()) {
    std::fprintf(stderr, "%s\n", redis.status().ToString().c_str());
    return 1;
  }
  memory.Store(g_hit, response);
  (*redis)->Store(g_hit, response);
  (*redis)->Flush();
  std::optional<saola::v1::CachedResponse> check = (*redis)->Lookup(g_hit);
  if (!check.has_value()) {
    std::fprintf(stderr, "redis at %s did not return the stored response\n", url.c_str());
    return 1;
  }
  g_memory = &memory;
  g_redis = redis->get();
  saola::v1::CachedResponse messages_only = *check;
  messages_only.clear_fingerprint();
  std::printf(
      "cached value: %zu bytes = messages %zu + fingerprint %zu (the canonical request, 4 bytes "
      "per prompt token; %d tokens) + header; redis %s\n",
      check->ByteSizeLong() + 16, messages_only.ByteSizeLong(), check->fingerprint().size(),
      kPromptTokens, url.c_str());

  ReportPercentiles("memory Lookup hit", [] { benchmark::DoNotOptimize(g_memory->Lookup(g_hit)); });
  ReportPercentiles("redis Lookup hit", [] { benchmark::DoNotOptimize(g_redis->Lookup(g_hit)); });
  ReportPercentiles("redis Lookup miss", [] { benchmark::DoNotOptimize(g_redis->Lookup(g_miss)); });
  ReportPercentiles("FingerprintRequest 512 tok", [&] {
    benchmark::DoNotOptimize(FingerprintRequest("acme", "tinyllama", hit_ids, request));
  });
  const ExactCacheStats s = g_redis->stats();
  std::printf("redis stats: hits %llu misses %llu errors %llu\n",
              static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses),
              static_cast<unsigned long long>(s.errors));

  benchmark::RegisterBenchmark("BM_MemoryLookupHit", BM_MemoryLookupHit);
  benchmark::RegisterBenchmark("BM_RedisLookupHit", BM_RedisLookupHit);
  benchmark::RegisterBenchmark("BM_RedisLookupMiss", BM_RedisLookupMiss);
  benchmark::RegisterBenchmark("BM_Fingerprint512Tokens", BM_Fingerprint512Tokens);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace saola::cache

int main(int argc, char** argv) { return saola::cache::Main(argc, argv); }
