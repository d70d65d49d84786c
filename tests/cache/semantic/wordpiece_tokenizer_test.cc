#include "cache/semantic/wordpiece_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cache/semantic/bert_normalizer.h"
#include "common/json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace saola::cache {
namespace {

using ::testing::ElementsAre;

// ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3, then the pieces in order from 4.
constexpr char kVocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n"
    "un\n##aff\n##able\nhello\nworld\n,\n!\na\n##a\ncafe\n中\n'\ns\n#\nx\n";
enum : int32_t { kUnk = 1, kCls, kSep, kUn, kAff, kAble, kHello, kWorld, kComma, kBang, kA,
                 kContA, kCafe, kZhong, kApostrophe, kS, kHash, kX };

std::unique_ptr<WordpieceTokenizer> Small() {
  auto tokenizer = WordpieceTokenizer::FromVocab(kVocab);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return *std::move(tokenizer);
}

std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> words;
  ForEachBertWord(text, [&](std::string_view w) {
    words.emplace_back(w);
    return true;
  });
  return words;
}

TEST(WordpieceTokenizerTest, SplitsGreedilyLongestFirst) {
  auto t = Small();
  EXPECT_EQ(t->vocab_size(), 19);
  EXPECT_THAT(t->Encode("unaffable", 256), ElementsAre(kCls, kUn, kAff, kAble, kSep));
  EXPECT_THAT(t->Encode("aaa", 256), ElementsAre(kCls, kA, kContA, kContA, kSep));
  EXPECT_THAT(t->Encode("", 256), ElementsAre(kCls, kSep));
}

TEST(WordpieceTokenizerTest, UnknownWordIsOneUnk) {
  auto t = Small();
  // "un" matches but "##x" does not: the whole word becomes [UNK], not "un" [UNK].
  EXPECT_THAT(t->Encode("unx hello zzz", 256), ElementsAre(kCls, kUnk, kHello, kUnk, kSep));
}

TEST(WordpieceTokenizerTest, SplitsPunctuationAndWhitespace) {
  auto t = Small();
  EXPECT_THAT(t->Encode("hello,world!", 256),
              ElementsAre(kCls, kHello, kComma, kWorld, kBang, kSep));
  EXPECT_THAT(t->Encode("  hello\t\r\nworld\u00a0!\u3000", 256),
              ElementsAre(kCls, kHello, kWorld, kBang, kSep));
  EXPECT_THAT(t->Encode("hello's #x", 256),
              ElementsAre(kCls, kHello, kApostrophe, kS, kHash, kX, kSep));
  EXPECT_THAT(Words("a-b_c$d\u2014e\u00bfx"),
              ElementsAre("a", "-", "b", "_", "c", "$", "d", "\u2014", "e", "\u00bf", "x"));
}

TEST(WordpieceTokenizerTest, LowercasesAndStripsAccents) {
  auto t = Small();
  EXPECT_THAT(t->Encode("HELLO Café CAFÉ cafe\u0301", 256),
              ElementsAre(kCls, kHello, kCafe, kCafe, kCafe, kSep));
  EXPECT_THAT(Words("Ångström NAÏVE İstanbul Straße ΣΟΦΙΑ"),
              ElementsAre("angstrom", "naive", "istanbul", "straße", "σοφια"));
}

TEST(WordpieceTokenizerTest, IsolatesCjkAndDecomposesHangul) {
  auto t = Small();
  EXPECT_THAT(t->Encode("a中a", 256), ElementsAre(kCls, kA, kZhong, kA, kSep));
  // 한 (U+D55C) is ᄒ ᅡ ᆫ in NFD: conjoining jamo, not marks, so all three stay.
  EXPECT_THAT(Words("한"), ElementsAre("\u1112\u1161\u11ab"));
}

TEST(WordpieceTokenizerTest, MatchesSpecialTokensInRawText) {
  auto t = Small();
  EXPECT_THAT(t->Encode("hello[SEP]world [UNK][CLS", 256),
              ElementsAre(kCls, kHello, kSep, kWorld, kUnk, kUnk, kUnk, kSep));
  // Only the exact spelling is special; "[sep]" is punctuation and a word.
  EXPECT_THAT(Words("[sep]"), ElementsAre("[", "sep", "]"));
  EXPECT_THAT(t->Encode("[CLS][CLS][CLS]", 4), ElementsAre(kCls, kCls, kCls, kSep));
}

TEST(WordpieceTokenizerTest, DropsControlCharacters) {
  auto t = Small();
  EXPECT_THAT(t->Encode(std::string("hel\0lo\x07 w\u200borld\ufffd", 19), 256),
              ElementsAre(kCls, kHello, kWorld, kSep));
}

TEST(WordpieceTokenizerTest, LongWordIsUnk) {
  auto t = Small();
  EXPECT_THAT(t->Encode(std::string(101, 'a'), 256), ElementsAre(kCls, kUnk, kSep));
  std::vector<int32_t> ids = t->Encode(std::string(100, 'a'), 256);
  EXPECT_EQ(ids.size(), 102u);
  EXPECT_EQ(ids[1], kA);
  EXPECT_EQ(ids[100], kContA);
  // The limit counts codepoints, not bytes: 60 two-byte letters are one word of 60.
  std::string accented;
  for (int i = 0; i < 60; ++i) accented += "\u00e0";  // à -> a
  EXPECT_EQ(t->Encode(accented, 256).size(), 62u);
}

TEST(WordpieceTokenizerTest, TruncatesKeepingSep) {
  auto t = Small();
  EXPECT_THAT(t->Encode("hello world hello world", 4), ElementsAre(kCls, kHello, kWorld, kSep));
  // Truncation can cut a word's pieces.
  EXPECT_THAT(t->Encode("unaffable", 4), ElementsAre(kCls, kUn, kAff, kSep));
  EXPECT_THAT(t->Encode("hello", 2), ElementsAre(kCls, kSep));
  EXPECT_THAT(t->Encode("hello", 0), ElementsAre(kCls, kSep));
  // A megabyte of text is cut off early, not tokenized in full.
  std::string big;
  for (int i = 0; i < 100000; ++i) big += "hello world ";
  EXPECT_EQ(t->Encode(big, 256).size(), 256u);
}

TEST(WordpieceTokenizerTest, ToleratesInvalidUtf8) {
  auto t = Small();
  // Stray continuation, truncated sequence, overlong '/', a surrogate, bytes past U+10FFFF:
  // each invalid byte is dropped, the rest decodes.
  EXPECT_THAT(t->Encode("hel\x80lo \xe4\xb8 world", 256), ElementsAre(kCls, kHello, kWorld, kSep));
  EXPECT_THAT(t->Encode("a\xc0\xaf" "a", 256), ElementsAre(kCls, kA, kContA, kSep));
  EXPECT_THAT(t->Encode("a\xed\xa0\x80" "a", 256), ElementsAre(kCls, kA, kContA, kSep));
  EXPECT_THAT(t->Encode("a\xf4\x90\x80\x80" "a\xff", 256), ElementsAre(kCls, kA, kContA, kSep));
  EXPECT_THAT(t->Encode("\xe4\xb8", 256), ElementsAre(kCls, kSep));
}

TEST(WordpieceTokenizerTest, VocabularyRules) {
  auto crlf = WordpieceTokenizer::FromVocab("[UNK]\r\n[CLS]\r\n[SEP]\r\nhi\r\n");
  ASSERT_TRUE(crlf.ok()) << crlf.status();
  EXPECT_THAT((*crlf)->Encode("hi", 8), ElementsAre(1, 3, 2));
  EXPECT_EQ(WordpieceTokenizer::FromVocab("[UNK]\n[CLS]\nhi\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WordpieceTokenizer::FromFile("/nonexistent/vocab.txt").status().code(),
            absl::StatusCode::kNotFound);
}

// Exact ids of HF tokenizers (tests/golden/make_embedding_fixtures.py) on the real vocabulary.
TEST(WordpieceTokenizerTest, MatchesReferenceIds) {
  const std::string dir = std::string(SAOLA_SOURCE_DIR) + "/models/all-MiniLM-L6-v2";
  if (!std::filesystem::exists(dir + "/vocab.txt")) {
    GTEST_SKIP() << dir << "/vocab.txt missing: run scripts/fetch-models";
  }
  auto tokenizer = WordpieceTokenizer::FromFile(dir + "/vocab.txt");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::ifstream in(std::string(SAOLA_SOURCE_DIR) + "/tests/golden/embeddings/minilm.json");
  std::stringstream text;
  text << in.rdbuf();
  auto fixture = json::Parse(text.str());
  ASSERT_TRUE(fixture.ok()) << fixture.status();
  int num_cases = 0;
  for (const char* list : {"tokenizer_cases", "embedding_cases"}) {
    for (const json::Value& c : fixture->Find(list)->arr()) {
      std::vector<int32_t> want;
      for (const json::Value& id : c.Find("ids")->arr()) want.push_back(static_cast<int32_t>(id.num()));
      EXPECT_EQ((*tokenizer)->Encode(c.Find("text")->str(), 256), want) << c.Find("text")->str();
      ++num_cases;
    }
  }
  EXPECT_GT(num_cases, 50);
}

}  // namespace
}  // namespace saola::cache
