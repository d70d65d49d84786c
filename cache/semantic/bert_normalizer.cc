#include "cache/semantic/bert_normalizer.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "cache/semantic/bert_unicode_tables.h"
#include "common/utf8.h"

namespace saola::cache {
namespace {

namespace tables = bert_unicode;

constexpr uint32_t kReplacement = 0xFFFD;

// Decodes one codepoint at `text[*pos]` and advances `*pos`. A byte that does not start a
// valid, shortest-form UTF-8 sequence of a scalar value decodes as U+FFFD and advances by one.
uint32_t DecodeUtf8(std::string_view text, size_t* pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(*pos);
  if (b0 < 0x80) {
    ++*pos;
    return b0;
  }
  int length;
  uint32_t cp;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    ++*pos;
    return kReplacement;
  }
  if (text.size() - *pos < static_cast<size_t>(length)) {
    ++*pos;
    return kReplacement;
  }
  for (int i = 1; i < length; ++i) {
    const uint8_t b = byte(*pos + i);
    if ((b & 0xC0) != 0x80) {
      ++*pos;
      return kReplacement;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++*pos;
    return kReplacement;
  }
  *pos += length;
  return cp;
}

uint8_t Flags(uint32_t cp) {
  const tables::CodepointRange* begin = tables::kCodepointRanges;
  const tables::CodepointRange* end = begin + tables::kNumCodepointRanges;
  // The last range whose start is <= cp; the first range starts at 0.
  const auto* it = std::upper_bound(begin, end, cp, [](uint32_t c, const auto& r) {
    return c < r.start;
  });
  return (it - 1)->flags;
}

// The mapping of `cp` in `table`, or nullptr.
const tables::CodepointMapping* FindMapping(const tables::CodepointMapping* table, size_t size,
                                            uint32_t cp) {
  const auto* end = table + size;
  const auto* it =
      std::lower_bound(table, end, cp, [](const auto& m, uint32_t c) { return m.cp < c; });
  return it != end && it->cp == cp ? it : nullptr;
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks, not all of CJK.
bool IsCjkIdeograph(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// Collects words from the normalized codepoint stream (step 5 of the header).
class WordSplitter {
 public:
  explicit WordSplitter(absl::FunctionRef<bool(std::string_view)> on_word) : on_word_(on_word) {}

  // Returns false once the consumer asked to stop.
  bool Add(uint32_t cp) {
    const uint8_t flags = Flags(cp);
    if (flags & tables::kWhitespace) return Flush();
    if (flags & tables::kPunctuation) {
      if (!Flush()) return false;
      AppendUtf8(cp, &word_);
      return Flush();
    }
    AppendUtf8(cp, &word_);
    return true;
  }

  bool Flush() {
    if (word_.empty()) return true;
    const bool more = on_word_(word_);
    word_.clear();
    return more;
  }

 private:
  absl::FunctionRef<bool(std::string_view)> on_word_;
  std::string word_;
};

// Steps 4 and 5 for one codepoint of the accent-stripped stream.
bool LowercaseAndSplit(uint32_t cp, WordSplitter* splitter) {
  const auto* lower = FindMapping(tables::kLowercase, tables::kNumLowercase, cp);
  if (lower == nullptr) return splitter->Add(cp);
  for (int i = 0; i < lower->length; ++i) {
    if (!splitter->Add(tables::kMappingPool[lower->offset + i])) return false;
  }
  return true;
}

// Steps 3 to 5 for one cleaned codepoint.
bool StripAccentsAndSplit(uint32_t cp, WordSplitter* splitter) {
  // Hangul syllables decompose arithmetically into two or three conjoining jamo (Unicode 3.12).
  constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
  constexpr uint32_t kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
  if (cp >= kSBase && cp < kSBase + 19 * kNCount) {
    const uint32_t s = cp - kSBase;
    if (!LowercaseAndSplit(kLBase + s / kNCount, splitter)) return false;
    if (!LowercaseAndSplit(kVBase + (s % kNCount) / kTCount, splitter)) return false;
    return s % kTCount == 0 || LowercaseAndSplit(kTBase + s % kTCount, splitter);
  }
  const auto* decomposition =
      FindMapping(tables::kDecompositions, tables::kNumDecompositions, cp);
  if (decomposition == nullptr) {
    return (Flags(cp) & tables::kNonspacingMark) || LowercaseAndSplit(cp, splitter);
  }
  for (int i = 0; i < decomposition->length; ++i) {
    const uint32_t part = tables::kMappingPool[decomposition->offset + i];
    if (Flags(part) & tables::kNonspacingMark) continue;
    if (!LowercaseAndSplit(part, splitter)) return false;
  }
  return true;
}

}  // namespace

void ForEachBertWord(std::string_view text, absl::FunctionRef<bool(std::string_view)> on_word) {
  WordSplitter splitter(on_word);
  size_t pos = 0;
  while (pos < text.size()) {
    const uint32_t cp = DecodeUtf8(text, &pos);
    if (cp == '\t' || cp == '\n' || cp == '\r') {
      if (!splitter.Add(' ')) return;
      continue;
    }
    const uint8_t flags = Flags(cp);
    if (cp == 0 || cp == kReplacement || (flags & tables::kControl)) continue;  // step 1
    if (flags & tables::kWhitespace) {
      if (!splitter.Add(' ')) return;
    } else if (IsCjkIdeograph(cp)) {  // step 2 (compatibility ideographs still decompose)
      if (!splitter.Add(' ') || !StripAccentsAndSplit(cp, &splitter) || !splitter.Add(' ')) {
        return;
      }
    } else if (!StripAccentsAndSplit(cp, &splitter)) {
      return;
    }
  }
  splitter.Flush();
}

}  // namespace saola::cache
