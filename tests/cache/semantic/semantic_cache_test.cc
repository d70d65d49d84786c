// SemanticCache mechanics with a hashed bag-of-words embedder (tests/cache/semantic/
// hashing_test_embedder.h); paraphrase quality is tested with MiniLM in semantic_minilm_test.cc.
#include "cache/semantic/semantic_cache.h"
#include "cache/semantic/semantic_cache_file.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/cache/semantic/hashing_test_embedder.h"

namespace saola::cache {
namespace {

saola::v1::CachedResponse Response(const std::string& text) {
  saola::v1::CachedResponse r;
  r.set_version(1);
  r.set_fingerprint(text);
  r.add_messages();
  return r;
}

// A clock the test moves by hand.
struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1700000000);
  std::function<absl::Time()> fn() {
    return [this] { return now; };
  }
};

std::unique_ptr<SemanticCache> MakeCache(const Embedder* e, SemanticCacheOptions o = {}) {
  auto cache = SemanticCache::Create(e, std::move(o));
  EXPECT_TRUE(cache.ok()) << cache.status();
  return *std::move(cache);
}

// Six made-up words per entry: distinct texts, far apart under the hashing embedder.
std::string Words(int i) {
  return absl::StrCat("zq", i, "a zq", i, "b zq", i, "c zq", i, "d zq", i, "e zq", i, "f");
}

TEST(SemanticCacheTest, RejectsBadOptions) {
  HashingTestEmbedder e;
  SemanticCacheOptions o;
  o.max_entries = 0;
  EXPECT_FALSE(SemanticCache::Create(&e, o).ok());
  EXPECT_FALSE(SemanticCache::Create(nullptr, {}).ok());
}

TEST(SemanticCacheTest, HitReturnsStoredResponseAndEmbedding) {
  HashingTestEmbedder e;
  auto cache = MakeCache(&e);
  std::vector<float> emb;
  EXPECT_FALSE(cache->Lookup("p", "how do I reset my password", 0.8f, &emb).has_value());
  ASSERT_EQ(emb.size(), 256u);
  cache->Insert("p", "how do I reset my password", emb, Response("A"));
  auto hit = cache->Lookup("p", "How do I reset my password?", 0.8f, nullptr);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->response.fingerprint(), "A");
  EXPECT_NEAR(hit->similarity, 1.0f, 1e-5);
  EXPECT_EQ(hit->cached_text, "how do I reset my password");
  EXPECT_EQ(cache->stats().hits, 1);
  EXPECT_EQ(cache->stats().misses, 1);
}

TEST(SemanticCacheTest, PartitionsNeverAnswerEachOther) {
  HashingTestEmbedder e;
  auto cache = MakeCache(&e);
  cache->Insert("tenant-a/model-x", "what is a monad", {}, Response("A"));
  cache->Insert("tenant-b/model-x", "what is a monad", {}, Response("B"));
  EXPECT_EQ(cache->Lookup("tenant-a/model-x", "what is a monad", 0.5f, nullptr)
                ->response.fingerprint(), "A");
  EXPECT_EQ(cache->Lookup("tenant-b/model-x", "what is a monad", 0.5f, nullptr)
                ->response.fingerprint(), "B");
  EXPECT_FALSE(cache->Lookup("tenant-c/model-x", "what is a monad", 0.0f, nullptr));
  // Partition bytes are opaque: a NUL inside is part of the key.
  EXPECT_FALSE(cache->Lookup(std::string_view("tenant-a\0", 9), "what is a monad", 0.0f,
                             nullptr));
  EXPECT_EQ(cache->stats().partitions, 2);
}

TEST(SemanticCacheTest, ThresholdIsRespected) {
  HashingTestEmbedder e;
  auto cache = MakeCache(&e);
  // 8 shared words of 10 (two differ: one would make a minimal pair, which the guard vetoes).
  const std::string stored = "alpha beta gamma delta epsilon zeta eta theta iota kappa";
  const std::string query = "alpha beta gamma delta epsilon zeta eta theta omega sigma";
  cache->Insert("p", stored, {}, Response("A"));
  const std::vector<float> a = *e.Embed(stored), b = *e.Embed(query);
  float sim = 0;
  for (size_t i = 0; i < a.size(); ++i) sim += a[i] * b[i];
  ASSERT_GT(sim, 0.7f);
  ASSERT_LT(sim, 0.95f);
  auto hit = cache->Lookup("p", query, sim - 0.01f, nullptr);
  ASSERT_TRUE(hit.has_value());
  EXPECT_NEAR(hit->similarity, sim, 1e-5);
  EXPECT_FALSE(cache->Lookup("p", query, sim + 0.01f, nullptr));
}

TEST(SemanticCacheTest, ExpiredEntriesAreNotServedAndAreRemoved) {
  HashingTestEmbedder e;
  FakeClock clock;
  SemanticCacheOptions o;
  o.ttl = absl::Minutes(10);
  o.clock = clock.fn();
  auto cache = MakeCache(&e, o);
  cache->Insert("p", "first question here", {}, Response("A"));
  clock.now += absl::Minutes(9);
  EXPECT_TRUE(cache->Lookup("p", "first question here", 0.9f, nullptr));
  clock.now += absl::Minutes(1);
  EXPECT_FALSE(cache->Lookup("p", "first question here", 0.9f, nullptr));
  EXPECT_EQ(cache->stats().entries, 1);  // not served, removed at the next insert
  cache->Insert("p", "second question there", {}, Response("B"));
  EXPECT_EQ(cache->stats().entries, 1);
  EXPECT_EQ(cache->stats().expired, 1);
}

TEST(SemanticCacheTest, ExpiredNearestDoesNotHideValidSecond) {
  HashingTestEmbedder e;
  FakeClock clock;
  SemanticCacheOptions o;
  o.ttl = absl::Minutes(10);
  o.clock = clock.fn();
  auto cache = MakeCache(&e, o);
  cache->Insert("p", "alpha beta gamma delta", {}, Response("old"));
  clock.now += absl::Minutes(6);
  cache->Insert("p", "alpha beta gamma delta epsilon zeta", {}, Response("new"));
  clock.now += absl::Minutes(5);  // "old" expired, still in the index (no insert since)
  auto hit = cache->Lookup("p", "alpha beta gamma delta", 0.7f, nullptr);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->response.fingerprint(), "new");
}

TEST(SemanticCacheTest, GuardVetoedNearestDoesNotHideValidSecond) {
  HashingTestEmbedder e;
  auto cache = MakeCache(&e);
  cache->Insert("p", "turn on the kitchen lights now", {}, Response("on"));
  cache->Insert("p", "please switch off kitchen lights", {}, Response("off"));
  auto hit = cache->Lookup("p", "turn off the kitchen lights now", 0.5f, nullptr);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->response.fingerprint(), "off");
  // Only the vetoed one above the threshold: a miss, counted as a guard rejection.
  EXPECT_FALSE(cache->Lookup("p", "turn off the kitchen lights now", 0.8f, nullptr));
  EXPECT_EQ(cache->stats().guard_rejections, 1);
}

TEST(SemanticCacheTest, GuardCanBeDisabled) {
  HashingTestEmbedder e;
  SemanticCacheOptions o;
  o.enable_guard = false;
  auto cache = MakeCache(&e, o);
  cache->Insert("p", "turn on the kitchen lights now", {}, Response("on"));
  EXPECT_TRUE(cache->Lookup("p", "turn off the kitchen lights now", 0.8f, nullptr));
}

TEST(SemanticCacheTest, SizeBoundEvictsOldestFirstAcrossPartitions) {
  HashingTestEmbedder e;
  SemanticCacheOptions o;
  o.max_entries = 10;
  auto cache = MakeCache(&e, o);
  for (int i = 0; i < 25; ++i) {
    cache->Insert(absl::StrCat("p", i % 3), Words(i), {}, Response(absl::StrCat(i)));
  }
  EXPECT_EQ(cache->stats().entries, 10);
  EXPECT_EQ(cache->stats().evicted, 15);
  for (int i = 0; i < 25; ++i) {
    auto hit = cache->Lookup(absl::StrCat("p", i % 3), Words(i), 0.99f, nullptr);
    EXPECT_EQ(hit.has_value(), i >= 15) << i;
  }
}

TEST(SemanticCacheTest, FlatToHnswSwitchKeepsFindingEntries) {
  HashingTestEmbedder e;
  SemanticCacheOptions o;
  o.hnsw_min_entries = 50;
  auto cache = MakeCache(&e, o);
  for (int i = 0; i < 200; ++i) cache->Insert("p", Words(i), {}, Response(absl::StrCat(i)));
  EXPECT_EQ(cache->stats().hnsw_partitions, 1);
  for (int i = 0; i < 200; ++i) {
    auto hit = cache->Lookup("p", Words(i), 0.99f, nullptr);
    ASSERT_TRUE(hit.has_value()) << i;
    EXPECT_EQ(hit->response.fingerprint(), absl::StrCat(i));
  }
}

TEST(SemanticCacheTest, HnswEvictionRebuildsAndServesSurvivors) {
  HashingTestEmbedder e;
  SemanticCacheOptions o;
  o.hnsw_min_entries = 50;
  o.max_entries = 100;
  auto cache = MakeCache(&e, o);
  for (int i = 0; i < 200; ++i) cache->Insert("p", Words(i), {}, Response(absl::StrCat(i)));
  const SemanticCacheStats s = cache->stats();
  EXPECT_EQ(s.entries, 100);
  EXPECT_EQ(s.hnsw_partitions, 1);
  EXPECT_GE(s.index_rebuilds, 2);  // the switch, then tombstone purges
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(cache->Lookup("p", Words(i), 0.99f, nullptr).has_value(), i >= 100) << i;
  }
}

class SemanticCacheFileTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) {
    return absl::StrCat(::testing::TempDir(), "/semantic_cache_file_test_", name);
  }
  void Populate(SemanticCache* cache) {
    for (int i = 0; i < 60; ++i) {
      cache->Insert(absl::StrCat("tenant", i % 2), Words(i), {}, Response(absl::StrCat(i)));
    }
  }
  // Every entry of Populate answers with its own response.
  void ExpectPopulated(SemanticCache* cache) {
    for (int i = 0; i < 60; ++i) {
      auto hit = cache->Lookup(absl::StrCat("tenant", i % 2), Words(i), 0.99f, nullptr);
      ASSERT_TRUE(hit.has_value()) << i;
      EXPECT_EQ(hit->response.fingerprint(), absl::StrCat(i));
    }
  }
  HashingTestEmbedder embedder_;
};

TEST_F(SemanticCacheFileTest, SaveLoadRoundTripGivesIdenticalHits) {
  SemanticCacheOptions o;
  o.hnsw_min_entries = 20;  // both layouts: 30 per partition -> HNSW
  auto a = MakeCache(&embedder_, o);
  Populate(a.get());
  ASSERT_TRUE(a->Save(Path("round")).ok());
  auto b = MakeCache(&embedder_, o);
  ASSERT_TRUE(b->Load(Path("round")).ok());
  EXPECT_EQ(b->stats().entries, 60);
  EXPECT_EQ(b->stats().partitions, 2);
  for (int i = 0; i < 60; ++i) {
    for (const std::string& q : {Words(i), absl::StrCat(Words(i), " extra words")}) {
      auto ha = a->Lookup(absl::StrCat("tenant", i % 2), q, 0.5f, nullptr);
      auto hb = b->Lookup(absl::StrCat("tenant", i % 2), q, 0.5f, nullptr);
      ASSERT_EQ(ha.has_value(), hb.has_value());
      if (!ha) continue;
      EXPECT_EQ(ha->response.SerializeAsString(), hb->response.SerializeAsString());
      EXPECT_FLOAT_EQ(ha->similarity, hb->similarity);
    }
  }
}

TEST_F(SemanticCacheFileTest, LoadDropsExpiredEntries) {
  FakeClock clock;
  SemanticCacheOptions o;
  o.clock = clock.fn();
  o.ttl = absl::Minutes(5);
  auto a = MakeCache(&embedder_, o);
  a->Insert("p", "old entry words", {}, Response("old"));
  clock.now += absl::Minutes(3);
  a->Insert("p", "new entry words", {}, Response("new"));
  ASSERT_TRUE(a->Save(Path("ttl")).ok());
  clock.now += absl::Minutes(3);
  auto b = MakeCache(&embedder_, o);
  ASSERT_TRUE(b->Load(Path("ttl")).ok());
  EXPECT_EQ(b->stats().entries, 1);
  EXPECT_TRUE(b->Lookup("p", "new entry words", 0.99f, nullptr));
}

// Writes `bytes` to a file and expects Load to fail with `code`, leaving `cache` as it was.
void ExpectRejected(SemanticCache* cache, const std::string& path, const std::string& bytes,
                    absl::StatusCode code) {
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  const int64_t entries = cache->stats().entries;
  absl::Status s = cache->Load(path);
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_EQ(cache->stats().entries, entries);
}

TEST_F(SemanticCacheFileTest, CorruptFilesAreRejectedAndLeaveTheCacheUnchanged) {
  auto source = MakeCache(&embedder_);
  source->Insert("x", "a different entry", {}, Response("x"));
  ASSERT_TRUE(source->Save(Path("good")).ok());
  auto good = ReadWholeFile(Path("good"));
  ASSERT_TRUE(good.ok());

  auto cache = MakeCache(&embedder_);
  Populate(cache.get());
  const std::string path = Path("bad");
  // Truncation anywhere.
  for (size_t cut : {size_t{0}, size_t{7}, size_t{30}, size_t{48}, size_t{60},
                     good->size() / 2, good->size() - 9, good->size() - 1}) {
    ExpectRejected(cache.get(), path, good->substr(0, cut), absl::StatusCode::kDataLoss);
  }
  // A flipped byte in the body: the checksum.
  std::string flipped = *good;
  flipped[60] ^= 0x40;
  ExpectRejected(cache.get(), path, flipped, absl::StatusCode::kDataLoss);
  // Bad magic.
  std::string magic = *good;
  magic[0] = 'X';
  ExpectRejected(cache.get(), path, magic, absl::StatusCode::kInvalidArgument);
  // Unknown version.
  std::string version = *good;
  version[8] = 2;
  ExpectRejected(cache.get(), path, version, absl::StatusCode::kFailedPrecondition);
  // Another embedder's dimension.
  HashingTestEmbedder other(64);
  auto small = MakeCache(&other);
  ASSERT_TRUE(small->Save(Path("dim64")).ok());
  ExpectRejected(cache.get(), path, *ReadWholeFile(Path("dim64")),
                 absl::StatusCode::kFailedPrecondition);
  // Well-formed framing around bad contents: an absurd length, a non-unit vector, a response
  // that does not parse.
  SemanticCacheFileHeader header;
  header.dim = 256;
  SemanticCacheRecord rec;
  rec.partition = "p";
  rec.text = "t";
  rec.embedding.assign(256, 0.0f);
  rec.embedding[0] = 1.0f;
  rec.created = absl::Now();
  rec.response_bytes = Response("r").SerializeAsString();
  std::string huge = EncodeSemanticCacheFile(header, {rec});
  huge[48 + 3] = 0x7f;  // partition length high byte -> ~2 GiB
  ExpectRejected(cache.get(), path, huge, absl::StatusCode::kDataLoss);  // checksum first
  SemanticCacheRecord not_unit = rec;
  not_unit.embedding[1] = 1.0f;
  ExpectRejected(cache.get(), path, EncodeSemanticCacheFile(header, {not_unit}),
                 absl::StatusCode::kInvalidArgument);
  SemanticCacheRecord nan = rec;
  nan.embedding[2] = std::nanf("");
  ExpectRejected(cache.get(), path, EncodeSemanticCacheFile(header, {nan}),
                 absl::StatusCode::kInvalidArgument);
  SemanticCacheRecord garbage = rec;
  garbage.response_bytes = "\xff\xff\xff";
  ExpectRejected(cache.get(), path, EncodeSemanticCacheFile(header, {garbage}),
                 absl::StatusCode::kDataLoss);
  ExpectPopulated(cache.get());
  // A missing file too.
  EXPECT_EQ(cache->Load(Path("does-not-exist")).code(), absl::StatusCode::kNotFound);
  ExpectPopulated(cache.get());
  // And the well-formed one does replace the contents.
  ASSERT_TRUE(cache->Load(Path("good")).ok());
  EXPECT_EQ(cache->stats().entries, 1);
}

TEST(SemanticCacheDecodeTest, LengthsAreBoundsCheckedEvenWithAValidChecksum) {
  SemanticCacheFileHeader header;
  header.dim = 4;
  SemanticCacheRecord rec;
  rec.partition = "p";
  rec.text = "t";
  rec.embedding = {1, 0, 0, 0};
  rec.created = absl::Now();
  std::string bytes = EncodeSemanticCacheFile(header, {rec});
  ASSERT_TRUE(DecodeSemanticCacheFile(bytes, 4).ok());
  // Claim 1000 entries / a 2 GiB text, then fix up the checksum so only the bounds can object.
  auto refix = [](std::string b) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i + 8 < b.size(); ++i) {
      h ^= static_cast<unsigned char>(b[i]);
      h *= 0x100000001b3ull;
    }
    std::memcpy(b.data() + b.size() - 8, &h, 8);
    return b;
  };
  std::string many = bytes;
  many[40] = static_cast<char>(0xe8);
  many[41] = 0x03;
  EXPECT_EQ(DecodeSemanticCacheFile(refix(many), 4).status().code(),
            absl::StatusCode::kDataLoss);
  std::string long_text = bytes;
  long_text[48 + 4 + 1 + 3] = 0x7f;
  EXPECT_EQ(DecodeSemanticCacheFile(refix(long_text), 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string trailing = bytes;
  trailing.insert(trailing.size() - 8, "zz");
  EXPECT_EQ(DecodeSemanticCacheFile(refix(trailing), 4).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(SemanticCacheTest, ConcurrentLookupsAndInsertsAreSafe) {
  HashingTestEmbedder e;
  SemanticCacheOptions o;
  o.hnsw_min_entries = 64;
  o.max_entries = 300;
  auto cache = MakeCache(&e, o);
  std::atomic<int> hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const int k = t * 1000 + i;
        const std::string part = absl::StrCat("p", k % 2);
        std::vector<float> emb;
        if (!cache->Lookup(part, Words(k), 0.99f, &emb)) {
          cache->Insert(part, Words(k), std::move(emb), Response(absl::StrCat(k)));
        }
        auto hit = cache->Lookup(part, Words(k), 0.99f, nullptr);
        if (hit && hit->response.fingerprint() == absl::StrCat(k)) ++hits;
      }
    });
  }
  for (auto& th : threads) th.join();
  // Each thread looks up its own entry right after inserting it; with 4 * 2 inserted between
  // at most, the bound of 300 never evicts it before the lookup.
  EXPECT_EQ(hits.load(), 800);
  EXPECT_EQ(cache->stats().entries, 300);
}

}  // namespace
}  // namespace saola::cache
