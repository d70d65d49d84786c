#include "worker/engine/stop_matcher.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace saola::engine {
namespace {

// Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t j = 1; j < len; ++j) {
      const auto c = static_cast<unsigned char>(s[i + j]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Pushes every piece; returns what was emitted, one entry per Push, then the flush (when not
// stopped) as a last entry.
struct Fed {
  std::vector<std::string> emitted;
  std::string text;  // everything emitted, joined
  bool stopped = false;
  std::string matched;
};

Fed Feed(StopMatcher& matcher, const std::vector<std::string>& pieces) {
  Fed run;
  for (const std::string& piece : pieces) {
    StopMatcher::Output out = matcher.Push(piece);
    run.text += out.text;
    run.emitted.push_back(std::move(out.text));
    if (out.stopped) {
      run.stopped = true;
      run.matched = out.matched;
      return run;
    }
  }
  const std::string rest = matcher.Flush();
  run.text += rest;
  run.emitted.push_back(rest);
  return run;
}

Fed Feed(std::vector<std::string> stops, const std::vector<std::string>& pieces) {
  StopMatcher matcher(std::move(stops));
  return Feed(matcher, pieces);
}

using Emitted = std::vector<std::string>;

TEST(StopMatcherTest, NoStopsPassThroughWithNothingHeld) {
  StopMatcher matcher({});
  for (const std::string piece : {"Hel", "lo", " wor", "ld", ""}) {
    const StopMatcher::Output out = matcher.Push(piece);
    EXPECT_EQ(out.text, piece);
    EXPECT_FALSE(out.stopped);
  }
  EXPECT_EQ(matcher.Flush(), "");
}

TEST(StopMatcherTest, EmptyStopStringsAreIgnored) {
  const Fed run = Feed({"", ""}, {"abc", "def"});
  EXPECT_EQ(run.emitted, (Emitted{"abc", "def", ""}));
  EXPECT_FALSE(run.stopped);
}

TEST(StopMatcherTest, TextThatCannotStartAStopIsEmittedAtOnce) {
  const Fed run = Feed({"STOP"}, {"hello", " world", "!"});
  EXPECT_EQ(run.emitted, (Emitted{"hello", " world", "!", ""}));
}

TEST(StopMatcherTest, StopSplitOverTwoPieces) {
  const Fed run = Feed({"</s>"}, {"Hi</", "s>trailing"});
  EXPECT_EQ(run.emitted, (Emitted{"Hi", ""}));
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.matched, "</s>");
}

TEST(StopMatcherTest, StopSplitOverThreePieces) {
  const Fed run = Feed({"\n\nUser:"}, {"The answer is 4", "2\n", "\nUs", "er: more"});
  EXPECT_EQ(run.emitted, (Emitted{"The answer is 4", "2", "", ""}));
  EXPECT_EQ(run.text, "The answer is 42");
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.matched, "\n\nUser:");
}

TEST(StopMatcherTest, APrefixThatDoesNotMatchIsReleased) {
  const Fed run = Feed({"</end>"}, {"a<", "/e", "x", "y"});
  EXPECT_EQ(run.emitted, (Emitted{"a", "", "</ex", "y", ""}));
  EXPECT_FALSE(run.stopped);
  EXPECT_EQ(run.text, "a</exy");
}

TEST(StopMatcherTest, HeldTextIsFlushedAtTheEnd) {
  const Fed run = Feed({"###"}, {"done #", "#"});
  EXPECT_EQ(run.emitted, (Emitted{"done ", "", "##"}));
  EXPECT_FALSE(run.stopped);
}

TEST(StopMatcherTest, TheHeldSuffixRestartsInsideAFailedPrefix) {
  // "aab": the first "a" fails, but "ab" is still the start of "abc".
  const Fed run = Feed({"abc"}, {"a", "a", "b", "c"});
  EXPECT_EQ(run.emitted, (Emitted{"", "a", "", ""}));
  EXPECT_TRUE(run.stopped);
  EXPECT_EQ(run.text, "a");
}

TEST(StopMatcherTest, OverlappingCandidatesEndingTogetherPickTheLeftmost) {
  // "ab" and "b" both end at the same byte: the leftmost (the longer) wins.
  Fed run = Feed({"ab", "b"}, {"xa", "b"});
  EXPECT_EQ(run.text, "x");
  EXPECT_EQ(run.matched, "ab");
  run = Feed({"b", "ab"}, {"xab"});
  EXPECT_EQ(run.text, "x");
  EXPECT_EQ(run.matched, "ab");
}

TEST(StopMatcherTest, TheEarliestEndingMatchWins) {
  // "bc" ends before "abcd" completes, whichever piece boundaries the text has.
  for (const std::vector<std::string>& pieces :
       {std::vector<std::string>{"xabcd"}, {"xa", "bcd"}, {"x", "a", "b", "c", "d"}}) {
    const Fed run = Feed({"abcd", "bc"}, pieces);
    EXPECT_TRUE(run.stopped);
    EXPECT_EQ(run.text, "xa");
    EXPECT_EQ(run.matched, "bc");
  }
}

TEST(StopMatcherTest, SeveralStopsPickTheEarliestInTheText) {
  const Fed run = Feed({"END", "STOP", "."}, {"one STOP two. END"});
  EXPECT_EQ(run.text, "one ");
  EXPECT_EQ(run.matched, "STOP");
  const Fed later = Feed({"END", "STOP", "."}, {"one two", ". END STOP"});
  EXPECT_EQ(later.text, "one two");
  EXPECT_EQ(later.matched, ".");
}

TEST(StopMatcherTest, StopAtTheVeryStart) {
  Fed run = Feed({"Q:"}, {"Q:", "more"});
  EXPECT_EQ(run.emitted, (Emitted{""}));
  EXPECT_TRUE(run.stopped);
  run = Feed({"Q:"}, {"Q", ":"});
  EXPECT_EQ(run.emitted, (Emitted{"", ""}));
  EXPECT_TRUE(run.stopped);
}

TEST(StopMatcherTest, NothingAfterAStop) {
  StopMatcher matcher({"x"});
  EXPECT_TRUE(matcher.Push("abxcd").stopped);
  EXPECT_TRUE(matcher.stopped());
  const StopMatcher::Output after = matcher.Push("more");
  EXPECT_EQ(after.text, "");
  EXPECT_TRUE(after.stopped);
  EXPECT_EQ(after.matched, "x");
  EXPECT_EQ(matcher.Flush(), "");
}

TEST(StopMatcherTest, MultiByteStopStringsKeepEmittedTextValidUtf8) {
  // "日本" is E6 97 A5 E6 9C AC; "日曜" shares the first character and the next lead byte.
  Fed run = Feed({"日本"}, {"今日", "は日", "曜", "日", "本です"});
  EXPECT_EQ(run.emitted, (Emitted{"今", "日は", "日曜", "", ""}));
  EXPECT_EQ(run.text, "今日は日曜");
  EXPECT_TRUE(run.stopped);
  for (const std::string& piece : run.emitted) EXPECT_TRUE(IsValidUtf8(piece)) << piece;

  run = Feed({"é!", "🙂🙃"}, {"café", " ok 🙂", "🙂", "🙃 rest"});
  EXPECT_EQ(run.text, "café ok 🙂");
  EXPECT_EQ(run.matched, "🙂🙃");
  for (const std::string& piece : run.emitted) EXPECT_TRUE(IsValidUtf8(piece)) << piece;
}

// Reference: the text before the earliest-ending (then leftmost) match in the whole text.
Fed Reference(const std::vector<std::string>& stops, const std::string& text) {
  Fed run;
  size_t best_end = std::string::npos;
  size_t best_start = 0;
  for (const std::string& stop : stops) {
    if (stop.empty()) continue;
    const size_t start = text.find(stop);
    if (start == std::string::npos) continue;
    if (start + stop.size() < best_end ||
        (start + stop.size() == best_end && start < best_start)) {
      best_end = start + stop.size();
      best_start = start;
      run.matched = stop;
    }
  }
  run.stopped = best_end != std::string::npos;
  run.text = run.stopped ? text.substr(0, best_start) : text;
  return run;
}

TEST(StopMatcherTest, RandomTextsMatchTheWholeTextReferenceWhateverThePieces) {
  // A small alphabet of 1- to 4-byte characters, so stops recur and share prefixes.
  const std::vector<std::string> alphabet = {"a", "b", "\n", "é", "日", "本", "🙂"};
  std::mt19937 rng(2024);
  auto random_string = [&](int min_chars, int max_chars) {
    std::string s;
    const int n = std::uniform_int_distribution<int>(min_chars, max_chars)(rng);
    for (int i = 0; i < n; ++i) s += alphabet[rng() % alphabet.size()];
    return s;
  };
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops;
    const int num_stops = static_cast<int>(rng() % 4);
    for (int i = 0; i < num_stops; ++i) stops.push_back(random_string(0, 4));
    // Pieces of whole characters, as StreamDecoder gives them.
    std::vector<std::string> pieces;
    const int num_pieces = static_cast<int>(rng() % 12);
    for (int i = 0; i < num_pieces; ++i) pieces.push_back(random_string(0, 3));
    std::string text;
    for (const std::string& p : pieces) text += p;

    const Fed expected = Reference(stops, text);
    const Fed got = Feed(stops, pieces);
    ASSERT_EQ(got.stopped, expected.stopped) << "trial " << trial;
    ASSERT_EQ(got.text, expected.text) << "trial " << trial;
    ASSERT_EQ(got.matched, expected.matched) << "trial " << trial;
    for (const std::string& e : got.emitted) ASSERT_TRUE(IsValidUtf8(e)) << "trial " << trial;
  }
}

TEST(StopMatcherTest, LongOutputsKeepOnlyAShortTail) {
  // A million pieces that keep starting the stop string but never finish it: each Push must cost
  // the same, and everything but the final held prefix comes out as it goes.
  StopMatcher matcher({"<|im_end|>"});
  size_t emitted = 0;
  std::string last;
  for (int i = 0; i < 1000000; ++i) {
    const StopMatcher::Output out = matcher.Push(i % 2 == 0 ? "<|im" : "x");
    ASSERT_FALSE(out.stopped);
    emitted += out.text.size();
    last = out.text;
  }
  EXPECT_EQ(last, "<|imx");
  EXPECT_EQ(emitted, 500000u * 5);
  EXPECT_EQ(matcher.Flush(), "");
}

}  // namespace
}  // namespace saola::engine
