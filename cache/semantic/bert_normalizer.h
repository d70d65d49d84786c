// BERT's "basic tokenizer" for uncased models: text in, words out, as HF tokenizers'
// BertNormalizer(clean_text, handle_chinese_chars, lowercase, strip_accents = lowercase)
// followed by BertPreTokenizer does it. Per codepoint, in this order:
//
//   1. clean:     NUL, U+FFFD and control characters (C* categories except \t \n \r) are
//                 dropped; whitespace (White_Space, \t \n \r) becomes a space.
//   2. CJK:       each CJK Unified Ideograph (the ranges BERT lists) gets a space either side,
//                 so it becomes a word of its own.
//   3. accents:   canonical decomposition (NFD), then nonspacing marks (Mn) are dropped.
//   4. lowercase: the Unicode lowercase mapping, one codepoint at a time.
//   5. split:     whitespace ends a word; each punctuation character (P* categories and every
//                 printable non-alphanumeric ASCII character) is a word of its own.
//
// Input is any bytes: each byte that does not start a valid UTF-8 sequence (overlong forms and
// surrogates included) decodes as U+FFFD, which step 1 drops. Every step is local to one
// codepoint, so the text is processed as a stream and the caller can stop early (a prompt of a
// megabyte costs only the words that fit the model's window).
//
// One deliberate difference from a full NFD: combining marks are not put in canonical order.
// Reordering can only change the relative order of two adjacent spacing combining marks with a
// nonzero combining class (25 codepoints, such as viramas), as every other mark is dropped.
#pragma once

#include <string_view>

#include "absl/functional/function_ref.h"

namespace saola::cache {

/// Calls `on_word` with each word of `text` (valid UTF-8, never empty) in order, until it
/// returns false.
void ForEachBertWord(std::string_view text, absl::FunctionRef<bool(std::string_view)> on_word);

}  // namespace saola::cache
