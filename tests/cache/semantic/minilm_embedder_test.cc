#include "cache/semantic/minilm_embedder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/json.h"
#include "gtest/gtest.h"

namespace saola::cache {
namespace {

std::string ModelDir() { return std::string(SAOLA_SOURCE_DIR) + "/models/all-MiniLM-L6-v2"; }

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}

class MiniLmEmbedderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(ModelDir())) return;
    auto embedder = MiniLmEmbedder::Load(ModelDir());
    ASSERT_TRUE(embedder.ok()) << embedder.status();
    embedder_ = embedder->release();
  }
  static void TearDownTestSuite() {
    delete embedder_;
    embedder_ = nullptr;
  }
  void SetUp() override {
    if (embedder_ == nullptr) {
      GTEST_SKIP() << ModelDir() << " missing: run scripts/fetch-models";
    }
  }

  static MiniLmEmbedder* embedder_;
};

MiniLmEmbedder* MiniLmEmbedderTest::embedder_ = nullptr;

// sentence-transformers' ids and embeddings (tests/golden/make_embedding_fixtures.py).
TEST_F(MiniLmEmbedderTest, MatchesReference) {
  std::ifstream in(std::string(SAOLA_SOURCE_DIR) + "/tests/golden/embeddings/minilm.json");
  std::stringstream text;
  text << in.rdbuf();
  auto fixture = json::Parse(text.str());
  ASSERT_TRUE(fixture.ok()) << fixture.status();
  double min_cosine = 1;
  for (const json::Value& c : fixture->Find("embedding_cases")->arr()) {
    const std::string& name = c.Find("name")->str();
    std::vector<int32_t> ids;
    for (const json::Value& id : c.Find("ids")->arr()) ids.push_back(static_cast<int32_t>(id.num()));
    std::vector<float> want;
    for (const json::Value& x : c.Find("embedding")->arr()) want.push_back(static_cast<float>(x.num()));
    EXPECT_EQ(embedder_->Tokenize(c.Find("text")->str()), ids) << name;
    auto got = embedder_->Embed(c.Find("text")->str());
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    ASSERT_EQ(got->size(), want.size()) << name;
    const double cosine = Dot(*got, want) / std::sqrt(Dot(*got, *got) * Dot(want, want));
    EXPECT_GE(cosine, 0.999) << name;
    min_cosine = std::min(min_cosine, cosine);
    std::printf("  %-24s %3zu tokens  1 - cosine = %.2e\n", name.c_str(), ids.size(), 1 - cosine);
  }
  std::printf("  min cosine %.9f\n", min_cosine);
}

TEST_F(MiniLmEmbedderTest, UnitLengthAndMeaningful) {
  EXPECT_EQ(embedder_->dim(), 384);
  auto a = embedder_->Embed("How do I reset my password?");
  auto b = embedder_->Embed("I forgot my password, how can I change it?");
  auto c = embedder_->Embed("The capital of France is Paris.");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_NEAR(Dot(*a, *a), 1.0, 1e-5);
  EXPECT_GT(Dot(*a, *b), Dot(*a, *c) + 0.3);
  // Invalid UTF-8 and huge inputs are fine.
  auto odd = embedder_->Embed(std::string("\xff\xfe\x00\xc0", 4));
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_NEAR(Dot(*odd, *odd), 1.0, 1e-5);
  std::string big;
  for (int i = 0; i < 50000; ++i) big += "lorem ipsum ";
  EXPECT_EQ(embedder_->Tokenize(big).size(), 256u);
  EXPECT_TRUE(embedder_->Embed(big).ok());
}

TEST_F(MiniLmEmbedderTest, ConcurrentEmbedsMatchSerial) {
  const std::vector<std::string> texts = {
      "How do I reset my password?", "Explain quantum computing in simple terms.",
      "Write a haiku about autumn leaves.", "", "Café ☕ 中文 안녕 !!!",
      "What is the fastest way to learn to play the guitar well?"};
  std::vector<std::vector<float>> serial;
  for (const std::string& t : texts) serial.push_back(*embedder_->Embed(t));
  constexpr int kThreads = 4, kRounds = 5;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      for (int round = 0; round < kRounds; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          // Each thread walks the texts from a different start so different ones overlap.
          const size_t k = (i + th) % texts.size();
          auto v = embedder_->Embed(texts[k]);
          if (!v.ok() || *v != serial[k]) ++mismatches[th];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int th = 0; th < kThreads; ++th) EXPECT_EQ(mismatches[th], 0) << "thread " << th;
}

TEST(MiniLmEmbedderLoadTest, MissingFilesAreNotFound) {
  EXPECT_EQ(MiniLmEmbedder::Load("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

TEST(MiniLmEmbedderLoadTest, MismatchedVocabularyIsRejected) {
  if (!std::filesystem::exists(ModelDir())) GTEST_SKIP() << ModelDir() << " missing";
  // The real config and weights with a vocabulary of the wrong size.
  const std::filesystem::path dir =
      std::filesystem::path(SAOLA_BINARY_DIR) / "minilm_embedder_test_bad_vocab";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(ModelDir() + "/config.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(dir / "model.safetensors");
  std::filesystem::create_symlink(ModelDir() + "/model.safetensors", dir / "model.safetensors");
  std::ofstream(dir / "vocab.txt") << "[UNK]\n[CLS]\n[SEP]\n";
  auto embedder = MiniLmEmbedder::Load(dir.string());
  EXPECT_EQ(embedder.status().code(), absl::StatusCode::kInvalidArgument) << embedder.status();
}

}  // namespace
}  // namespace saola::cache
