// Unit tests of the router's small parts: circuit breaker, API keys, worker targets, semantic
// keys, executor.
#include <atomic>
#include <fstream>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "router/api_keys.h"
#include "router/circuit_breaker.h"
#include "router/executor.h"
#include "router/semantic_key.h"
#include "router/worker_discovery.h"

namespace saola::router {
namespace {

using State = CircuitBreaker::State;

TEST(CircuitBreakerTest, OpensAfterConsecutiveFailuresAndAdmitsOneTrial) {
  CircuitBreaker breaker({.failure_threshold = 3, .open_for = absl::Seconds(2),
                          .max_open_for = absl::Seconds(5)});
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  breaker.RecordFailure(t0);
  breaker.RecordFailure(t0);
  breaker.RecordSuccess();  // resets the run
  breaker.RecordFailure(t0);
  breaker.RecordFailure(t0);
  EXPECT_EQ(breaker.state(t0), State::kClosed);
  breaker.RecordFailure(t0);
  EXPECT_EQ(breaker.state(t0), State::kOpen);
  EXPECT_FALSE(breaker.Allow(t0 + absl::Seconds(1)));
  // Half-open: exactly one trial.
  const absl::Time t1 = t0 + absl::Seconds(2);
  EXPECT_EQ(breaker.state(t1), State::kHalfOpen);
  EXPECT_TRUE(breaker.WouldAllow(t1));
  EXPECT_TRUE(breaker.Allow(t1));
  EXPECT_FALSE(breaker.Allow(t1));
  EXPECT_FALSE(breaker.WouldAllow(t1));
  // A failed trial opens it for twice as long, capped.
  breaker.RecordFailure(t1);
  EXPECT_EQ(breaker.state(t1 + absl::Seconds(3)), State::kOpen);
  EXPECT_EQ(breaker.state(t1 + absl::Seconds(4)), State::kHalfOpen);
  EXPECT_TRUE(breaker.Allow(t1 + absl::Seconds(4)));
  breaker.RecordFailure(t1 + absl::Seconds(4));
  EXPECT_EQ(breaker.state(t1 + absl::Seconds(8)), State::kOpen);   // 5 s, not 8
  EXPECT_EQ(breaker.state(t1 + absl::Seconds(9)), State::kHalfOpen);
  // A successful trial closes it.
  EXPECT_TRUE(breaker.Allow(t1 + absl::Seconds(9)));
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.state(t1 + absl::Seconds(9)), State::kClosed);
  EXPECT_TRUE(breaker.Allow(t1 + absl::Seconds(9)));
  EXPECT_TRUE(breaker.Allow(t1 + absl::Seconds(9)));
}

TEST(ApiKeysTest, WithoutKeysEveryCallIsTheDefaultTenant) {
  ApiKeys keys;
  EXPECT_FALSE(keys.enabled());
  EXPECT_EQ(*keys.Resolve({}), kDefaultTenant);
}

TEST(ApiKeysTest, ResolvesBearerAndHeaderKeysAndRefusesOthers) {
  absl::StatusOr<ApiKeys> keys = ApiKeys::FromMap({{"k1", "alpha"}, {"k2", "beta"}});
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys->Resolve({{"authorization", "Bearer k1"}}), "alpha");
  EXPECT_EQ(*keys->Resolve({{"x-api-key", "k2"}}), "beta");
  EXPECT_EQ(keys->Resolve({}).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys->Resolve({{"authorization", "Bearer nope"}}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys->Resolve({{"authorization", "Basic k1"}}).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(ApiKeysTest, LoadsAKeyFileAndNamesTheBadLine) {
  const std::string path = ::testing::TempDir() + "/keys.txt";
  std::ofstream(path) << "# comment\n\nk1 alpha\nk2   beta\n";
  absl::StatusOr<ApiKeys> keys = ApiKeys::Load(path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(*keys->Resolve({{"x-api-key", "k2"}}), "beta");
  std::ofstream(path) << "k1 alpha\nonly-a-key\n";
  absl::StatusOr<ApiKeys> bad = ApiKeys::Load(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--api-keys"), std::string::npos);
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos);
  std::ofstream(path) << "k1 alpha\nk1 beta\n";
  EXPECT_FALSE(ApiKeys::Load(path).ok());  // duplicate key
  EXPECT_FALSE(ApiKeys::Load(path + ".missing").ok());
}

TEST(WorkerTargetsTest, ParsesFixedAndDnsTargets) {
  absl::StatusOr<std::vector<WorkerTarget>> t =
      ParseWorkerTargets("10.0.0.1:50051, dns:///workers.saola.svc:50051,[::1]:7");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 3u);
  EXPECT_FALSE((*t)[0].dns);
  EXPECT_TRUE((*t)[1].dns);
  EXPECT_EQ((*t)[1].host, "workers.saola.svc");
  EXPECT_EQ((*t)[1].port, "50051");
  EXPECT_EQ((*t)[2].host, "::1");
  for (const char* bad : {"", "nohost", "host:", "host:0", "host:99999", "dns:///:80", "a:b"}) {
    absl::StatusOr<std::vector<WorkerTarget>> r = ParseWorkerTargets(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--workers"), std::string::npos);
  }
}

TEST(WorkerTargetsTest, ResolvesDnsNamesToEveryAddress) {
  absl::StatusOr<std::vector<WorkerTarget>> t =
      ParseWorkerTargets("dns:///localhost:50051,127.0.0.9:1,dns:///no-such-host.invalid:1");
  ASSERT_TRUE(t.ok());
  std::vector<std::string> addresses = ResolveWorkerTargets(*t);
  EXPECT_NE(std::find(addresses.begin(), addresses.end(), "127.0.0.1:50051"), addresses.end());
  EXPECT_NE(std::find(addresses.begin(), addresses.end(), "127.0.0.9:1"), addresses.end());
  for (const std::string& a : addresses) EXPECT_EQ(a.find("invalid"), std::string::npos);
}

saola::v1::GenerateRequest ChatOf(std::vector<std::pair<std::string, std::string>> turns) {
  saola::v1::GenerateRequest r;
  for (auto& [role, content] : turns) {
    auto* m = r.mutable_chat()->add_messages();
    m->set_role(role);
    m->set_content(content);
  }
  return r;
}

TEST(SemanticKeyTest, ComparesTheLastMessageWithinTheSameConversation) {
  auto a = BuildSemanticKey("t", "m", ChatOf({{"user", "Tell me about France."},
                                              {"assistant", "France is a country."},
                                              {"user", "What is its population?"}}));
  auto b = BuildSemanticKey("t", "m", ChatOf({{"user", "Tell me about Germany."},
                                              {"assistant", "Germany is a country."},
                                              {"user", "What is its population?"}}));
  EXPECT_EQ(a.text, "What is its population?");
  EXPECT_NE(a.partition, b.partition);  // other history: never compared
  auto c = BuildSemanticKey("t", "m", ChatOf({{"user", "Tell me about France."},
                                              {"assistant", "France is a country."},
                                              {"user", "How many people live there?"}}));
  EXPECT_EQ(a.partition, c.partition);
  EXPECT_NE(BuildSemanticKey("u", "m", ChatOf({{"user", "x"}})).partition,
            BuildSemanticKey("t", "m", ChatOf({{"user", "x"}})).partition);
  saola::v1::GenerateRequest prompt;
  prompt.set_prompt("x");
  EXPECT_NE(BuildSemanticKey("t", "m", prompt).partition,
            BuildSemanticKey("t", "m", ChatOf({{"user", "x"}})).partition);
  saola::v1::GenerateRequest longer = prompt;
  longer.set_max_tokens(5);
  EXPECT_NE(BuildSemanticKey("t", "m", prompt).partition,
            BuildSemanticKey("t", "m", longer).partition);
}

TEST(ExecutorTest, RunsEveryTaskAndDrainsOnDestruction) {
  std::atomic<int> ran{0};
  {
    Executor executor(3);
    for (int i = 0; i < 1000; ++i) executor.Post([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 1000);
}

}  // namespace
}  // namespace saola::router
