#include "worker/model/pretokenizer.h"

#include <algorithm>
#include <initializer_list>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/model/unicode_tables.h"

namespace saola::model {
namespace unicode {

uint16_t Flags(uint32_t cp) {
  // One uint16 per codepoint (2.2 MB), expanded once from the generated ranges.
  static const uint16_t* const table = [] {
    auto* t = new uint16_t[kMaxCodepoint + 1];
    for (size_t i = 0; i < kNumCodepointRanges; ++i) {
      const uint32_t begin = kCodepointRanges[i].start;
      const uint32_t end =
          i + 1 < kNumCodepointRanges ? kCodepointRanges[i + 1].start : kMaxCodepoint + 1;
      std::fill(t + begin, t + end, kCodepointRanges[i].flags);
    }
    return t;
  }();
  return cp <= kMaxCodepoint ? table[cp] : static_cast<uint16_t>(kUndefined);
}

}  // namespace unicode

namespace {

using unicode::Flags;

constexpr uint16_t kWordClass = unicode::kWhitespace | unicode::kLetter | unicode::kNumber;

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace

void DecodeUtf8Lenient(std::string_view text, std::vector<uint32_t>* cpts) {
  cpts->clear();
  cpts->reserve(text.size());
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b = s[i];
    if (b < 0x80) {
      cpts->push_back(b);
      i += 1;
      continue;
    }
    // The length comes from the lead byte alone; only the continuation bytes are checked
    // (no overlong or surrogate checks), as llama.cpp's decoder does.
    size_t len = 0;
    uint32_t cp = 0;
    if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = IsContinuation(s[i + k]);
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (ok && cp <= unicode::kMaxCodepoint) {
      cpts->push_back(cp);
      i += len;
    } else {
      cpts->push_back(0xFFFD);
      i += 1;
    }
  }
}

namespace {

// Splits one piece [begin, end) of the codepoints. Pieces are emitted through Emit(e), which
// closes the current piece at position e (a no-op when nothing has accumulated).
class PieceScanner {
 public:
  PieceScanner(const uint32_t* cpts, size_t begin, size_t end, std::vector<size_t>* out)
      : c_(cpts), begin_(begin), end_(end), prev_(begin), out_(out) {}

  // Flags at p; 0 outside the piece (the scanners never look past the piece they split).
  uint16_t FlagsAt(size_t p) const { return p < end_ ? Flags(c_[p]) : 0; }
  bool InPiece(size_t p) const { return p < end_; }
  uint32_t At(size_t p) const { return c_[p]; }
  size_t begin() const { return begin_; }
  size_t end() const { return end_; }

  void Emit(size_t e) {
    if (e > prev_) out_->push_back(e - prev_);
    prev_ = e;
  }

 private:
  const uint32_t* c_;
  size_t begin_;
  size_t end_;
  size_t prev_;
  std::vector<size_t>* out_;
};

uint32_t AsciiLower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

// Length of the contraction ('s 't 're 've 'm 'll 'd) at pos, or 0. Case-insensitive for the
// Llama 3 family; llama.cpp checks that the characters are inside the piece.
size_t ContractionLength(const PieceScanner& s, size_t pos, bool ignore_case) {
  if (s.At(pos) != '\'' || !s.InPiece(pos + 1)) return 0;
  auto fold = [&](uint32_t c) { return ignore_case ? AsciiLower(c) : c; };
  const uint32_t a = fold(s.At(pos + 1));
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (!s.InPiece(pos + 2)) return 0;
  const uint32_t b = fold(s.At(pos + 2));
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Trailing whitespace rule shared by all scanners: a run of whitespace followed by more text
// in the piece leaves its last character for the next word (\s+(?!\S)); otherwise the run is
// one piece. Returns the new position, or pos when there is no whitespace at pos.
size_t ScanWhitespace(PieceScanner& s, size_t pos) {
  size_t n = 0;
  while (s.FlagsAt(pos + n) & unicode::kWhitespace) ++n;
  if (n > 1 && s.InPiece(pos + n)) {
    s.Emit(pos + n - 1);
    return pos + n - 1;
  }
  if (n > 0) {
    s.Emit(pos + n);
    return pos + n;
  }
  return pos;
}

void SplitGpt2(PieceScanner& s) {
  size_t pos = s.begin();
  while (pos < s.end()) {
    const uint32_t cp = s.At(pos);
    if (const size_t len = ContractionLength(s, pos, /*ignore_case=*/false)) {
      pos += len;
      s.Emit(pos);
      continue;
    }
    // <space>?\p{L}+ | <space>?\p{N}+ | <space>?[^\s\p{L}\p{N}]+
    const size_t word = pos + (cp == ' ' ? 1 : 0);
    const uint16_t f = s.FlagsAt(word);
    if (f & (unicode::kLetter | unicode::kNumber)) {
      const uint16_t cls = f & (unicode::kLetter | unicode::kNumber);
      pos = word;
      while (s.FlagsAt(pos) & cls) ++pos;
      s.Emit(pos);
      continue;
    }
    if (f != 0 && !(f & kWordClass)) {
      pos = word;
      for (uint16_t g = f; g != 0 && !(g & kWordClass); g = s.FlagsAt(++pos)) {
      }
      s.Emit(pos);
      continue;
    }
    const size_t next = ScanWhitespace(s, pos);
    if (next != pos) {
      pos = next;
      continue;
    }
    s.Emit(++pos);
  }
}

// The Llama 3 scanner; max_digits is 3 for Llama 3 and 1 for Qwen2.
void SplitLlama3(PieceScanner& s, size_t max_digits) {
  size_t pos = s.begin();
  while (pos < s.end()) {
    const uint32_t cp = s.At(pos);
    const uint16_t f = s.FlagsAt(pos);
    if (const size_t len = ContractionLength(s, pos, /*ignore_case=*/true)) {
      pos += len;
      s.Emit(pos);
      continue;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (cp != '\r' && cp != '\n' && !(f & unicode::kNumber) &&
        ((f & unicode::kLetter) || (s.FlagsAt(pos + 1) & unicode::kLetter))) {
      ++pos;
      while (s.FlagsAt(pos) & unicode::kLetter) ++pos;
      s.Emit(pos);
      continue;
    }
    // \p{N}{1,max_digits}
    if (f & unicode::kNumber) {
      size_t run = 0;
      while (s.FlagsAt(pos) & unicode::kNumber) {
        ++pos;
        if (++run == max_digits) {
          s.Emit(pos);
          run = 0;
        }
      }
      s.Emit(pos);
      continue;
    }
    // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the space's own flags here, so a
    // space that ends the piece becomes a piece of its own)
    const uint16_t f2 = cp == ' ' ? s.FlagsAt(pos + 1) : f;
    if (!(f2 & kWordClass) && f != 0) {
      pos += cp == ' ' ? 1 : 0;
      for (uint16_t g = f2; g != 0 && !(g & kWordClass); g = s.FlagsAt(++pos)) {
      }
      while (s.InPiece(pos) && (s.At(pos) == '\r' || s.At(pos) == '\n')) ++pos;
      s.Emit(pos);
      continue;
    }
    // \s*[\r\n]+ : whitespace up to and including its last line break
    size_t n = 0;
    size_t last_break = 0;
    while (s.FlagsAt(pos + n) & unicode::kWhitespace) {
      if (s.At(pos + n) == '\r' || s.At(pos + n) == '\n') last_break = pos + n + 1;
      ++n;
    }
    if (last_break > 0) {
      pos = last_break;
      s.Emit(pos);
      continue;
    }
    const size_t next = ScanWhitespace(s, pos);
    if (next != pos) {
      pos = next;
      continue;
    }
    s.Emit(++pos);
  }
}

// Pieces for a regex of the form [set] or [set]+: every match is a piece, and so is the text
// between matches.
template <typename InSet>
void SplitOnSet(PieceScanner& s, bool runs, InSet in_set) {
  size_t pos = s.begin();
  while (pos < s.end()) {
    if (!in_set(s.At(pos))) {
      ++pos;
      continue;
    }
    s.Emit(pos);
    ++pos;
    if (runs) {
      while (pos < s.end() && in_set(s.At(pos))) ++pos;
    }
    s.Emit(pos);
  }
  s.Emit(s.end());
}

bool IsNumber(uint32_t cp) { return Flags(cp) & unicode::kNumber; }

// [\p{P}\$\+<=>\^~\|] (plus ` when with_tick) as llama.cpp's collapsed regex sees it: for ASCII
// the literal list of llama.cpp's \p{P} expansion, which leaves out `, plus the listed symbols;
// beyond ASCII, the punctuation category.
bool IsPunctuationLike(uint32_t cp, bool with_tick) {
  if (cp < 0x80) {
    static constexpr std::string_view kAscii = "!\"#%&'()*,-./:;?@[\\]_{}$+<=>^~|";
    return kAscii.find(static_cast<char>(cp)) != std::string_view::npos ||
           (with_tick && cp == '`');
  }
  const uint16_t f = Flags(cp);
  return (f & unicode::kPunctuation) && !(f & unicode::kWhitespace);
}

void SplitAsciiDigitTriples(PieceScanner& s) {
  auto digit = [&](size_t p) { return p < s.end() && s.At(p) >= '0' && s.At(p) <= '9'; };
  size_t pos = s.begin();
  while (pos < s.end()) {
    if (digit(pos) && digit(pos + 1) && digit(pos + 2)) {
      s.Emit(pos);
      pos += 3;
      s.Emit(pos);
    } else {
      ++pos;
    }
  }
  s.Emit(s.end());
}

void RunStep(PreTokenizer::Step step, PieceScanner& s) {
  using Step = PreTokenizer::Step;
  switch (step) {
    case Step::kIsolateNumbers:
      return SplitOnSet(s, /*runs=*/false, IsNumber);
    case Step::kNumberRuns:
      return SplitOnSet(s, /*runs=*/true, IsNumber);
    case Step::kPunctuationRuns:
      return SplitOnSet(s, true, [](uint32_t cp) { return IsPunctuationLike(cp, false); });
    case Step::kPunctuationRunsTick:
      return SplitOnSet(s, true, [](uint32_t cp) { return IsPunctuationLike(cp, true); });
    case Step::kAsciiDigitTriples:
      return SplitAsciiDigitTriples(s);
    case Step::kGpt2:
      return SplitGpt2(s);
    case Step::kLlama3:
      return SplitLlama3(s, 3);
    case Step::kQwen2:
      return SplitLlama3(s, 1);
  }
}

bool NameIn(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

template <size_t N>
bool NameIn(std::string_view name, const std::string_view (&names)[N]) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

// Families whose tokenizer.ggml.pre names llama.cpp maps to the Llama 3 regex with
// ignore_merges and BOS on by default.
constexpr std::string_view kLlama3Names[] = {
    "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
    "jina-v5-nano"};

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizer::ForName(std::string_view name) {
  using S = Step;
  if (name.empty() || name == "default") {
    return PreTokenizer({S::kPunctuationRuns, S::kGpt2, S::kNumberRuns, S::kAsciiDigitTriples},
                        false);
  }
  if (NameIn(name, kLlama3Names)) return PreTokenizer({S::kLlama3}, true);
  if (NameIn(name, {"dbrx", "smaug-bpe", "chatglm-bpe", "glm4"})) {
    return PreTokenizer({S::kLlama3}, false);
  }
  if (NameIn(name, {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2",
                    "hunyuan", "solar-open"})) {
    return PreTokenizer({S::kQwen2}, false);
  }
  if (NameIn(name, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                    "minerva-7b", "mellum2"})) {
    return PreTokenizer({S::kIsolateNumbers, S::kGpt2}, false);
  }
  // "gpt2" is not a name llama.cpp knows ("gpt-2" is); it is accepted as an alias.
  if (NameIn(name, {"gpt2", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                    "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo", "jais",
                    "trillion", "granite-docling", "exaone4", "jina-v1-en", "jina-v2-code",
                    "roberta-bpe"})) {
    return PreTokenizer({S::kGpt2}, false);
  }
  if (name == "falcon") {
    return PreTokenizer({S::kPunctuationRunsTick, S::kGpt2, S::kAsciiDigitTriples}, false);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer.ggml.pre: unsupported pre-tokenizer '", std::string(name), "'"));
}

bool PreTokenizer::AddsBosByDefault(std::string_view name) {
  return NameIn(name, kLlama3Names) || name == "tekken" || name == "chameleon";
}

void PreTokenizer::Split(const std::vector<uint32_t>& cpts, std::vector<size_t>* lengths) const {
  lengths->clear();
  if (cpts.empty()) return;
  lengths->push_back(cpts.size());
  std::vector<size_t> next;
  for (Step step : steps_) {
    next.clear();
    next.reserve(lengths->size() * 2);
    size_t begin = 0;
    for (size_t len : *lengths) {
      PieceScanner scanner(cpts.data(), begin, begin + len, &next);
      RunStep(step, scanner);
      begin += len;
    }
    lengths->swap(next);
  }
}

}  // namespace saola::model
