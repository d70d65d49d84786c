#include "common/json.h"

#include <gtest/gtest.h>

namespace saola::json {
namespace {

TEST(JsonTest, ParsesNestedDocument) {
  auto v = Parse(R"({"a": [1, 2.5, -3e2], "b": {"c": true, "d": null}, "e": "x"})");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->Find("a")->arr().size(), 3u);
  EXPECT_EQ(v->Find("a")->arr()[2].num(), -300.0);
  EXPECT_TRUE(v->Find("b")->Find("c")->boolean());
  EXPECT_TRUE(v->Find("b")->Find("d")->is_null());
  EXPECT_EQ(v->Find("e")->str(), "x");
  EXPECT_EQ(v->Find("missing"), nullptr);
}

TEST(JsonTest, DecodesEscapesAndSurrogatePairs) {
  auto v = Parse(R"("tab\t nl\n \u00e9 \u4e2d \ud83d\ude00 \"q\" \\")");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->str(), "tab\t nl\n \xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80 \"q\" \\");
}

TEST(JsonTest, LoneSurrogateBecomesReplacementCharacter) {
  auto v = Parse(R"("\ud83d")");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->str(), "\xEF\xBF\xBD");
}

TEST(JsonTest, RejectsMalformedInput) {
  for (const char* bad : {"", "{", "[1,", "{\"a\" 1}", "\"abc", "tru", "1 2", "{\"a\":1,}",
                          "\"\\x\"", "\"\\u12\"", "\"a\nb\""}) {
    auto v = Parse(bad);
    EXPECT_FALSE(v.ok()) << bad;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(JsonTest, RejectsDeepNesting) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  auto v = Parse(deep);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("too deep"), std::string::npos);
}

TEST(JsonTest, QuoteEscapesAndRoundTrips) {
  const std::string s = "a\"b\\c\n\x01 \xE4\xB8\xAD";
  const std::string quoted = Quote(s);
  EXPECT_EQ(quoted, "\"a\\\"b\\\\c\\n\\u0001 \xE4\xB8\xAD\"");
  auto back = Parse(quoted);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->str(), s);
}

TEST(JsonTest, QuoteReplacesInvalidUtf8) {
  // A lone continuation byte, a truncated 3-byte sequence, an overlong encoding.
  EXPECT_EQ(Quote("a\x80z"), "\"a\xEF\xBF\xBDz\"");
  EXPECT_EQ(Quote("\xE4\xB8"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");
  EXPECT_EQ(Quote("\xC0\xAF"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");
}

}  // namespace
}  // namespace saola::json
