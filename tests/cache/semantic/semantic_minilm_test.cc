// The semantic cache with the real all-MiniLM-L6-v2 embedder: paraphrases hit, near-misses that
// embed just as closely are vetoed by the guard, and the cache with the guard off would have
// served them (so the test shows what the guard is for). Skips, saying so, when the model files
// are missing (scripts/fetch-models installs them).
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cache/semantic/minilm_embedder.h"
#include "cache/semantic/semantic_cache.h"
#include "gtest/gtest.h"

namespace saola::cache {
namespace {

// The operating point bench/semantic/semantic_eval.cc measures.
constexpr float kThreshold = 0.80f;

class SemanticMiniLmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(SAOLA_SOURCE_DIR) + "/models/all-MiniLM-L6-v2";
    if (!std::filesystem::exists(dir + "/model.safetensors")) return;
    auto e = MiniLmEmbedder::Load(dir);
    ASSERT_TRUE(e.ok()) << e.status();
    embedder_ = std::move(*e).release();
  }
  static void TearDownTestSuite() {
    delete embedder_;
    embedder_ = nullptr;
  }
  void SetUp() override {
    if (embedder_ == nullptr) {
      GTEST_SKIP() << "models/all-MiniLM-L6-v2 is missing: run scripts/fetch-models";
    }
  }
  std::unique_ptr<SemanticCache> Cache(bool guard) {
    SemanticCacheOptions o;
    o.enable_guard = guard;
    return *SemanticCache::Create(embedder_, o);
  }
  static saola::v1::CachedResponse Response(const std::string& tag) {
    saola::v1::CachedResponse r;
    r.set_version(1);
    r.set_fingerprint(tag);
    return r;
  }
  static MiniLmEmbedder* embedder_;
};

MiniLmEmbedder* SemanticMiniLmTest::embedder_ = nullptr;

TEST_F(SemanticMiniLmTest, ParaphrasesHit) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"How do I reset my password?", "What's the way to reset my password?"},
      {"Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?"},
      {"How do I center a div in CSS?", "What's the best way to center a div with CSS?"},
      {"What causes inflation?", "Why does inflation happen?"},
  };
  for (const auto& [stored, query] : pairs) {
    auto cache = Cache(/*guard=*/true);
    cache->Insert("p", stored, {}, Response(stored));
    auto hit = cache->Lookup("p", query, kThreshold, nullptr);
    ASSERT_TRUE(hit.has_value()) << query;
    EXPECT_EQ(hit->response.fingerprint(), stored);
  }
}

TEST_F(SemanticMiniLmTest, GuardVetoesCloseNearMissesThatTheEmbeddingAloneWouldServe) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"What is the capital of France?", "What is the capital of Germany?"},
      {"Turn on the living room lights.", "Turn off the living room lights."},
      {"How do I increase my credit score?", "How do I decrease my credit score?"},
      {"Find flights from Paris to London.", "Find flights from London to Paris."},
      {"What is 2 + 2?", "What is 2 + 3?"},
      {"Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"},
      {"How do I zoom in on a Mac?", "How do I zoom out on a Mac?"},
  };
  int served_without_guard = 0;
  for (const auto& [stored, query] : pairs) {
    auto unguarded = Cache(/*guard=*/false);
    unguarded->Insert("p", stored, {}, Response(stored));
    served_without_guard += unguarded->Lookup("p", query, kThreshold, nullptr).has_value();
    auto guarded = Cache(/*guard=*/true);
    guarded->Insert("p", stored, {}, Response(stored));
    EXPECT_FALSE(guarded->Lookup("p", query, kThreshold, nullptr).has_value()) << query;
  }
  // Most of these embed above the threshold: the embedding alone would answer them wrongly.
  EXPECT_GE(served_without_guard, 5);
}

TEST_F(SemanticMiniLmTest, RightAnswerFoundNextToAVetoedOne) {
  auto cache = Cache(/*guard=*/true);
  cache->Insert("p", "What is the capital of France?", {}, Response("paris"));
  cache->Insert("p", "What is the capital of Germany?", {}, Response("berlin"));
  auto hit = cache->Lookup("p", "Which city is the capital of Germany?", kThreshold, nullptr);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->response.fingerprint(), "berlin");
}

}  // namespace
}  // namespace saola::cache
