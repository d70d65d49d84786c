#include "worker/model/tokenizer.h"

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/gguf.h"
#include "worker/model/pretokenizer.h"

namespace saola::model {
namespace {

using ::testing::ElementsAre;

const std::string kModelPath =
    std::string(SAOLA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kGoldenPath = std::string(SAOLA_SOURCE_DIR) + "/tests/golden/tokenizer_cases.jsonl";

// The SmolLM2 tokenizer, loaded once; nullptr when the model file is absent.
const Tokenizer* Smol() {
  static const Tokenizer* tokenizer = []() -> const Tokenizer* {
    if (!std::ifstream(kModelPath).good()) return nullptr;
    auto file = GgufFile::Open(kModelPath);
    if (!file.ok()) {
      ADD_FAILURE() << file.status();
      return nullptr;
    }
    auto spec = LoadTokenizerSpec(**file);
    if (!spec.ok()) {
      ADD_FAILURE() << spec.status();
      return nullptr;
    }
    auto tok = Tokenizer::Create(*std::move(spec));
    if (!tok.ok()) {
      ADD_FAILURE() << tok.status();
      return nullptr;
    }
    return tok->release();
  }();
  return tokenizer;
}

#define REQUIRE_SMOL()                                                        \
  const Tokenizer* tok = Smol();                                              \
  if (tok == nullptr) GTEST_SKIP() << "model file absent: " << kModelPath

bool IsValidUtf8(std::string_view s) {
  std::string replaced;
  size_t i = 0;
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    const unsigned char c = b[i];
    size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len; ++k) {
      if ((b[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[i + k] & 0x3F);
    }
    const uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : len == 4 ? 0x10000 : 0;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers (no model needed)
// ---------------------------------------------------------------------------------------------

std::vector<std::string> Pieces(std::string_view pre, std::string_view text) {
  auto p = PreTokenizer::ForName(pre);
  EXPECT_TRUE(p.ok()) << p.status();
  std::vector<uint32_t> cpts;
  DecodeUtf8Lenient(text, &cpts);
  std::vector<size_t> lengths;
  p->Split(cpts, &lengths);
  std::vector<std::string> out;
  size_t begin = 0;
  for (size_t len : lengths) {
    std::string s;
    for (size_t i = begin; i < begin + len; ++i) AppendUtf8(cpts[i], &s);
    out.push_back(s);
    begin += len;
  }
  EXPECT_EQ(begin, cpts.size());
  return out;
}

TEST(PreTokenizerTest, Gpt2SplitsWordsContractionsAndKeepsTrailingSpaces) {
  EXPECT_THAT(Pieces("gpt-2", "Hello world's  end  "),
              ElementsAre("Hello", " world", "'s", " ", " end", "  "));
  EXPECT_THAT(Pieces("gpt2", "x123 !? \n\ny"), ElementsAre("x", "123", " !?", " \n", "\n", "y"));
  // Contractions are case-sensitive in the GPT-2 regex.
  EXPECT_THAT(Pieces("gpt-2", "IT'S it's"), ElementsAre("IT", "'", "S", " it", "'s"));
}

TEST(PreTokenizerTest, SmollmIsolatesEveryDigitBeforeTheGpt2Split) {
  EXPECT_THAT(Pieces("smollm", "abc123 def"), ElementsAre("abc", "1", "2", "3", " def"));
  // The digit split happens first, so the whitespace before a digit ends its piece.
  EXPECT_THAT(Pieces("smollm", "a  1"), ElementsAre("a", "  ", "1"));
  EXPECT_THAT(Pieces("smollm", "x ٣"), ElementsAre("x", " ", "٣"));  // Arabic-Indic digit
}

TEST(PreTokenizerTest, Llama3GroupsDigitsByThreeAndLineBreaks) {
  EXPECT_THAT(Pieces("llama-bpe", "I'M 12345 x\n\n y"),
              ElementsAre("I", "'M", " ", "123", "45", " x", "\n\n", " y"));
  EXPECT_THAT(Pieces("llama3", "a,b!!\n\nc"), ElementsAre("a", ",b", "!!\n\n", "c"));
  // A lone trailing space is a piece of its own.
  EXPECT_THAT(Pieces("llama3", "ok !"), ElementsAre("ok", " !"));
  EXPECT_THAT(Pieces("llama3", "ok "), ElementsAre("ok", " "));
}

TEST(PreTokenizerTest, Qwen2SplitsEveryDigit) {
  EXPECT_THAT(Pieces("qwen2", "I'm 12345"), ElementsAre("I", "'m", " ", "1", "2", "3", "4", "5"));
}

TEST(PreTokenizerTest, DefaultSplitsPunctuationThenNumbersByThree) {
  EXPECT_THAT(Pieces("default", "Hello!!! 12345"), ElementsAre("Hello", "!!!", " ", "123", "45"));
  EXPECT_THAT(Pieces("", "a`b"), ElementsAre("a", "`", "b"));
}

TEST(PreTokenizerTest, UnknownNameIsInvalidArgumentNamingTheKey) {
  auto p = PreTokenizer::ForName("no-such-pre");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("tokenizer.ggml.pre"), std::string::npos);
}

TEST(PreTokenizerTest, DecodesInvalidUtf8LikeLlamaCpp) {
  std::vector<uint32_t> cpts;
  DecodeUtf8Lenient("a\xff\xc3\xa9\xe4\xbd", &cpts);  // invalid byte, é, truncated sequence
  EXPECT_THAT(cpts, ElementsAre('a', 0xFFFD, 0xE9, 0xFFFD, 0xFFFD));
  DecodeUtf8Lenient("\xc0\x80\xed\xa0\x80", &cpts);  // overlong NUL, surrogate: decoded as is
  EXPECT_THAT(cpts, ElementsAre(0, 0xD800));
  DecodeUtf8Lenient("\xf4\x90\x80\x80", &cpts);  // above U+10FFFF: every byte invalid
  EXPECT_THAT(cpts, ElementsAre(0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD));
}

// ---------------------------------------------------------------------------------------------
// A tiny synthetic vocabulary (no model needed)
// ---------------------------------------------------------------------------------------------

// GPT-2 alphabet character for a byte.
std::string Alpha(unsigned char b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  uint32_t cp = b;
  if (!printable) {
    uint32_t n = 256;
    for (int x = 0; x < b; ++x) {
      const bool p = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
      if (!p) ++n;
    }
    cp = n;
  }
  std::string s;
  AppendUtf8(cp, &s);
  return s;
}

TokenizerSpec TinySpec() {
  TokenizerSpec spec;
  spec.pre = "gpt-2";
  spec.tokens = {"<s>", "</s>", "<|im_end|>", "<tool>"};
  spec.token_types = {3, 3, 1, 4};
  for (int b = 0; b < 256; ++b) {
    spec.tokens.push_back(Alpha(static_cast<unsigned char>(b)));
    spec.token_types.push_back(1);
  }
  // Ranks: "l l" < "h e" < "ll o" < "he llo"; "Ġ w" has no result token.
  spec.merges = {"l l", "h e", "ll o", "he llo", "Ġ w", "Ġw o"};
  for (const char* t : {"ll", "he", "llo", "hello", "Ġwo"}) {
    spec.tokens.push_back(t);
    spec.token_types.push_back(1);
  }
  spec.bos_id = 0;
  spec.eos_id = 1;
  return spec;
}

int32_t IdOf(const Tokenizer& t, std::string_view text) { return t.TokenId(text); }

TEST(TokenizerTest, MergesByRankAndFallsBackToBytes) {
  auto t = Tokenizer::Create(TinySpec());
  ASSERT_TRUE(t.ok()) << t.status();
  const Tokenizer& tok = **t;
  EXPECT_THAT(tok.Encode("hello", false, false), ElementsAre(IdOf(tok, "hello")));
  EXPECT_THAT(tok.Encode("hell", false, false), ElementsAre(IdOf(tok, "he"), IdOf(tok, "ll")));
  // " wo" merges to "Ġwo" through "Ġw", which is not a token (only the end result counts).
  EXPECT_THAT(tok.Encode(" wo", false, false), ElementsAre(IdOf(tok, "Ġwo")));
  // " w" stops at "Ġw", not a token: its alphabet bytes (C4 A0 77) fall back one by one, and
  // only "w" has a one-byte token.
  EXPECT_THAT(tok.Encode(" w", false, false), ElementsAre(IdOf(tok, "w")));
  EXPECT_EQ(tok.Decode(tok.Encode("hello wo", false, false)), "hello wo");
}

TEST(TokenizerTest, SplitsSpecialTokensOnlyWhenAsked) {
  auto t = Tokenizer::Create(TinySpec());
  ASSERT_TRUE(t.ok()) << t.status();
  const Tokenizer& tok = **t;
  const int32_t im_end = IdOf(tok, "<|im_end|>");
  // <|im_end|> is a normal token in the file but an end-of-generation control token by text.
  EXPECT_THAT(tok.Encode("he<|im_end|>", false, true), ElementsAre(IdOf(tok, "he"), im_end));
  const auto plain = tok.Encode("he<|im_end|>", false, false);
  EXPECT_GT(plain.size(), 2u);
  // User-defined tokens are split out even without parse_special.
  EXPECT_THAT(tok.Encode("<tool>he", false, false), ElementsAre(3, IdOf(tok, "he")));
  EXPECT_TRUE(tok.IsEndOfGeneration(im_end));
  EXPECT_TRUE(tok.IsEndOfGeneration(1));  // eos
  EXPECT_FALSE(tok.IsEndOfGeneration(0));
  EXPECT_EQ(tok.eot_id(), im_end);
  EXPECT_EQ(tok.TokenBytes(im_end), "<|im_end|>");
  EXPECT_EQ(tok.TokenBytes(im_end, /*render_special=*/false), "");
  EXPECT_EQ(tok.TokenBytes(3, false), "<tool>");  // user-defined tokens always render
}

TEST(TokenizerTest, AddsBosAndEosAsTheSpecSays) {
  TokenizerSpec spec = TinySpec();
  spec.add_bos = true;
  spec.add_eos = true;
  auto t = Tokenizer::Create(spec);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("", true, true), ElementsAre(0, 1));
  EXPECT_TRUE((*t)->Encode("", false, true).empty());
}

TEST(TokenizerTest, RejectsBadSpecs) {
  TokenizerSpec spec = TinySpec();
  spec.pre = "no-such-pre";
  auto t = Tokenizer::Create(spec);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("tokenizer.ggml.pre"), std::string::npos);

  spec = TinySpec();
  spec.model = "llama";
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);

  spec = TinySpec();
  spec.tokens.push_back("he");  // duplicate
  spec.token_types.push_back(1);
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);

  spec = TinySpec();
  spec.bos_id = -1;
  spec.add_bos = true;
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);

  spec = TinySpec();
  spec.eos_id = 100000;
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerTest, Llama3IgnoresMergesForWordsThatAreTokens) {
  TokenizerSpec spec = TinySpec();
  spec.pre = "llama-bpe";
  spec.merges = {"h e", "l l", "he ll"};  // never reaches "hello"...
  auto t = Tokenizer::Create(spec);
  ASSERT_TRUE(t.ok()) << t.status();
  // ...but "hello" is a token, and ignore_merges emits it whole.
  EXPECT_THAT((*t)->Encode("hello", false, false), ElementsAre(IdOf(**t, "hello")));
}

TEST(TokenizerTest, RandomBytesRoundTripInEveryFamily) {
  // With a token for every byte and for every merge result nothing is dropped, so
  // Decode(Encode(x)) is x with invalid UTF-8 replaced as llama.cpp does.
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> len_dist(0, 40);
  std::uniform_int_distribution<int> byte_dist(0, 255);
  for (const char* pre : {"gpt-2", "smollm", "llama-bpe", "qwen2", "default", "falcon"}) {
    TokenizerSpec spec = TinySpec();
    spec.pre = pre;
    spec.tokens.push_back("Ġw");  // the one merge result TinySpec leaves out
    spec.token_types.push_back(1);
    auto t = Tokenizer::Create(spec);
    ASSERT_TRUE(t.ok()) << t.status();
    for (int iter = 0; iter < 500; ++iter) {
      std::string s;
      for (int i = len_dist(rng); i > 0; --i) {
        const int r = byte_dist(rng);
        if (r < 8) {
          s += "<|im_end|>";
        } else if (r < 64) {
          s += " 'sll\n\r\t1";
          s.resize(s.size() - static_cast<size_t>(r % 6));
        } else {
          s.push_back(static_cast<char>(byte_dist(rng)));
        }
      }
      std::vector<uint32_t> cpts;
      DecodeUtf8Lenient(s, &cpts);
      std::string want;
      for (uint32_t cp : cpts) AppendUtf8(cp, &want);
      ASSERT_EQ((*t)->Decode((*t)->Encode(s, true, true)), want) << pre;
      ASSERT_EQ((*t)->Decode((*t)->Encode(s, false, false)), want) << pre;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SmolLM2 (needs models/SmolLM2-135M-Instruct.Q4_1.gguf)
// ---------------------------------------------------------------------------------------------

TEST(SmolTokenizerTest, LoadsTheSpecFromGguf) {
  REQUIRE_SMOL();
  const TokenizerSpec& spec = tok->spec();
  EXPECT_EQ(spec.model, "gpt2");
  EXPECT_EQ(spec.pre, "smollm");
  EXPECT_EQ(spec.tokens.size(), 49152u);
  EXPECT_EQ(spec.tokens[1], "<|im_start|>");
  // Create keeps its own merge table and token flags and frees the spec's copies.
  EXPECT_TRUE(spec.merges.empty());
  EXPECT_TRUE(spec.token_types.empty());
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_FALSE(spec.add_bos);
  EXPECT_FALSE(spec.add_eos);
  EXPECT_NE(spec.chat_template.find("<|im_start|>"), std::string::npos);
}

TEST(SmolTokenizerTest, LoadTokenizerSpecReadsEveryList) {
  REQUIRE_SMOL();
  auto file = GgufFile::Open(kModelPath);
  ASSERT_TRUE(file.ok()) << file.status();
  auto spec = LoadTokenizerSpec(**file);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->tokens.size(), 49152u);
  EXPECT_EQ(spec->tokens[49151], "ectable");
  EXPECT_EQ(spec->token_types.size(), 49152u);
  EXPECT_EQ(spec->merges.size(), 48900u);
  EXPECT_EQ(spec->merges[0], "\xC4\xA0 t");  // "Ġ t"
}

TEST(SmolTokenizerTest, HandpickedIds) {
  REQUIRE_SMOL();
  // Ids from llama.cpp (llama_tokenize, add_special and parse_special on).
  EXPECT_THAT(tok->Encode("Hello world", true, true), ElementsAre(19556, 905));
  EXPECT_THAT(tok->Encode("Hello, world!", true, true), ElementsAre(19556, 28, 905, 17));
  EXPECT_THAT(tok->Encode(" Hello world", true, true), ElementsAre(38699, 905));
  EXPECT_THAT(tok->Encode("hello world ", true, true), ElementsAre(28120, 905, 216));
  EXPECT_THAT(tok->Encode("  ", true, true), ElementsAre(256));
  EXPECT_THAT(tok->Encode("\r\n", true, true), ElementsAre(2738));
  EXPECT_THAT(tok->Encode("The capital of France is Paris.", true, true),
              ElementsAre(504, 3575, 282, 4649, 314, 7042, 30));
  EXPECT_TRUE(tok->Encode("", true, true).empty());
  // Special tokens: split out with parse_special, plain text without.
  const auto chat = tok->Encode("<|im_start|>user\nHi<|im_end|>\n", true, true);
  ASSERT_GE(chat.size(), 3u);
  EXPECT_EQ(chat.front(), 1);
  EXPECT_NE(std::find(chat.begin(), chat.end(), 2), chat.end());
  const auto plain = tok->Encode("<|im_start|>", false, false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(tok->Decode(plain), "<|im_start|>");
}

TEST(SmolTokenizerTest, EndOfGenerationFollowsLlamaCppRules) {
  REQUIRE_SMOL();
  EXPECT_TRUE(tok->IsEndOfGeneration(0));   // <|endoftext|>
  EXPECT_TRUE(tok->IsEndOfGeneration(2));   // <|im_end|> (eos)
  EXPECT_TRUE(tok->IsEndOfGeneration(4));   // <reponame>: llama.cpp's FIM "repo" token
  EXPECT_FALSE(tok->IsEndOfGeneration(1));  // <|im_start|>
  EXPECT_FALSE(tok->IsEndOfGeneration(19556));
  EXPECT_FALSE(tok->IsEndOfGeneration(-1));
  EXPECT_FALSE(tok->IsEndOfGeneration(49152));
}

TEST(SmolTokenizerTest, MatchesLlamaCppOnEveryGoldenCase) {
  REQUIRE_SMOL();
  std::ifstream in(kGoldenPath);
  if (!in.good()) GTEST_SKIP() << "golden file absent: " << kGoldenPath;
  std::string line;
  int num_cases = 0, num_equal = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto doc = json::Parse(line);
    ASSERT_TRUE(doc.ok()) << doc.status() << " in " << line;
    const json::Value* text = doc->Find("text");
    const json::Value* ids = doc->Find("ids");
    ASSERT_TRUE(text != nullptr && text->is_string() && ids != nullptr && ids->is_array());
    std::vector<int32_t> want;
    for (const json::Value& v : ids->arr()) want.push_back(static_cast<int32_t>(v.num()));
    const std::vector<int32_t> got = tok->Encode(text->str(), true, true);
    ++num_cases;
    if (got == want) {
      ++num_equal;
    } else {
      ADD_FAILURE() << "ids differ for " << json::Quote(text->str()) << "\n  want "
                    << ::testing::PrintToString(want) << "\n  got  "
                    << ::testing::PrintToString(got);
    }
  }
  std::printf("golden parity: %d/%d identical\n", num_equal, num_cases);
  EXPECT_GT(num_cases, 0);
  EXPECT_EQ(num_equal, num_cases);
}

// Extra oracle cases, when SAOLA_TOKENIZER_ORACLE_CASES names a JSON-lines file of
// {"hex": <input bytes in hex>, "parse_special": bool, "ids": [...]} made with llama_tokenize
// (add_special on), e.g. random and invalid UTF-8 byte strings. SAOLA_TOKENIZER_ORACLE_MODEL
// names another GGUF file to tokenize with (e.g. SmolLM2's vocabulary with another
// tokenizer.ggml.pre, to check the other pre-tokenizer families).
TEST(SmolTokenizerTest, MatchesOracleCasesFromEnvironment) {
  const char* path = std::getenv("SAOLA_TOKENIZER_ORACLE_CASES");
  if (path == nullptr) GTEST_SKIP() << "SAOLA_TOKENIZER_ORACLE_CASES not set";
  const Tokenizer* tok = Smol();
  std::unique_ptr<Tokenizer> other;
  if (const char* model = std::getenv("SAOLA_TOKENIZER_ORACLE_MODEL")) {
    auto file = GgufFile::Open(model);
    ASSERT_TRUE(file.ok()) << file.status();
    auto spec = LoadTokenizerSpec(**file);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto created = Tokenizer::Create(*std::move(spec));
    ASSERT_TRUE(created.ok()) << created.status();
    other = *std::move(created);
    tok = other.get();
    std::printf("oracle model: %s (pre %s)\n", model, tok->spec().pre.c_str());
  }
  if (tok == nullptr) GTEST_SKIP() << "model file absent: " << kModelPath;
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path;
  int num_cases = 0, num_equal = 0;
  for (std::string line; std::getline(in, line);) {
    auto doc = json::Parse(line);
    ASSERT_TRUE(doc.ok()) << doc.status();
    const std::string& hex = doc->Find("hex")->str();
    std::string bytes;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    const bool parse_special = doc->Find("parse_special")->boolean();
    std::vector<int32_t> want;
    for (const json::Value& v : doc->Find("ids")->arr()) want.push_back(static_cast<int32_t>(v.num()));
    ++num_cases;
    if (tok->Encode(bytes, true, parse_special) == want) {
      ++num_equal;
    } else if (num_cases - num_equal <= 10) {
      ADD_FAILURE() << "ids differ for hex " << hex << " parse_special=" << parse_special
                    << "\n  want " << ::testing::PrintToString(want) << "\n  got  "
                    << ::testing::PrintToString(tok->Encode(bytes, true, parse_special));
    }
  }
  std::printf("oracle parity: %d/%d identical\n", num_equal, num_cases);
  EXPECT_EQ(num_equal, num_cases);
}

TEST(SmolTokenizerTest, DecodeInvertsEncodeForValidUtf8) {
  REQUIRE_SMOL();
  std::vector<std::string> texts = {
      "Hello world", "  leading and trailing  ", "tabs\tand\nnewlines\r\n", "naïve café ñ",
      "日本語のテキスト", "emoji 😀👍🏽 family 👨‍👩‍👧", "math ∑ x² ≤ ∞", "<|im_start|>user\nhi<|im_end|>",
      "code: for (int i = 0; i < 10; ++i) { x += i; }", "Ελληνικά Русский العربية עברית हिन्दी"};
  std::ifstream in(kGoldenPath);
  for (std::string line; std::getline(in, line);) {
    auto doc = json::Parse(line);
    if (doc.ok() && doc->Find("text") != nullptr) texts.push_back(doc->Find("text")->str());
  }
  for (const std::string& text : texts) {
    if (!IsValidUtf8(text)) continue;
    EXPECT_EQ(tok->Decode(tok->Encode(text, true, true)), text) << json::Quote(text);
    EXPECT_EQ(tok->Decode(tok->Encode(text, false, false)), text) << json::Quote(text);
  }
}

TEST(SmolTokenizerTest, StreamDecoderNeverSplitsUtf8) {
  REQUIRE_SMOL();
  for (const std::string text : {"😀 emoji 👍🏽!", "你好，世界。漢字かな交じり文", "mixed é 🎉 中 x"}) {
    const std::vector<int32_t> ids = tok->Encode(text, false, false);
    StreamDecoder stream(*tok);
    std::string joined;
    int num_empty = 0;
    for (int32_t id : ids) {
      const std::string piece = stream.Push(id);
      EXPECT_TRUE(IsValidUtf8(piece)) << json::Quote(piece);
      if (piece.empty()) ++num_empty;
      joined += piece;
    }
    joined += stream.Flush();
    EXPECT_EQ(joined, text);
    // Some character spans several tokens, so some pushes must have held bytes back.
    EXPECT_GT(num_empty, 0) << text;
  }
}

TEST(SmolTokenizerTest, StreamDecoderHidesControlTokensByDefault) {
  REQUIRE_SMOL();
  const std::vector<int32_t> ids = tok->Encode("Hi<|im_end|>", false, true);
  StreamDecoder hidden(*tok);
  StreamDecoder shown(*tok, /*render_special=*/true);
  std::string a, b;
  for (int32_t id : ids) {
    a += hidden.Push(id);
    b += shown.Push(id);
  }
  EXPECT_EQ(a + hidden.Flush(), "Hi");
  EXPECT_EQ(b + shown.Flush(), "Hi<|im_end|>");
}

TEST(SmolTokenizerTest, StreamDecoderFlushReplacesInvalidBytes) {
  REQUIRE_SMOL();
  // "😀" split by hand into its byte tokens: the first three bytes alone are incomplete.
  const std::vector<int32_t> ids = tok->Encode("😀", false, false);
  std::string bytes;
  for (int32_t id : ids) bytes += tok->TokenBytes(id);
  ASSERT_EQ(bytes, "😀");
  StreamDecoder stream(*tok);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i) out += stream.Push(ids[i]);
  EXPECT_EQ(out, "");
  EXPECT_EQ(stream.Flush(), "\xEF\xBF\xBD");  // one U+FFFD for the incomplete sequence
  EXPECT_EQ(stream.Flush(), "");
}

// What Decode(Encode(bytes)) gives in llama.cpp: invalid bytes become U+FFFD, and bytes that
// have no token of their own are dropped. SmolLM2 has no token for 21 bytes (0x04, 0x06, 0x13,
// 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5-0xFF) and no merge that involves them, so such
// a byte always ends up alone in a symbol that is not a token, and llama.cpp's byte fallback
// (which looks up the bytes of its GPT-2 alphabet character, e.g. C4 93 for 0x13, as one-byte
// token texts) finds nothing.
std::string LlamaCppRoundTrip(const Tokenizer& tok, std::string_view bytes) {
  std::vector<uint32_t> cpts;
  DecodeUtf8Lenient(bytes, &cpts);
  std::string sanitized;
  for (uint32_t cp : cpts) AppendUtf8(cp, &sanitized);
  std::string out;
  for (char c : sanitized) {
    if (tok.TokenId(Alpha(static_cast<unsigned char>(c))) >= 0) out.push_back(c);
  }
  return out;
}

TEST(SmolTokenizerTest, BytesWithoutATokenAreDropped) {
  REQUIRE_SMOL();
  int num_missing = 0;
  for (int b = 0; b < 256; ++b) num_missing += tok->TokenId(Alpha(b)) < 0 ? 1 : 0;
  EXPECT_EQ(num_missing, 21);
  EXPECT_EQ(tok->Decode(tok->Encode("a\x13" "b", false, false)), "ab");
}

TEST(SmolTokenizerTest, InvalidUtf8BecomesReplacementCharacters) {
  REQUIRE_SMOL();
  auto round_trip = [&](std::string_view s) { return tok->Decode(tok->Encode(s, false, true)); };
  EXPECT_EQ(round_trip("a\xff" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(round_trip("\xe4\xbd"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // truncated sequence
  EXPECT_EQ(round_trip(std::string("\xc0\x80", 2)), std::string(1, '\0'));  // overlong NUL
  EXPECT_EQ(round_trip("\xed\xa0\x80"), "\xed\xa0\x80");  // a surrogate passes through
}

TEST(SmolTokenizerTest, RandomBytesNeverCrashAndRoundTripAsLlamaCppDoes) {
  REQUIRE_SMOL();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> len_dist(0, 48);
  std::uniform_int_distribution<int> byte_dist(0, 255);
  // Mostly random bytes, with some special-token text and UTF-8 spliced in.
  const std::vector<std::string> chunks = {"<|im_start|>", "<|im_end|>", "é", "😀", " ", "\n",
                                           "'s", "12"};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int len = len_dist(rng);
    for (int i = 0; i < len; ++i) {
      if (byte_dist(rng) < 16) {
        s += chunks[byte_dist(rng) % chunks.size()];
      } else {
        s.push_back(static_cast<char>(byte_dist(rng)));
      }
    }
    const std::vector<int32_t> ids = tok->Encode(s, true, true);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size());
    ASSERT_EQ(tok->Decode(ids), LlamaCppRoundTrip(*tok, s)) << json::Quote(s);
    ASSERT_EQ(tok->Decode(tok->Encode(s, false, false)), LlamaCppRoundTrip(*tok, s));
  }
}

TEST(SmolTokenizerTest, EncodesFast) {
  REQUIRE_SMOL();
  std::string text;
  std::ifstream in(kGoldenPath);
  for (std::string line; std::getline(in, line);) {
    auto doc = json::Parse(line);
    if (doc.ok() && doc->Find("text") != nullptr) text += doc->Find("text")->str() + "\n";
  }
  while (text.size() < 64 * 1024) {
    text += "The quick brown fox jumps over the lazy dog 1234567890. Ünïcödé 日本語 😀\n";
  }
  const std::string prompt = text.substr(0, 4096);
  tok->Encode(prompt, true, true);  // warm up
  const auto t0 = std::chrono::steady_clock::now();
  size_t num_tokens = 0;
  const int reps = 20;
  for (int i = 0; i < reps; ++i) num_tokens += tok->Encode(text, true, true).size();
  const auto t1 = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(t1 - t0).count();
  const auto t2 = std::chrono::steady_clock::now();
  const size_t prompt_tokens = tok->Encode(prompt, true, true).size();
  const double prompt_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t2).count();
  std::printf("encode: %.0f tokens/s (%zu bytes x %d), 4 KiB prompt (%zu tokens) in %.3f ms\n",
              num_tokens / seconds, text.size(), reps, prompt_tokens, prompt_ms);
  // Generous bounds (sanitizer builds are much slower than release).
  EXPECT_LT(prompt_ms, 100.0);
  EXPECT_GT(num_tokens / seconds, 50000.0);
}

}  // namespace
}  // namespace saola::model
