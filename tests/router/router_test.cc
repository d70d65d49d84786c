// Integration tests of `saola-router serve`: real worker processes, a real router process and a
// real redis-server, all on loopback; real gRPC clients.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "saola/v1/llm.grpc.pb.h"
#include "tests/common/reference_model.h"
#include "tests/router/router_process.h"
#include "tests/support/redis_server.h"
#include "tests/worker/server/worker_process.h"

namespace saola::test {
namespace {

using saola::v1::GenerateRequest;
using saola::v1::GenerateResponse;

struct Result {
  grpc::Status status;
  std::vector<GenerateResponse> messages;
  std::string text;
  std::vector<uint32_t> ids;
  saola::v1::Finish finish;
};

Result Generate(const std::string& target, const GenerateRequest& request,
                const std::string& api_key = "", int timeout_ms = 120000) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = saola::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  if (!api_key.empty()) context.AddMetadata("authorization", "Bearer " + api_key);
  Result result;
  auto reader = stub->Generate(&context, request);
  GenerateResponse message;
  while (reader->Read(&message)) {
    result.text += message.text();
    result.ids.insert(result.ids.end(), message.token_ids().begin(), message.token_ids().end());
    if (message.has_finish()) result.finish = message.finish();
    result.messages.push_back(message);
  }
  result.status = reader->Finish();
  return result;
}

GenerateRequest Chat(const std::string& content, int max_tokens = 12) {
  GenerateRequest r;
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content(content);
  r.mutable_sampling()->set_temperature(0);
  r.set_max_tokens(max_tokens);
  return r;
}

GenerateRequest Semantic(const std::string& content) {
  GenerateRequest r = Chat(content);
  r.mutable_cache()->set_semantic(true);
  return r;
}

double WorkerMetric(const WorkerProcess& w, const std::string& series) {
  return MetricValue(ScrapeMetrics(w.metrics_port()), series);
}

// Waits until the router routes to `workers` workers (its status loop runs every 500 ms).
bool WaitForWorkersUp(const RouterProcess& router, int workers, int timeout_s = 60) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (MetricValue(ScrapeMetrics(router.metrics_port()),
                    "saola_router_workers{state=\"up\"}") == workers) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string WriteTempFile(const std::string& contents) {
  char path[] = "/tmp/saola-router-test-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "";
  if (write(fd, contents.data(), contents.size()) != static_cast<ssize_t>(contents.size())) {
    close(fd);
    return "";
  }
  close(fd);
  return path;
}

class RouterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveReferenceModel()) return;
    for (int i = 0; i < 2; ++i) {
      workers_[i] = new WorkerProcess({"--kv-cache-mb", "64", "--threads", "1"});
    }
  }
  static void TearDownTestSuite() {
    for (WorkerProcess*& w : workers_) {
      delete w;
      w = nullptr;
    }
  }
  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    ASSERT_TRUE(workers_[0]->ok() && workers_[1]->ok());
  }

  static std::string Workers() {
    return absl::StrCat(workers_[0]->target(), ",", workers_[1]->target());
  }
  // A router over both shared workers with `flags`, waited until both are routable.
  static std::unique_ptr<RouterProcess> StartRouter(std::vector<std::string> flags = {}) {
    flags.insert(flags.begin(), {"--workers", Workers()});
    auto router = std::make_unique<RouterProcess>(flags);
    if (!router->ok() || !WaitForWorkersUp(*router, 2)) return nullptr;
    return router;
  }

  static WorkerProcess* workers_[2];
};

WorkerProcess* RouterTest::workers_[2] = {nullptr, nullptr};

TEST_F(RouterTest, StreamsTheSameTokensAsTheWorkerItself) {
  auto router = StartRouter();
  ASSERT_NE(router, nullptr);
  GenerateRequest r = Chat("Write one sentence about the sea.", 24);
  r.mutable_cache()->set_bypass(true);
  Result via_router = Generate(router->target(), r);
  Result direct = Generate(workers_[0]->target(), r);
  ASSERT_TRUE(via_router.status.ok()) << via_router.status.error_message();
  ASSERT_TRUE(direct.status.ok()) << direct.status.error_message();
  EXPECT_EQ(via_router.ids, direct.ids);
  EXPECT_EQ(via_router.text, direct.text);
  EXPECT_EQ(via_router.finish.cache_source(), saola::v1::NONE);
  EXPECT_EQ(via_router.finish.usage().prompt_tokens(), direct.finish.usage().prompt_tokens());
  EXPECT_GT(via_router.messages.size(), 1u);  // streamed, not buffered
}

TEST_F(RouterTest, ExactHitReplaysTheMissExactly) {
  auto router = StartRouter();
  ASSERT_NE(router, nullptr);
  const GenerateRequest r = Chat("Name three primary colors.", 16);
  Result miss = Generate(router->target(), r);
  ASSERT_TRUE(miss.status.ok()) << miss.status.error_message();
  EXPECT_EQ(miss.finish.cache_source(), saola::v1::NONE);
  Result hit;
  // The write happens after the miss's last message is sent; give it a moment.
  for (int i = 0; i < 50; ++i) {
    hit = Generate(router->target(), r);
    if (hit.finish.cache_source() == saola::v1::EXACT) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(hit.status.ok());
  EXPECT_EQ(hit.finish.cache_source(), saola::v1::EXACT);
  ASSERT_EQ(hit.messages.size(), miss.messages.size());
  for (size_t i = 0; i < hit.messages.size(); ++i) {
    EXPECT_EQ(hit.messages[i].text(), miss.messages[i].text()) << i;
    EXPECT_EQ(std::vector<uint32_t>(hit.messages[i].token_ids().begin(),
                                    hit.messages[i].token_ids().end()),
              std::vector<uint32_t>(miss.messages[i].token_ids().begin(),
                                    miss.messages[i].token_ids().end()))
        << i;
  }
  EXPECT_EQ(hit.finish.reason(), miss.finish.reason());
  EXPECT_EQ(hit.finish.usage().completion_tokens(), miss.finish.usage().completion_tokens());
  EXPECT_EQ(hit.finish.usage().prompt_tokens(), miss.finish.usage().prompt_tokens());

  // Sampling at temperature > 0 without a seed is never cached; with a seed it is.
  GenerateRequest random = Chat("Name three primary colors.", 16);
  random.mutable_sampling()->set_temperature(0.8f);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(Generate(router->target(), random).finish.cache_source(), saola::v1::NONE);
  }
  GenerateRequest seeded = random;
  seeded.mutable_sampling()->set_seed(7);
  Result first = Generate(router->target(), seeded);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Result second = Generate(router->target(), seeded);
  EXPECT_EQ(first.finish.cache_source(), saola::v1::NONE);
  EXPECT_EQ(second.finish.cache_source(), saola::v1::EXACT);
  EXPECT_EQ(second.ids, first.ids);

  // A different parameter is a different answer; bypass skips the cache.
  GenerateRequest longer = r;
  longer.set_max_tokens(17);
  EXPECT_EQ(Generate(router->target(), longer).finish.cache_source(), saola::v1::NONE);
  GenerateRequest bypass = r;
  bypass.mutable_cache()->set_bypass(true);
  EXPECT_EQ(Generate(router->target(), bypass).finish.cache_source(), saola::v1::NONE);
}

TEST_F(RouterTest, BadRequestsGetInvalidArgumentAndWriteNothing) {
  auto router = StartRouter();
  ASSERT_NE(router, nullptr);
  struct Case {
    GenerateRequest request;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({GenerateRequest(), "prompt"});
  GenerateRequest top_p = Chat("hello");
  top_p.mutable_sampling()->set_top_p(2);
  cases.push_back({top_p, "sampling.top_p"});
  GenerateRequest threshold = Chat("hello");
  threshold.mutable_cache()->set_semantic_threshold(1.5f);
  cases.push_back({threshold, "cache.semantic_threshold"});
  GenerateRequest too_long = Chat("hello");
  too_long.set_max_tokens(1 << 30);
  cases.push_back({too_long, "max_tokens"});
  GenerateRequest model = Chat("hello");
  model.set_model("no-such-model");
  cases.push_back({model, "model"});
  for (const Case& c : cases) {
    Result result = Generate(router->target(), c.request);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_TRUE(absl::StartsWith(result.status.error_message(), c.field + ":"))
        << result.status.error_message();
    EXPECT_TRUE(result.messages.empty());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // the gauges refresh
  EXPECT_EQ(MetricValue(ScrapeMetrics(router->metrics_port()), "saola_router_exact_cache_entries"),
            0);
}

TEST_F(RouterTest, TenantsNeverShareCachedAnswersOrPrefixes) {
  const std::string keys = WriteTempFile("# test keys\nkey-a tenant-a\nkey-b tenant-b\n");
  auto router = StartRouter({"--api-keys", keys, "--semantic-cache"});
  ASSERT_NE(router, nullptr);
  GenerateRequest r = Semantic("What is the tallest mountain on Earth?");
  EXPECT_EQ(Generate(router->target(), r).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Generate(router->target(), r, "wrong-key").status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  Result a1 = Generate(router->target(), r, "key-a");
  ASSERT_TRUE(a1.status.ok()) << a1.status.error_message();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Generate(router->target(), r, "key-a").finish.cache_source(), saola::v1::EXACT);
  // Tenant b gets neither tenant a's semantic answer nor its exact one.
  Result b_paraphrase =
      Generate(router->target(), Semantic("Which mountain on Earth is the tallest?"), "key-b");
  ASSERT_TRUE(b_paraphrase.status.ok());
  EXPECT_EQ(b_paraphrase.finish.cache_source(), saola::v1::NONE);
  // (Without the semantic opt-in: b's own paraphrase entry may rightly answer it.)
  Result b_same = Generate(router->target(), Chat(r.chat().messages(0).content()), "key-b");
  ASSERT_TRUE(b_same.status.ok());
  EXPECT_EQ(b_same.finish.cache_source(), saola::v1::NONE);
  EXPECT_EQ(b_same.ids, a1.ids);  // same model, same greedy answer, computed again

  // Nor its KV prefix: a plain prompt (no chat template) cached for a is recomputed for b.
  GenerateRequest plain;
  plain.set_prompt("The following is a list of the ten tallest mountains on Earth, with their "
                   "heights in metres and the countries they stand in, starting with");
  plain.mutable_sampling()->set_temperature(0);
  plain.set_max_tokens(4);
  plain.mutable_cache()->set_bypass(true);
  ASSERT_TRUE(Generate(router->target(), plain, "key-a").status.ok());
  EXPECT_GT(Generate(router->target(), plain, "key-a").finish.usage().cached_prompt_tokens(), 0u);
  Result b_plain = Generate(router->target(), plain, "key-b");
  ASSERT_TRUE(b_plain.status.ok());
  EXPECT_EQ(b_plain.finish.usage().cached_prompt_tokens(), 0u);
  std::remove(keys.c_str());
}

TEST_F(RouterTest, SemanticCacheAnswersParaphrasesButNotNearMisses) {
  auto router = StartRouter({"--semantic-cache"});
  ASSERT_NE(router, nullptr);
  Result original = Generate(router->target(), Semantic("How do I reset my password?"));
  ASSERT_TRUE(original.status.ok()) << original.status.error_message();
  EXPECT_EQ(original.finish.cache_source(), saola::v1::NONE);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  Result paraphrase = Generate(router->target(), Semantic("How can I reset my password?"));
  ASSERT_TRUE(paraphrase.status.ok());
  EXPECT_EQ(paraphrase.finish.cache_source(), saola::v1::SEMANTIC);
  EXPECT_EQ(paraphrase.text, original.text);

  // Without the per-request opt-in the paraphrase is generated.
  GenerateRequest no_opt_in = Chat("Tell me how I can reset my password.");
  EXPECT_EQ(Generate(router->target(), no_opt_in).finish.cache_source(), saola::v1::NONE);

  Result france = Generate(router->target(), Semantic("What is the capital of France?"));
  ASSERT_TRUE(france.status.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Result germany = Generate(router->target(), Semantic("What is the capital of Germany?"));
  EXPECT_EQ(germany.finish.cache_source(), saola::v1::NONE);

  Result on = Generate(router->target(), Semantic("How do I turn on the kitchen lights?"));
  ASSERT_TRUE(on.status.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Result off = Generate(router->target(), Semantic("How do I turn off the kitchen lights?"));
  EXPECT_EQ(off.finish.cache_source(), saola::v1::NONE);
}

TEST_F(RouterTest, SemanticCacheSurvivesARestartThroughItsFile) {
  const std::string file = ::testing::TempDir() + "/saola-semantic-cache.bin";
  std::remove(file.c_str());
  const std::vector<std::string> flags = {"--semantic-cache", "--semantic-cache-file", file};
  {
    auto router = StartRouter(flags);
    ASSERT_NE(router, nullptr);
    ASSERT_TRUE(Generate(router->target(), Semantic("How do I boil an egg?")).status.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(router->Terminate(), 0);  // saves the cache
  }
  auto router = StartRouter(flags);
  ASSERT_NE(router, nullptr);
  Result after = Generate(router->target(), Semantic("How can I boil an egg?"));
  ASSERT_TRUE(after.status.ok());
  EXPECT_EQ(after.finish.cache_source(), saola::v1::SEMANTIC);
  std::remove(file.c_str());
}

TEST_F(RouterTest, RedisOutageServesMissesAndHitsResumeByThemselves) {
  absl::StatusOr<std::unique_ptr<testing::RedisServer>> redis = testing::RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  auto router = StartRouter({"--redis", (*redis)->url()});
  ASSERT_NE(router, nullptr);
  auto until_exact = [&](const GenerateRequest& r) {
    for (int i = 0; i < 100; ++i) {
      Result result = Generate(router->target(), r);
      if (result.status.ok() && result.finish.cache_source() == saola::v1::EXACT) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  const GenerateRequest first = Chat("Give me a word that rhymes with cat.");
  ASSERT_TRUE(Generate(router->target(), first).status.ok());
  EXPECT_TRUE(until_exact(first));

  ASSERT_TRUE((*redis)->Stop().ok());
  for (const GenerateRequest& r : {first, Chat("Give me a word that rhymes with dog.")}) {
    Result result = Generate(router->target(), r);
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.finish.cache_source(), saola::v1::NONE);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_GT(MetricValue(ScrapeMetrics(router->metrics_port()),
                        "saola_router_exact_cache_errors_total{backend=\"redis\"}"),
            0);

  ASSERT_TRUE((*redis)->Restart().ok());  // empty: hits come back once entries are written again
  EXPECT_TRUE(until_exact(Chat("Give me a word that rhymes with dog.")));
}

TEST_F(RouterTest, PrefixAwareRoutingKeepsConversationsOnTheirWorkerAndSpreadsThem) {
  auto router = StartRouter();
  ASSERT_NE(router, nullptr);
  const double before[2] = {WorkerMetric(*workers_[0], "saola_requests_total{reason=\"length\"}"),
                            WorkerMetric(*workers_[1], "saola_requests_total{reason=\"length\"}")};
  // Enough conversations at once that the load gap passes --balance-abs-threshold (4): they
  // all share the chat template's system prompt, so only load spreads their first turns.
  constexpr int kConversations = 8;
  constexpr int kTurns = 3;
  std::atomic<int> failures{0};
  std::atomic<int> follow_ups_on_cache{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kConversations; ++c) {
    threads.emplace_back([&, c] {
      GenerateRequest r;
      r.mutable_sampling()->set_temperature(0);
      r.set_max_tokens(8);
      r.set_ignore_eos(true);
      r.mutable_cache()->set_bypass(true);
      uint32_t previous_prompt = 0;
      for (int turn = 0; turn < kTurns; ++turn) {
        auto* m = r.mutable_chat()->add_messages();
        m->set_role("user");
        m->set_content(absl::StrCat("Conversation ", c, ", turn ", turn,
                                    ": tell me something about the number ", c * 10 + turn,
                                    " and why it might be interesting to a curious student."));
        Result result = Generate(router->target(), r);
        if (!result.status.ok()) {
          ++failures;
          return;
        }
        // A follow-up reuses at least the previous prompt's full blocks (less the one block the
        // worker recomputes): it went to the worker holding the conversation.
        if (turn > 0 && result.finish.usage().cached_prompt_tokens() + 32 >= previous_prompt) {
          ++follow_ups_on_cache;
        }
        previous_prompt = result.finish.usage().prompt_tokens();
        auto* reply = r.mutable_chat()->add_messages();
        reply->set_role("assistant");
        reply->set_content(result.text);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  // Nearly all: a follow-up may rightly move when its worker is momentarily far busier.
  EXPECT_GE(follow_ups_on_cache.load(), kConversations * (kTurns - 1) * 3 / 4);
  // Both workers served conversations.
  for (int i = 0; i < 2; ++i) {
    EXPECT_GE(WorkerMetric(*workers_[i], "saola_requests_total{reason=\"length\"}") - before[i],
              kTurns)
        << "worker " << i;
  }
}

TEST_F(RouterTest, DeadlineAndCancelReachTheWorker) {
  auto router = StartRouter();
  ASSERT_NE(router, nullptr);
  GenerateRequest r = Chat("Count from one to one thousand.", 2000);
  r.set_ignore_eos(true);
  r.mutable_cache()->set_bypass(true);
  Result result = Generate(router->target(), r, "", 700);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // Without propagation the worker would run ~2000 tokens for many seconds.
  bool idle = false;
  for (int i = 0; i < 40 && !idle; ++i) {
    idle = WorkerMetric(*workers_[0], "saola_requests_running") == 0 &&
           WorkerMetric(*workers_[1], "saola_requests_running") == 0;
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(idle);
}

TEST_F(RouterTest, ListModelsHealthAndUnreachableWorkers) {
  auto router = StartRouter();
  ASSERT_NE(router, nullptr);
  auto channel = grpc::CreateChannel(router->target(), grpc::InsecureChannelCredentials());
  grpc::ClientContext c1;
  saola::v1::ListModelsResponse models;
  ASSERT_TRUE(saola::v1::Llm::NewStub(channel)->ListModels(&c1, {}, &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).id(), workers_[0]->model_name());
  grpc::ClientContext c2;
  grpc::health::v1::HealthCheckResponse health;
  ASSERT_TRUE(grpc::health::v1::Health::NewStub(channel)->Check(&c2, {}, &health).ok());
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // A router whose only worker does not exist: NOT_SERVING, and requests fail UNAVAILABLE.
  RouterProcess lonely({"--workers", "127.0.0.1:1"});
  ASSERT_TRUE(lonely.ok());
  auto lonely_channel = grpc::CreateChannel(lonely.target(), grpc::InsecureChannelCredentials());
  grpc::ClientContext c3;
  ASSERT_TRUE(grpc::health::v1::Health::NewStub(lonely_channel)->Check(&c3, {}, &health).ok());
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Generate(lonely.target(), Chat("hi"), "", 5000).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(lonely.Terminate(), 0);

  // A worker found through DNS (a Kubernetes headless Service in production): localhost may
  // resolve to ::1 too, where nothing listens; that address is simply never routable.
  RouterProcess by_dns({"--workers", absl::StrCat("dns:///localhost:", workers_[0]->port())});
  ASSERT_TRUE(by_dns.ok());
  ASSERT_TRUE(WaitForWorkersUp(by_dns, 1));
  Result via_dns = Generate(by_dns.target(), Chat("hi", 4));
  EXPECT_TRUE(via_dns.status.ok()) << via_dns.status.error_message();

  // Bad flags: the router refuses to start.
  RouterProcess bad({"--workers", Workers(), "--policy", "random"});
  EXPECT_FALSE(bad.ok());
}

// Its own workers: one of them is killed.
TEST(RouterFailoverTest, RequestQueuedOnAKilledWorkerCompletesElsewhere) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  WorkerProcess a({"--kv-cache-mb", "64", "--threads", "1", "--max-running", "1"});
  WorkerProcess b({"--kv-cache-mb", "64", "--threads", "1", "--max-running", "1"});
  ASSERT_TRUE(a.ok() && b.ok());
  RouterProcess router({"--workers", absl::StrCat(a.target(), ",", b.target())});
  ASSERT_TRUE(router.ok());
  ASSERT_TRUE(WaitForWorkersUp(router, 2));

  // A long request occupies one worker's only slot...
  const std::string shared = "Here is a long story about a lighthouse keeper who lived alone on "
                             "a rocky island and kept a careful diary of every ship that passed.";
  GenerateRequest long_request = Chat(shared + " Continue the story.", 1500);
  long_request.set_ignore_eos(true);
  long_request.mutable_cache()->set_bypass(true);
  Result long_result;
  std::thread long_thread([&] { long_result = Generate(router.target(), long_request); });
  WorkerProcess* busy = nullptr;
  for (int i = 0; i < 100 && busy == nullptr; ++i) {
    if (WorkerMetric(a, "saola_requests_running") == 1) busy = &a;
    if (WorkerMetric(b, "saola_requests_running") == 1) busy = &b;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(busy, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its prefix blocks are reported

  // ...a request sharing its prefix is routed to the same worker (prefix hit, small load gap)
  // and waits in its queue, with no token sent yet.
  GenerateRequest follow_up = Chat(shared + " Summarize the story.", 8);
  follow_up.mutable_cache()->set_bypass(true);
  Result follow_result;
  std::thread follow_thread([&] { follow_result = Generate(router.target(), follow_up); });
  bool queued = false;
  for (int i = 0; i < 100 && !queued; ++i) {
    queued = WorkerMetric(*busy, "saola_requests_waiting") == 1;
    if (!queued) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(queued) << "the follow-up did not queue behind the long request";

  kill(busy->pid(), SIGKILL);
  follow_thread.join();
  long_thread.join();
  EXPECT_TRUE(follow_result.status.ok()) << follow_result.status.error_message();
  EXPECT_FALSE(follow_result.ids.empty());
  EXPECT_EQ(follow_result.finish.reason(), saola::v1::LENGTH);
  // The long request had streamed tokens: it is not retried, it fails.
  EXPECT_EQ(long_result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_GE(MetricValue(ScrapeMetrics(router.metrics_port()), "saola_router_retries_total"), 1);
}

}  // namespace
}  // namespace saola::test
