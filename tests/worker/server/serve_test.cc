// A real `saola-worker serve` process on loopback, driven through its gRPC services.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/block_hash.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection_client.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "saola/v1/llm.grpc.pb.h"
#include "saola/v1/worker.grpc.pb.h"
#include "tests/common/reference_model.h"
#include "tests/worker/server/worker_process.h"

namespace saola::test {
namespace {

using saola::v1::GenerateRequest;
using saola::v1::GenerateResponse;

struct Completion {
  grpc::Status status;
  std::string text;
  std::vector<uint32_t> ids;
  saola::v1::Finish finish;
  int messages = 0;
};

std::shared_ptr<grpc::Channel> Connect(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

template <typename Request, typename Call>
Completion Collect(Call call, const Request& request, int timeout_ms) {
  grpc::ClientContext context;
  if (timeout_ms > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  }
  Completion c;
  auto reader = call(&context, request);
  GenerateResponse msg;
  while (reader->Read(&msg)) {
    ++c.messages;
    c.text += msg.text();
    c.ids.insert(c.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    if (msg.has_finish()) c.finish = msg.finish();
  }
  c.status = reader->Finish();
  return c;
}

Completion Generate(saola::v1::Llm::Stub& stub, const GenerateRequest& request,
                    int timeout_ms = 300000) {
  return Collect([&](grpc::ClientContext* ctx, const GenerateRequest& r) {
    return stub.Generate(ctx, r);
  }, request, timeout_ms);
}

Completion Generate(saola::v1::Worker::Stub& stub, const saola::v1::WorkerGenerateRequest& request,
                    int timeout_ms = 300000) {
  return Collect([&](grpc::ClientContext* ctx, const saola::v1::WorkerGenerateRequest& r) {
    return stub.Generate(ctx, r);
  }, request, timeout_ms);
}

GenerateRequest Greedy(const std::string& prompt, uint32_t max_tokens) {
  GenerateRequest r;
  r.set_prompt(prompt);
  r.mutable_sampling()->set_temperature(0);
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  return r;
}

saola::v1::WorkerStats Stats(saola::v1::Worker::Stub& stub) {
  grpc::ClientContext context;
  saola::v1::WorkerStats stats;
  EXPECT_TRUE(stub.Stats(&context, {}, &stats).ok());
  return stats;
}

// Waits until no request runs and no KV block is held (the engine frees them asynchronously).
bool WaitForIdleKv(saola::v1::Worker::Stub& stub, int timeout_ms = 10000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    const saola::v1::WorkerStats s = Stats(stub);
    if (s.running() == 0 && s.waiting() == 0 && s.kv_blocks_in_use() == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Distinct prompts of varied lengths; a third share a long common prefix (prefix cache).
std::vector<std::string> Prompts(int n) {
  const std::vector<std::string> topics = {
      "the history of the bicycle", "how bread rises",       "why the sky is blue",
      "the rules of chess",         "how a compiler works",  "the life of honeybees",
      "volcanoes and plate tectonics", "the first moon landing", "how vaccines train immunity",
      "the water cycle"};
  const std::string shared =
      "You are a careful assistant. Answer in plain English, in short sentences, and never "
      "invent facts. If you are unsure, say so. Keep every answer under one hundred words. ";
  std::vector<std::string> prompts;
  for (int i = 0; i < n; ++i) {
    std::string p = (i % 3 == 0 ? shared : std::string()) + "Question " + std::to_string(i) +
                    ": please explain " + topics[i % topics.size()];
    for (int k = 0; k < i % 5; ++k) p += ", step by step and with one example";
    prompts.push_back(p + ".");
  }
  return prompts;
}

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveReferenceModel()) return;
    worker_ = new WorkerProcess({"--max-batch-tokens", "128"});
  }
  static void TearDownTestSuite() {
    delete worker_;
    worker_ = nullptr;
  }
  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    ASSERT_TRUE(worker_->ok()) << "saola-worker serve did not start";
    channel_ = Connect(worker_->target());
    llm_ = saola::v1::Llm::NewStub(channel_);
    worker_stub_ = saola::v1::Worker::NewStub(channel_);
  }

  static WorkerProcess* worker_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<saola::v1::Llm::Stub> llm_;
  std::unique_ptr<saola::v1::Worker::Stub> worker_stub_;
};

WorkerProcess* ServeTest::worker_ = nullptr;

TEST_F(ServeTest, ThirtyTwoConcurrentStreamsEachEqualTheRequestRunAlone) {
  const std::vector<std::string> prompts = Prompts(32);
  constexpr uint32_t kTokens = 12;
  std::vector<Completion> together(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] { together[i] = Generate(*llm_, Greedy(prompts[i], kTokens)); });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(WaitForIdleKv(*worker_stub_));

  for (size_t i = 0; i < prompts.size(); ++i) {
    const Completion alone = Generate(*llm_, Greedy(prompts[i], kTokens));
    ASSERT_TRUE(together[i].status.ok()) << i << ": " << together[i].status.error_message();
    ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
    EXPECT_EQ(together[i].ids.size(), kTokens) << i;
    EXPECT_EQ(together[i].ids, alone.ids) << "prompt " << i;
    EXPECT_EQ(together[i].text, alone.text) << "prompt " << i;
    EXPECT_EQ(together[i].finish.reason(), saola::v1::LENGTH);
    EXPECT_EQ(together[i].finish.usage().completion_tokens(), kTokens);
    // The second run finds its prompt in the prefix cache, when it has a full block to spare
    // (the last two prompt tokens are always recomputed).
    if (alone.finish.usage().prompt_tokens() >= 18) {
      EXPECT_GT(alone.finish.usage().cached_prompt_tokens(), 0u) << i;
    }
  }
  EXPECT_TRUE(WaitForIdleKv(*worker_stub_));
}

TEST_F(ServeTest, ChatRequestsUseTheTemplateAndStopAtEndOfTurn) {
  GenerateRequest r;
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("What is the capital of France? Answer in one word.");
  r.mutable_sampling()->set_temperature(0);
  r.set_max_tokens(64);
  const Completion c = Generate(*llm_, r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_NE(c.text.find("Paris"), std::string::npos) << c.text;
  EXPECT_EQ(c.finish.reason(), saola::v1::STOP);
  EXPECT_LT(c.finish.usage().completion_tokens(), 64u);
  EXPECT_GT(c.finish.usage().prompt_tokens(), 10u);
}

TEST_F(ServeTest, StopStringsEndGenerationAndAreNotReturned) {
  GenerateRequest full = Greedy("Count from one to twenty: one, two, three,", 40);
  const Completion reference = Generate(*llm_, full);
  ASSERT_TRUE(reference.status.ok());
  // Stop at the first occurrence of a piece of the reference text past its start.
  const std::string stop = reference.text.substr(reference.text.size() / 2, 4);
  GenerateRequest stopped = full;
  stopped.add_stop(stop);
  const Completion c = Generate(*llm_, stopped);
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(c.finish.reason(), saola::v1::STOP);
  EXPECT_EQ(c.finish.stop(), stop);
  EXPECT_EQ(c.text, reference.text.substr(0, reference.text.find(stop)));
  EXPECT_EQ(c.text.find(stop), std::string::npos);
}

TEST_F(ServeTest, SameSeedGivesTheSameTextWhateverRunsBeside) {
  GenerateRequest r = Greedy("Write a short poem about the sea.", 24);
  r.mutable_sampling()->set_temperature(0.9f);
  r.mutable_sampling()->set_top_p(0.95f);
  r.mutable_sampling()->set_seed(1234);
  const Completion alone = Generate(*llm_, r);
  // The same request again, now with other traffic in the batch.
  std::vector<std::thread> noise;
  std::atomic<bool> stop{false};
  for (int i = 0; i < 4; ++i) {
    noise.emplace_back([&, i] {
      while (!stop) Generate(*llm_, Greedy("Noise request " + std::to_string(i), 8));
    });
  }
  const Completion busy = Generate(*llm_, r);
  stop = true;
  for (std::thread& t : noise) t.join();
  ASSERT_TRUE(alone.status.ok() && busy.status.ok());
  EXPECT_EQ(alone.ids, busy.ids);
  r.mutable_sampling()->set_seed(99);
  EXPECT_NE(Generate(*llm_, r).ids, alone.ids);
}

TEST_F(ServeTest, CancelledStreamReturnsAllItsBlocksAtOnce) {
  grpc::ClientContext context;
  GenerateRequest r = Greedy("Tell me a very long story about a lighthouse keeper.", 4000);
  auto reader = llm_->Generate(&context, r);
  GenerateResponse msg;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(reader->Read(&msg));
  EXPECT_GT(Stats(*worker_stub_).kv_blocks_in_use(), 0u);
  context.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForIdleKv(*worker_stub_, 2000));
  const std::string metrics = ScrapeMetrics(worker_->metrics_port());
  EXPECT_GE(MetricValue(metrics, "saola_requests_total{reason=\"cancelled\"}"), 1);
}

TEST_F(ServeTest, DeadlineEndsTheRequestAndFreesItsBlocks) {
  const Completion c =
      Generate(*llm_, Greedy("Describe every planet of the solar system.", 4000), 400);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitForIdleKv(*worker_stub_, 2000));
}

TEST_F(ServeTest, BadRequestsGetInvalidArgumentNamingTheField) {
  const saola::v1::WorkerStats before = Stats(*worker_stub_);
  struct Case {
    std::string field;
    GenerateRequest request;
  };
  std::vector<Case> cases;
  cases.push_back({"prompt", GenerateRequest()});
  GenerateRequest r = Greedy("hello", 8);
  r.set_max_tokens(1 << 30);
  cases.push_back({"max_tokens", r});
  r = Greedy("hello", 8);
  r.mutable_sampling()->set_temperature(-1);
  cases.push_back({"sampling.temperature", r});
  r = Greedy("hello", 8);
  r.mutable_sampling()->set_top_p(0);
  cases.push_back({"sampling.top_p", r});
  r = Greedy("hello", 8);
  r.mutable_sampling()->set_top_p(1.5f);
  cases.push_back({"sampling.top_p", r});
  r = Greedy("hello", 8);
  r.set_model("no-such-model");
  cases.push_back({"model", r});
  r = Greedy("hello", 8);
  r.add_stop("");
  cases.push_back({"stop", r});
  r = Greedy("hello", 8);
  r.mutable_chat()->add_messages()->set_content("both");
  cases.push_back({"prompt", r});
  for (const Case& c : cases) {
    const Completion result = Generate(*llm_, c.request);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(result.status.error_message().rfind(c.field + ":", 0), 0u)
        << c.field << " vs " << result.status.error_message();
    EXPECT_EQ(result.messages, 0);
  }
  saola::v1::WorkerGenerateRequest w;
  w.add_prompt_token_ids(1u << 30);
  const Completion bad_id = Generate(*worker_stub_, w);
  EXPECT_EQ(bad_id.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad_id.status.error_message().rfind("prompt_token_ids:", 0), 0u);
  const saola::v1::WorkerStats after = Stats(*worker_stub_);
  EXPECT_EQ(after.kv_blocks_in_use(), 0u);
  EXPECT_EQ(after.prefix_queried_tokens(), before.prefix_queried_tokens());
}

TEST_F(ServeTest, ListModelsGetInfoHealthAndReflection) {
  grpc::ClientContext c1;
  saola::v1::ListModelsResponse models;
  ASSERT_TRUE(llm_->ListModels(&c1, {}, &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).id(), worker_->model_name());
  EXPECT_EQ(models.models(0).architecture(), "llama");
  EXPECT_EQ(models.models(0).quantization(), "Q4_1");
  EXPECT_GT(models.models(0).context_length(), 1000u);

  grpc::ClientContext c2;
  saola::v1::WorkerInfo info;
  ASSERT_TRUE(worker_stub_->GetInfo(&c2, {}, &info).ok());
  EXPECT_EQ(info.kv_block_size(), 16u);
  EXPECT_EQ(info.tokenizer().tokens_size(), static_cast<int>(info.model().vocab_size()));
  EXPECT_GT(info.tokenizer().merges_size(), 1000);
  EXPECT_NE(info.tokenizer().chat_template().find("im_start"), std::string::npos);

  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext c3;
  grpc::health::v1::HealthCheckResponse h;
  ASSERT_TRUE(health->Check(&c3, {}, &h).ok());
  EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
  grpc::ClientContext c4;
  auto stream = reflection->ServerReflectionInfo(&c4);
  grpc::reflection::v1alpha::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::vector<std::string> services;
  for (const auto& s : resp.list_services_response().service()) services.push_back(s.name());
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_NE(std::find(services.begin(), services.end(), "saola.v1.Llm"), services.end());
  EXPECT_NE(std::find(services.begin(), services.end(), "saola.v1.Worker"), services.end());
  EXPECT_NE(std::find(services.begin(), services.end(), "grpc.health.v1.Health"), services.end());
}

TEST_F(ServeTest, KvEventsUseTheRouterHashesAndTenantsNeverSharePrefixes) {
  grpc::ClientContext events_context;
  auto events = worker_stub_->KvEvents(&events_context, {});
  saola::v1::KvEventBatch batch;
  ASSERT_TRUE(events->Read(&batch));
  EXPECT_TRUE(batch.reset());

  saola::v1::WorkerGenerateRequest w;
  w.set_tenant("tenant-a");
  for (uint32_t i = 0; i < 40; ++i) w.add_prompt_token_ids(1000 + i);
  w.mutable_sampling()->set_temperature(0);
  w.set_max_tokens(2);
  ASSERT_TRUE(Generate(*worker_stub_, w).status.ok());

  // The first stored chain of this prompt hangs under tenant-a's root with the router's hash.
  std::vector<int32_t> first_block(16);
  for (int i = 0; i < 16; ++i) first_block[i] = 1000 + i;
  const uint64_t root = TenantRootHash("tenant-a");
  const uint64_t expected = ChainBlockHash(root, first_block);
  bool seen = false;
  while (!seen && events->Read(&batch)) {
    for (const auto& stored : batch.stored()) {
      if (stored.parent_hash() == root && stored.block_hashes_size() > 0) {
        EXPECT_EQ(stored.block_hashes(0), expected);
        seen = true;
      }
    }
  }
  EXPECT_TRUE(seen);
  events_context.TryCancel();

  // The same tokens: a hit for the same tenant, none for another.
  const Completion same = Generate(*worker_stub_, w);
  EXPECT_EQ(same.finish.usage().cached_prompt_tokens(), 32u);
  w.set_tenant("tenant-b");
  const Completion other = Generate(*worker_stub_, w);
  EXPECT_EQ(other.finish.usage().cached_prompt_tokens(), 0u);
}

// A worker with room for one running and one waiting request refuses the third at once.
TEST(ServeLimitsTest, FullQueueGetsResourceExhaustedAtOnce) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  WorkerProcess worker({"--max-running", "1", "--max-waiting", "1"});
  ASSERT_TRUE(worker.ok());
  auto channel = Connect(worker.target());
  auto llm = saola::v1::Llm::NewStub(channel);
  grpc::ClientContext running_context;
  auto running = llm->Generate(&running_context, Greedy("A long story, please.", 4000));
  GenerateResponse msg;
  ASSERT_TRUE(running->Read(&msg));  // admitted and running
  grpc::ClientContext waiting_context;
  auto waiting = llm->Generate(&waiting_context, Greedy("Second.", 4));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let it reach the queue
  const auto start = std::chrono::steady_clock::now();
  const Completion refused = Generate(*llm, Greedy("Third.", 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  running_context.TryCancel();
  while (running->Read(&msg)) {
  }
  running->Finish();
  while (waiting->Read(&msg)) {
  }
  EXPECT_TRUE(waiting->Finish().ok());
}

// SIGTERM: NOT_SERVING and UNAVAILABLE for new requests, in-flight ones finish, exit 0.
TEST(ServeDrainTest, SigtermDrainsInFlightRequestsThenExits) {
  SAOLA_REQUIRE_REFERENCE_MODEL();
  WorkerProcess worker({"--drain-seconds", "60"});
  ASSERT_TRUE(worker.ok());
  auto channel = Connect(worker.target());
  auto llm = saola::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  auto stream = llm->Generate(&context, Greedy("Tell me about rivers.", 48));
  GenerateResponse msg;
  ASSERT_TRUE(stream->Read(&msg));
  std::thread terminate([&] { EXPECT_EQ(worker.Terminate(), 0); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext hc;
  grpc::health::v1::HealthCheckResponse h;
  if (health->Check(&hc, {}, &h).ok()) {
    EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  const Completion refused = Generate(*llm, Greedy("New request.", 4), 5000);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  uint32_t tokens = msg.token_ids_size();
  saola::v1::Finish finish;
  while (stream->Read(&msg)) {
    tokens += msg.token_ids_size();
    if (msg.has_finish()) finish = msg.finish();
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(tokens, 48u);
  EXPECT_EQ(finish.reason(), saola::v1::LENGTH);
  terminate.join();
}

}  // namespace
}  // namespace saola::test
