// The serving engine on the reference model (2 threads, greedy, short outputs): every request
// finishes under a small KV pool with preemption, each output equals the request run alone,
// chunked prefill keeps decodes flowing, preemption does not change greedy output, cancellation,
// deadlines and Submit's errors, and the model-level seam for speculative rollback.
#include "worker/engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/common/reference_model.h"
#include "worker/engine/request.h"
#include "worker/model/gguf.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"
#include "worker/model/tokenizer.h"

namespace saola::engine {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kThreads = 2;
constexpr int32_t kModelBatchTokens = 256;

// What one request streamed.
struct Result {
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<Clock::time_point> token_times;
  RequestOutput last;
  int num_pushes = 0;
  bool done = false;
};

class TestSink : public RequestSink {
 public:
  /// Called on the engine thread after each push, with the tokens so far.
  std::function<void(const Result&)> on_push;

  void Push(RequestOutput out) override {
    std::lock_guard lock(mu_);
    EXPECT_FALSE(result_.done) << "output after the last one";
    ++result_.num_pushes;
    const Clock::time_point now = Clock::now();
    for (int32_t id : out.token_ids) {
      result_.tokens.push_back(id);
      result_.token_times.push_back(now);
    }
    result_.text += out.text;
    if (out.finished || !out.error.ok()) {
      result_.done = true;
      result_.last = std::move(out);
      cv_.notify_all();
    }
    if (on_push) on_push(result_);
  }

  /// The result once finished (or what there is after `timeout`, done = false).
  Result Wait(Clock::duration timeout = seconds(60)) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return result_.done; });
    return result_;
  }

  int32_t num_tokens() {
    std::lock_guard lock(mu_);
    return static_cast<int32_t>(result_.tokens.size());
  }

  /// Waits until at least `n` tokens arrived (or the request ended).
  bool WaitTokens(int32_t n, Clock::duration timeout = seconds(30)) {
    const Clock::time_point deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(mu_);
        if (static_cast<int32_t>(result_.tokens.size()) >= n) return true;
        if (result_.done) return false;
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
    return false;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Result result_;
};

// Counts preemptions and remembers each finished request's own count.
class RecordingObserver : public EngineObserver {
 public:
  void OnPreempted() override { ++preempted; }
  void OnFinished(const Sequence& seq, FinishReason, const absl::Status&, double) override {
    std::lock_guard lock(mu);
    preemptions_by_id[seq.id()] = seq.num_preemptions;
  }
  std::atomic<int> preempted{0};
  std::mutex mu;
  std::map<std::string, int> preemptions_by_id;
};

RequestSpec Greedy(std::string id, std::vector<int32_t> prompt, int32_t max_tokens) {
  RequestSpec spec;
  spec.id = std::move(id);
  spec.prompt = std::move(prompt);
  spec.max_tokens = max_tokens;
  spec.ignore_eos = true;
  spec.sampling.temperature = 0;
  return spec;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::HaveReferenceModel()) return;
    auto file = model::GgufFile::Open(test::ReferenceModelPath());
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file).release();
    auto spec = model::LoadTokenizerSpec(*file_);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto tokenizer = model::Tokenizer::Create(std::move(*spec));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer).release();
    backend_ = new kernels::cpu::CpuBackend(kThreads);
    model::LlamaModel::Options options;
    options.max_batch_tokens = kModelBatchTokens;
    auto model = model::LlamaModel::Load(*file_, *backend_, options);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model).release();
  }

  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    ASSERT_NE(model_, nullptr);
  }

  static std::unique_ptr<Engine> MakeEngine(const Engine::Options& options,
                                            EngineObserver* observer = nullptr) {
    auto engine = Engine::Create(*model_, *backend_, *tokenizer_, options, observer);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  /// Greedy tokens of `spec` run alone on a fresh engine with a big pool and a different
  /// max_batch_tokens (so the prompt is cut into other chunks).
  static std::vector<int32_t> RunAlone(RequestSpec spec) {
    std::unique_ptr<Engine> engine =
        MakeEngine({.max_batch_tokens = 128, .num_kv_blocks = 64, .prefix_cache = false});
    if (engine == nullptr) return {};
    auto sink = std::make_shared<TestSink>();
    const absl::Status status = engine->Submit(std::move(spec), sink);
    EXPECT_TRUE(status.ok()) << status;
    Result r = sink->Wait();
    EXPECT_TRUE(r.done);
    EXPECT_TRUE(r.last.error.ok()) << r.last.error;
    return r.tokens;
  }

  /// Waits until the engine's stats show nothing running, waiting or held (the snapshot is
  /// taken at the end of each engine turn, just after the last request was released).
  static EngineStats WaitDrained(Engine& engine) {
    EXPECT_TRUE(engine.WaitIdle(Clock::now() + seconds(60)));
    const Clock::time_point deadline = Clock::now() + seconds(5);
    EngineStats stats = engine.Stats();
    while (Clock::now() < deadline &&
           (stats.running != 0 || stats.waiting != 0 || stats.kv_blocks_in_use != 0)) {
      std::this_thread::sleep_for(milliseconds(1));
      stats = engine.Stats();
    }
    return stats;
  }

  static std::vector<int32_t> Text(const std::string& text) {
    return tokenizer_->Encode(text, /*add_special=*/false, /*parse_special=*/false);
  }

  static std::vector<int32_t> RandomIds(std::mt19937& rng, int32_t n) {
    std::uniform_int_distribution<int32_t> id(0, tokenizer_->vocab_size() - 1);
    std::vector<int32_t> out(n);
    for (int32_t& t : out) t = id(rng);
    return out;
  }

  /// About `n` tokens of English-like text (exactly n, cut or padded with random words).
  static std::vector<int32_t> RandomText(std::mt19937& rng, int32_t n) {
    static const char* const kWords[] = {
        "the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "rained", "over", "hills",
        "while", "we", "counted", "stars", "in", "quiet", "rooms", "of", "old", "houses", "by",
        "rivers", "that", "ran", "north", "to", "sea", "with", "boats", "full", "fish"};
    std::uniform_int_distribution<size_t> word(0, std::size(kWords) - 1);
    std::string text;
    std::vector<int32_t> ids;
    while (static_cast<int32_t>(ids.size()) < n) {
      for (int i = 0; i < 16; ++i) {
        if (!text.empty()) text += ' ';
        text += kWords[word(rng)];
      }
      ids = Text(text);
    }
    ids.resize(n);
    return ids;
  }

  static model::GgufFile* file_;
  static model::Tokenizer* tokenizer_;
  static kernels::cpu::CpuBackend* backend_;
  static model::LlamaModel* model_;
};

model::GgufFile* EngineTest::file_ = nullptr;
model::Tokenizer* EngineTest::tokenizer_ = nullptr;
kernels::cpu::CpuBackend* EngineTest::backend_ = nullptr;
model::LlamaModel* EngineTest::model_ = nullptr;

// 40 random requests from four threads at random moments into a 32-block pool: every one
// finishes with the token count its limits call for, the pool preempts, and nothing is left held.
// Prompts are 1..300 tokens, most of them short to keep the test quick on two cores.
TEST_F(EngineTest, EveryRequestFinishesWithASmallPool) {
  RecordingObserver observer;
  std::unique_ptr<Engine> engine = MakeEngine(
      {.max_batch_tokens = 64, .max_running = 64, .num_kv_blocks = 32}, &observer);
  ASSERT_NE(engine, nullptr);
  const int32_t period = Text(".")[0];
  const int32_t comma = Text(",")[0];

  std::mt19937 rng(2024);
  const std::vector<int32_t> shared_prefix = RandomText(rng, 40);
  std::vector<RequestSpec> specs;
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) {
    auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    const int32_t len = uniform(0, 4) == 0 ? uniform(100, 300) : uniform(1, 40);
    std::vector<int32_t> prompt;
    switch (uniform(0, 2)) {
      case 0: prompt = RandomIds(rng, len); break;
      case 1: prompt = RandomText(rng, len); break;
      default:
        prompt = shared_prefix;
        const std::vector<int32_t> tail = RandomText(rng, len / 8 + 1);
        prompt.insert(prompt.end(), tail.begin(), tail.end());
    }
    RequestSpec spec = Greedy(absl::StrCat("r", i), std::move(prompt), uniform(1, 20));
    if (uniform(0, 3) == 0) spec.stop = {"e", " the"};
    if (uniform(0, 3) == 0) spec.stop_token_ids = {period, comma};
    specs.push_back(std::move(spec));
  }

  std::vector<std::shared_ptr<TestSink>> sinks(kRequests);
  for (auto& s : sinks) s = std::make_shared<TestSink>();
  std::vector<std::thread> submitters;
  constexpr int kSubmitters = 4;
  for (int t = 0; t < kSubmitters; ++t) {
    submitters.emplace_back([&, t] {
      std::mt19937 pause_rng(t);
      for (int i = t; i < kRequests; i += kSubmitters) {
        std::this_thread::sleep_for(
            milliseconds(std::uniform_int_distribution<int>(0, 60)(pause_rng)));
        const absl::Status status = engine->Submit(specs[i], sinks[i]);
        EXPECT_TRUE(status.ok()) << specs[i].id << ": " << status;
      }
    });
  }
  for (std::thread& t : submitters) t.join();

  for (int i = 0; i < kRequests; ++i) {
    const RequestSpec& spec = specs[i];
    SCOPED_TRACE(spec.id);
    const Result r = sinks[i]->Wait();
    ASSERT_TRUE(r.done);
    ASSERT_TRUE(r.last.error.ok()) << r.last.error;
    EXPECT_TRUE(r.last.finished);
    EXPECT_EQ(r.last.usage.prompt_tokens, static_cast<int32_t>(spec.prompt.size()));
    EXPECT_EQ(r.last.usage.completion_tokens, static_cast<int32_t>(r.tokens.size()));
    EXPECT_GE(r.tokens.size(), 1u);
    EXPECT_LE(static_cast<int32_t>(r.tokens.size()), spec.max_tokens);
    if (r.last.reason == FinishReason::kLength) {
      EXPECT_EQ(static_cast<int32_t>(r.tokens.size()), spec.max_tokens);
    } else {
      ASSERT_EQ(r.last.reason, FinishReason::kStop);
      if (!r.last.matched_stop.empty()) {
        EXPECT_NE(std::find(spec.stop.begin(), spec.stop.end(), r.last.matched_stop),
                  spec.stop.end());
      } else {
        EXPECT_NE(std::find(spec.stop_token_ids.begin(), spec.stop_token_ids.end(),
                            r.tokens.back()),
                  spec.stop_token_ids.end());
      }
    }
    if (spec.stop.empty() && spec.stop_token_ids.empty()) {
      EXPECT_EQ(r.last.reason, FinishReason::kLength);
    }
  }
  const EngineStats stats = WaitDrained(*engine);
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.waiting, 0);
  EXPECT_EQ(stats.kv_blocks_in_use, 0);
  EXPECT_EQ(stats.kv_blocks_free, stats.kv_blocks);
  EXPECT_GT(stats.preemptions, 0u);
  EXPECT_EQ(stats.preemptions, static_cast<uint64_t>(observer.preempted.load()));
  EXPECT_GT(stats.prefix_hit_tokens, 0u);
  std::printf("%llu steps, %llu preemptions, %llu of %llu prompt tokens from the prefix cache\n",
              static_cast<unsigned long long>(stats.steps),
              static_cast<unsigned long long>(stats.preemptions),
              static_cast<unsigned long long>(stats.prefix_hit_tokens),
              static_cast<unsigned long long>(stats.prefix_queried_tokens));
}

// A dozen concurrent requests of mixed lengths (chunked prefill, shared prefixes that hit the
// cache, a one-token prompt) give exactly the tokens each gives alone.
TEST_F(EngineTest, EachOutputEqualsTheRequestRunAlone) {
  std::mt19937 rng(7);
  const std::vector<int32_t> prefix = RandomText(rng, 50);
  auto with_prefix = [&](int32_t tail) {
    std::vector<int32_t> p = prefix;
    const std::vector<int32_t> t = RandomText(rng, tail);
    p.insert(p.end(), t.begin(), t.end());
    return p;
  };
  std::vector<RequestSpec> specs;
  specs.push_back(Greedy("prefix-leader", with_prefix(12), 4));
  specs.push_back(Greedy("long-130", RandomText(rng, 130), 5));
  specs.push_back(Greedy("long-ids-170", RandomIds(rng, 170), 3));
  specs.push_back(Greedy("prefix-a", with_prefix(3), 8));
  specs.push_back(Greedy("one-token", {tokenizer_->bos_id() >= 0 ? tokenizer_->bos_id() : 1}, 6));
  specs.push_back(Greedy("short-5", RandomText(rng, 5), 10));
  specs.push_back(Greedy("prefix-b", with_prefix(30), 5));
  specs.push_back(Greedy("long-80", RandomText(rng, 80), 5));
  specs.push_back(Greedy("two-tokens", RandomIds(rng, 2), 8));
  specs.push_back(Greedy("prefix-whole", prefix, 5));  // ends on the cached blocks
  specs.push_back(Greedy("short-20", RandomIds(rng, 20), 10));
  specs.push_back(Greedy("prefix-c", with_prefix(40), 4));

  std::unique_ptr<Engine> engine =
      MakeEngine({.max_batch_tokens = 64, .max_running = 64, .num_kv_blocks = 128});
  ASSERT_NE(engine, nullptr);
  std::vector<std::shared_ptr<TestSink>> sinks;
  for (size_t i = 0; i < specs.size(); ++i) sinks.push_back(std::make_shared<TestSink>());
  // The leader first, so that its prefix is cached when the others arrive.
  ASSERT_TRUE(engine->Submit(specs[0], sinks[0]).ok());
  ASSERT_TRUE(sinks[0]->WaitTokens(1));
  for (size_t i = 1; i < specs.size(); ++i) ASSERT_TRUE(engine->Submit(specs[i], sinks[i]).ok());
  std::vector<std::vector<int32_t>> together;
  for (auto& sink : sinks) {
    Result r = sink->Wait();
    ASSERT_TRUE(r.done);
    ASSERT_TRUE(r.last.error.ok()) << r.last.error;
    together.push_back(r.tokens);
  }
  const EngineStats stats = WaitDrained(*engine);
  EXPECT_EQ(stats.kv_blocks_in_use, 0);
  // prefix-a, -b, -c and -whole each reuse the leader's 3 full blocks of 16 (whole has 50
  // tokens: 2 still run).
  EXPECT_GE(stats.prefix_hit_tokens, 4u * 48u);
  engine.reset();

  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].id);
    EXPECT_EQ(together[i], RunAlone(specs[i]));
    EXPECT_EQ(static_cast<int32_t>(together[i].size()), specs[i].max_tokens);
  }
}

// A 600-token prompt arriving while another request decodes is prefilled in chunks that leave
// room for that decode every step. Steps are numbered through the observer: OnStep reports the
// count at the end of every engine turn, so outputs pushed during a step belong to step count + 1.
class StepObserver : public EngineObserver {
 public:
  void OnStep(const EngineStats& stats) override { steps = stats.steps; }
  void OnAdmitted(const Sequence& seq, double) override {
    if (seq.id() == "b") b_admitted_step = steps + 1;
  }
  uint64_t current_step() const { return steps + 1; }
  std::atomic<uint64_t> steps{0};
  std::atomic<uint64_t> b_admitted_step{0};
};

TEST_F(EngineTest, ChunkedPrefillKeepsDecodesFlowing) {
  StepObserver observer;
  std::unique_ptr<Engine> engine =
      MakeEngine({.max_batch_tokens = 64, .max_running = 8, .num_kv_blocks = 64}, &observer);
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(3);
  auto a_sink = std::make_shared<TestSink>();
  std::mutex mu;
  std::vector<uint64_t> a_steps;  // the step of each of a's tokens
  a_sink->on_push = [&](const Result&) {
    std::lock_guard lock(mu);
    a_steps.push_back(observer.current_step());
  };
  constexpr int32_t kDecodeTokens = 24;  // enough to outlast b's prefill
  ASSERT_TRUE(engine->Submit(Greedy("a", RandomText(rng, 8), kDecodeTokens), a_sink).ok());
  ASSERT_TRUE(a_sink->WaitTokens(3));

  constexpr int32_t kLongPrompt = 600;
  auto b_sink = std::make_shared<TestSink>();
  std::atomic<uint64_t> b_first_step{0};
  b_sink->on_push = [&](const Result& r) {
    if (r.tokens.size() == 1) b_first_step = observer.current_step();
  };
  ASSERT_TRUE(engine->Submit(Greedy("b", RandomText(rng, kLongPrompt), 2), b_sink).ok());
  const Result b = b_sink->Wait();
  ASSERT_TRUE(b.done);
  ASSERT_TRUE(b.last.error.ok());
  const Result a = a_sink->Wait();
  ASSERT_TRUE(a.done);
  EXPECT_EQ(static_cast<int32_t>(a.tokens.size()), kDecodeTokens);

  // b's prompt takes ceil(600 / 63) = 10 steps (a's decode takes one token of each budget), and
  // a gets a token in every one of them.
  const uint64_t first = observer.b_admitted_step, last = b_first_step;
  ASSERT_GT(first, 0u);
  EXPECT_EQ(last - first + 1, static_cast<uint64_t>((kLongPrompt + 62) / 63));
  std::lock_guard lock(mu);
  int32_t a_during_prefill = 0;
  for (uint64_t step = first; step <= last; ++step) {
    const bool decoded = std::find(a_steps.begin(), a_steps.end(), step) != a_steps.end();
    EXPECT_TRUE(decoded) << "a stalled in step " << step;
    a_during_prefill += decoded;
  }
  EXPECT_GE(a_during_prefill, kLongPrompt / 64 - 1);
  std::printf("a produced a token in %d of the %llu steps that prefilled b's %d-token prompt\n",
              a_during_prefill, static_cast<unsigned long long>(last - first + 1), kLongPrompt);
}

// A request preempted mid-generation (its blocks taken for an older one, its prompt and output
// recomputed later) gives the same greedy tokens as an undisturbed run.
TEST_F(EngineTest, PreemptedRequestMatchesAnUndisturbedRun) {
  RecordingObserver observer;
  // 4 blocks of 8: two requests of 8 + 12 tokens need 3 each; the older one reaches its third
  // block at position 16, where the newer one is preempted with several output tokens to
  // recompute.
  std::unique_ptr<Engine> engine = MakeEngine(
      {.max_batch_tokens = 64, .max_running = 8, .num_kv_blocks = 4, .block_size = 8},
      &observer);
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(11);
  const std::vector<RequestSpec> specs = {Greedy("older", RandomText(rng, 8), 12),
                                          Greedy("newer", RandomText(rng, 8), 12)};
  std::vector<std::shared_ptr<TestSink>> sinks = {std::make_shared<TestSink>(),
                                                  std::make_shared<TestSink>()};
  for (size_t i = 0; i < specs.size(); ++i) ASSERT_TRUE(engine->Submit(specs[i], sinks[i]).ok());
  std::vector<std::vector<int32_t>> got;
  for (auto& sink : sinks) {
    Result r = sink->Wait();
    ASSERT_TRUE(r.done);
    ASSERT_TRUE(r.last.error.ok()) << r.last.error;
    got.push_back(r.tokens);
  }
  const EngineStats stats = WaitDrained(*engine);
  EXPECT_EQ(stats.kv_blocks_in_use, 0);
  EXPECT_GT(stats.preemptions, 0u);
  EXPECT_GT(observer.preempted.load(), 0);
  {
    std::lock_guard lock(observer.mu);
    EXPECT_GE(observer.preemptions_by_id["newer"], 1);
  }
  engine.reset();
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].id);
    EXPECT_EQ(got[i], RunAlone(specs[i]));
  }
}

TEST_F(EngineTest, AbortEndsARequestWithCancelledAndFreesItsBlocks) {
  std::unique_ptr<Engine> engine = MakeEngine({.max_batch_tokens = 64, .num_kv_blocks = 64});
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(5);
  auto sink = std::make_shared<TestSink>();
  ASSERT_TRUE(engine->Submit(Greedy("x", RandomText(rng, 30), 400), sink).ok());
  ASSERT_TRUE(sink->WaitTokens(3));
  EXPECT_TRUE(engine->Abort("x"));
  const Result r = sink->Wait();
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.last.error.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(r.last.finished);
  EXPECT_LT(r.tokens.size(), 400u);
  const EngineStats stats = WaitDrained(*engine);
  EXPECT_EQ(stats.kv_blocks_in_use, 0);
  EXPECT_EQ(stats.running, 0);
  EXPECT_FALSE(engine->Abort("x"));  // no longer live
  EXPECT_FALSE(engine->Abort("never-submitted"));
}

TEST_F(EngineTest, DeadlinesEndRequestsWithDeadlineExceeded) {
  std::unique_ptr<Engine> engine = MakeEngine({.max_batch_tokens = 64, .num_kv_blocks = 64});
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(6);

  RequestSpec past = Greedy("past", RandomText(rng, 10), 5);
  past.deadline = Clock::now() - milliseconds(1);
  auto past_sink = std::make_shared<TestSink>();
  ASSERT_TRUE(engine->Submit(past, past_sink).ok());
  Result r = past_sink->Wait();
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.last.error.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(r.tokens.empty());

  // Expires mid-generation: 400 tokens take seconds.
  RequestSpec soon = Greedy("soon", RandomText(rng, 10), 400);
  soon.deadline = Clock::now() + milliseconds(300);
  auto soon_sink = std::make_shared<TestSink>();
  ASSERT_TRUE(engine->Submit(soon, soon_sink).ok());
  r = soon_sink->Wait();
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.last.error.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(r.tokens.size(), 400u);
  EXPECT_GE(Clock::now(), soon.deadline);
  const EngineStats stats = WaitDrained(*engine);
  EXPECT_EQ(stats.kv_blocks_in_use, 0);
  EXPECT_EQ(stats.running, 0);
}

TEST_F(EngineTest, CreateRejectsBudgetsOutsideThreeToTheModelsBatch) {
  for (int32_t tokens : {0, 2, kModelBatchTokens + 1}) {
    EXPECT_EQ(Engine::Create(*model_, *backend_, *tokenizer_, {.max_batch_tokens = tokens})
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << tokens;
  }
  EXPECT_TRUE(Engine::Create(*model_, *backend_, *tokenizer_,
                             {.max_batch_tokens = 3, .num_kv_blocks = 4})
                  .ok());
}

TEST_F(EngineTest, SubmitRejectsWhatItCannotRunAndQueuesNothing) {
  std::unique_ptr<Engine> engine = MakeEngine(
      {.max_batch_tokens = 64, .max_running = 1, .max_waiting = 2, .num_kv_blocks = 32});
  ASSERT_NE(engine, nullptr);
  const int32_t limit = engine->context_limit();
  ASSERT_EQ(limit, 32 * 16);
  const int32_t vocab = tokenizer_->vocab_size();
  auto unused = std::make_shared<TestSink>();
  auto code = [&](RequestSpec spec) { return engine->Submit(std::move(spec), unused).code(); };

  EXPECT_EQ(code(Greedy("empty", {}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("oov", {1, vocab}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("negative", {-1, 2}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("zero-max", {1, 2}, 0)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("too-long", std::vector<int32_t>(10, 1), limit - 9)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy("prompt-too-long", std::vector<int32_t>(limit + 1, 1), 1)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Stats().waiting, 0);
  EXPECT_TRUE(engine->WaitIdle(Clock::now()));  // nothing live

  // Exactly at the limit is fine; it runs (one running request at a time).
  std::mt19937 rng(9);
  auto running = std::make_shared<TestSink>();
  ASSERT_TRUE(engine->Submit(Greedy("running", RandomText(rng, 10), limit - 10), running).ok());
  ASSERT_TRUE(running->WaitTokens(1));
  EXPECT_EQ(code(Greedy("running", {1, 2}, 4)), absl::StatusCode::kAlreadyExists);

  // max_running 1: these two wait, and max_waiting 2 turns away the third.
  auto w1 = std::make_shared<TestSink>();
  auto w2 = std::make_shared<TestSink>();
  ASSERT_TRUE(engine->Submit(Greedy("w1", {1, 2, 3}, 2), w1).ok());
  ASSERT_TRUE(engine->Submit(Greedy("w2", {1, 2, 3}, 2), w2).ok());
  EXPECT_EQ(code(Greedy("w3", {1, 2, 3}, 2)), absl::StatusCode::kResourceExhausted);

  engine->StopAccepting();
  EXPECT_EQ(code(Greedy("late", {1, 2, 3}, 2)), absl::StatusCode::kUnavailable);
  // Queued ones still run once the long one is gone.
  EXPECT_TRUE(engine->Abort("running"));
  EXPECT_EQ(running->Wait().last.error.code(), absl::StatusCode::kCancelled);
  for (auto& sink : {w1, w2}) {
    const Result r = sink->Wait();
    ASSERT_TRUE(r.done);
    EXPECT_TRUE(r.last.error.ok()) << r.last.error;
    EXPECT_EQ(r.tokens.size(), 2u);
  }
  const EngineStats stats = WaitDrained(*engine);
  EXPECT_FALSE(stats.accepting);
  EXPECT_EQ(stats.kv_blocks_in_use, 0);
  {
    // The rejected requests' sink never heard anything.
    EXPECT_EQ(unused->Wait(milliseconds(0)).num_pushes, 0);
  }
}

// The model-level seam for speculative decoding: one step runs the last accepted token and three
// drafts with logits at every position; the drafts after the first are rejected, and decoding
// continues from the shorter context, overwriting their slots. The continuation equals the one
// that never saw the rejected tokens (their KV came from a multi-token step, which sums attention
// in another order than one-token steps: logits agree within 1e-2, argmax tokens exactly).
TEST_F(EngineTest, DecodingAfterASpeculativeRollbackMatchesTheUndisturbedContinuation) {
  constexpr int32_t kBlockSize = 16;
  constexpr int32_t kContinue = 6;
  auto kv = model::KvCacheStorage::Create(*backend_, model_->KvShape(8, kBlockSize));
  ASSERT_TRUE(kv.ok()) << kv.status();
  const int32_t vocab = model_->config().vocab_size;
  const std::vector<int32_t> reference_blocks = {0, 1, 2, 3};
  const std::vector<int32_t> spec_blocks = {7, 5, 6, 4};
  std::mt19937 rng(13);
  const std::vector<int32_t> prompt = RandomText(rng, 21);
  const int32_t len = static_cast<int32_t>(prompt.size());

  auto argmax = [&](std::span<const float> row) {
    return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
  };
  // Runs `tokens` at positions [context_len - n, context_len); returns the logits of the last
  // `num_logits` of them.
  auto step = [&](const std::vector<int32_t>& block_table, const std::vector<int32_t>& tokens,
                  int32_t context_len, int32_t num_logits) {
    model::StepBatch batch;
    batch.token_ids = tokens;
    batch.seqs.push_back({.num_tokens = static_cast<int32_t>(tokens.size()),
                          .context_len = context_len,
                          .block_table = block_table,
                          .num_logits = num_logits});
    auto logits = model_->Forward(batch, **kv);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.ok() ? std::vector<float>(logits->begin(), logits->end())
                       : std::vector<float>(static_cast<size_t>(vocab) * num_logits);
  };

  // Undisturbed: prompt, then one token per step.
  std::vector<int32_t> ref_tokens;
  std::vector<std::vector<float>> ref_logits;
  std::vector<float> logits = step(reference_blocks, prompt, len, 1);
  ref_tokens.push_back(argmax(logits));  // t0
  for (int i = 0; i < kContinue + 2; ++i) {
    logits = step(reference_blocks, {ref_tokens.back()}, len + i + 1, 1);
    ref_logits.push_back(logits);  // ref_logits[i] predicts ref_tokens[i + 1]
    ref_tokens.push_back(argmax(logits));
  }

  // Speculative: prompt, then [t0, t1 (a good draft), two bad drafts] in one step.
  logits = step(spec_blocks, prompt, len, 1);
  ASSERT_EQ(argmax(logits), ref_tokens[0]);
  const int32_t bad = (ref_tokens[2] + 1) % vocab;
  logits = step(spec_blocks, {ref_tokens[0], ref_tokens[1], bad, bad}, len + 4, 4);
  ASSERT_EQ(logits.size(), static_cast<size_t>(vocab) * 4);
  // Verification: position 0 confirms t1, position 1 rejects `bad` in favour of t2.
  auto row = [&](int i) { return std::span<const float>(logits).subspan(i * vocab, vocab); };
  ASSERT_EQ(argmax(row(0)), ref_tokens[1]);
  ASSERT_EQ(argmax(row(1)), ref_tokens[2]);
  ASSERT_NE(argmax(row(1)), bad);
  auto max_diff = [](std::span<const float> x, std::span<const float> y) {
    float worst = 0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(x[i] - y[i]));
    return worst;
  };
  float worst = std::max(max_diff(row(0), ref_logits[0]), max_diff(row(1), ref_logits[1]));

  // Roll back to prompt + t0 + t1 and go on one token per step from t2, over the rejected slots.
  std::vector<int32_t> spec_tokens = {ref_tokens[0], ref_tokens[1], ref_tokens[2]};
  for (int i = 2; i < kContinue + 2; ++i) {
    logits = step(spec_blocks, {spec_tokens.back()}, len + i + 1, 1);
    worst = std::max(worst, max_diff(logits, ref_logits[i]));
    spec_tokens.push_back(argmax(logits));
  }
  EXPECT_EQ(spec_tokens, ref_tokens);
  EXPECT_LT(worst, 1e-2f);
  std::printf("largest logit difference after the rollback: %g\n", worst);
}

}  // namespace
}  // namespace saola::engine
