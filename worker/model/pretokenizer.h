// Pre-tokenizers: split text into the words that byte-level BPE then merges, as llama.cpp does
// for each tokenizer.ggml.pre family.
//
// llama.cpp describes each family as a list of regexes applied one after another: every regex
// re-splits each piece the previous one produced, and the text between matches becomes a piece
// of its own. Its frequent regexes (GPT-2, Llama 3, Qwen2) run as hand-written scanners; the rest
// run through std::regex on a "collapsed" copy of the text where every non-ASCII codepoint is
// replaced by one byte per category. Here every step is a hand-written scanner over codepoints
// that reproduces what llama.cpp's code (scanner or collapsed regex) matches, including its
// quirks: a split never looks past the piece it is splitting, so "\s+(?!\S)" at the end of a
// piece keeps all of the whitespace, and in the Llama 3 scanner a lone trailing space becomes a
// piece of its own.
//
// Text is decoded to codepoints the way llama.cpp does (DecodeUtf8Lenient): an invalid byte
// becomes U+FFFD and decoding resumes at the next byte; overlong forms and surrogates decode to
// whatever value their bits give. One deliberate difference: a 4-byte form above U+10FFFF (which
// makes llama.cpp throw out of llama_tokenize) is treated as an invalid lead byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/utf8.h"  // AppendUtf8, used with DecodeUtf8Lenient

namespace saola::model {

/// Codepoints of `text`, decoded leniently as described above.
void DecodeUtf8Lenient(std::string_view text, std::vector<uint32_t>* cpts);

class PreTokenizer {
 public:
  /// One splitting pass; each names the regex of llama.cpp it reproduces.
  enum class Step {
    kIsolateNumbers,       // \p{N}
    kNumberRuns,           // \p{N}+
    kPunctuationRuns,      // [\p{P}\$\+<=>\^~\|]+
    kPunctuationRunsTick,  // [\p{P}\$\+<=>\^~\|`]+
    kAsciiDigitTriples,    // [0-9][0-9][0-9]
    kGpt2,                 // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kLlama3,               // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
    kQwen2,                // as kLlama3 with \p{N} instead of \p{N}{1,3}
  };

  /// The pre-tokenizer llama.cpp uses for tokenizer.ggml.pre = `name` ("" means "default");
  /// INVALID_ARGUMENT naming tokenizer.ggml.pre for families not implemented here.
  static absl::StatusOr<PreTokenizer> ForName(std::string_view name);

  /// Whether llama.cpp turns BOS on for this family when the file does not say
  /// (tokenizer.ggml.add_bos_token absent).
  static bool AddsBosByDefault(std::string_view name);

  /// Splits `cpts` into pieces; `lengths` receives their lengths in codepoints (they sum to
  /// cpts.size(); none is zero).
  void Split(const std::vector<uint32_t>& cpts, std::vector<size_t>* lengths) const;

  /// Whether a word that is already a token skips the merges (llama.cpp's ignore_merges).
  bool ignore_merges() const { return ignore_merges_; }
  const std::vector<Step>& steps() const { return steps_; }

 private:
  PreTokenizer(std::vector<Step> steps, bool ignore_merges)
      : steps_(std::move(steps)), ignore_merges_(ignore_merges) {}

  std::vector<Step> steps_;
  bool ignore_merges_ = false;
};

}  // namespace saola::model
