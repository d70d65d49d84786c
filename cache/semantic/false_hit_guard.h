// The false-hit guard: a lexical veto on semantic-cache hits.
//
// Sentence embeddings put "What is the capital of France?" and "... of Germany?" at cosine ~0.9,
// as close as many true paraphrases: an embedding encodes the topic and the shape of a question
// and under-weights the one token that changes the answer. No threshold separates the two, so
// the guard does not look at the similarity alone; it extracts "must-match" features from both
// texts and vetoes a hit when any of them disagree. Every feature is something a paraphrase
// preserves (a rewording keeps the numbers, the polarity, the names and who-goes-where) and a
// near-miss changes:
//
//   numbers      digits ("1,000" -> 1000, "2.50" -> 2.5, "1st" -> ordinal 1) and number words
//                ("twenty five" -> 25, "a dozen" -> 12, "third" -> ordinal 3); the multisets
//                must be equal. A bare "one" is not a number (it is usually a pronoun).
//   negation     parity of not/no/never/n't/without/none/nothing/neither/nor/cannot...: "is it
//                safe" vs "is it not safe" differ; a double negation does not.
//   classes      a built-in lexicon of closed classes, each a list of mutually exclusive members
//                with their surface forms: antonym pairs (on/enable/activate vs off/disable,
//                increase/raise vs decrease/reduce/lower, before/after, min/max, buy/sell,
//                upload/download, encrypt/decrypt, ...), units (km/kilometres vs miles, days vs
//                weeks, celsius vs fahrenheit, dollars vs euros), weekdays, months, seasons,
//                relative days, times of day, colours, compass points, family roles, programming
//                languages. For each class used by both texts, the sets of members must be equal.
//                Texts that use a class on one side only are not compared ("enable wifi" vs
//                "make wifi work").
//   entities     no gazetteer: a token capitalized somewhere other than at the start of a
//                sentence, an ALL-CAPS acronym, or a letters+digits token (H100, PS5). Every
//                entity of one text must occur (case-insensitively) as a token of the other, so
//                "capital of france" (lower case) vs "capital of Germany" is still caught.
//   quoted text  "..." `...` and '...' spans must occur verbatim in the other text.
//   identifiers  snake_case, camelCase, dotted.names, paths, --flags, call() tokens must occur
//                verbatim in the other text.
//   direction    the content word after from/to/into/onto/than/towards/in: when both texts use the
//                word and its objects differ while one text's object occurs in the other text,
//                the roles were swapped ("from Paris to London" vs "from London to Paris",
//                "celsius to fahrenheit" vs "fahrenheit to celsius", "A faster than B", "100
//                fahrenheit in celsius" vs "100 celsius in fahrenheit").
//   order        the shared numbers must appear in the same order ("10 / 2" vs "2 / 10"),
//                unless a symmetric marker is present (and, or, vs, plus, times, +, *, compare,
//                between, difference...). Entities are not ordered: "the GDP of Japan" and
//                "Japan's GDP" are the same question, so "did Brazil beat Germany" vs "did
//                Germany beat Brazil" is a known miss of the guard.
//   prefixes     a word on one side and its negating-prefix form on the other (un-, dis-, in-,
//                im-, il-, ir-, non-, de-, anti-): "advantages" vs "disadvantages", "likely" vs
//                "unlikely", "possible" vs "impossible".
//   minimal pair the two texts, articles dropped, have the same words but one: "zoom in" vs
//                "zoom out", "a crocodile and an alligator" vs "a crocodile and a lizard". A
//                rewording rarely changes exactly one word (and when it swaps a synonym, "fix"
//                for "repair", the guard prefers the miss); inflections of the same word
//                ("tire"/"tires") are not a difference.
//   short texts  with few content words one changed word is most of the meaning, so texts with
//                at most `short_text_max_words` content words need `short_text_min_similarity`.
//
// The guard errs on the side of a miss: a vetoed paraphrase costs one model call, a false hit
// serves a wrong answer. The eval (bench/semantic/semantic_eval.cc) measures both rates.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace saola::cache {

/// What the guard compares, extracted once per text (the cache stores it with each entry).
struct GuardFeatures {
  std::vector<std::string> numbers;                      // normalized, sorted
  int negation_parity = 0;                               // 0 or 1
  absl::flat_hash_map<int, uint64_t> class_members;      // class id -> bitmask of members
  std::vector<std::string> entities;                     // lower case
  std::vector<std::string> quoted;                       // verbatim
  std::vector<std::string> identifiers;                  // verbatim
  std::vector<std::pair<std::string, std::string>> directed;  // (from|to|..., object)
  std::vector<std::string> ordered_numbers;  // numbers in text order
  std::vector<std::string> words;  // every word in order, lower case, articles dropped
  bool has_symmetric_marker = false;
  absl::flat_hash_set<std::string> tokens;  // every word, lower case (and possessive-stripped)
  std::string lower_text;                   // the text, lower case (verbatim spans checked here)
  std::string text;                         // the text as given
  int num_content_words = 0;
};

struct GuardOptions {
  /// Texts with at most this many content words (stop words excluded) are "short".
  int short_text_max_words = 1;
  /// Minimum cosine for a hit when either text is short.
  float short_text_min_similarity = 0.93f;
};

struct GuardDecision {
  bool accept = true;
  /// Which feature vetoed ("numbers", "negation", "class:<name>", "entity", ...); empty if none.
  std::string reason;
};

class FalseHitGuard {
 public:
  explicit FalseHitGuard(GuardOptions options = {}) : options_(options) {}

  /// Extracts the features of `text` (any bytes; non-ASCII bytes are kept inside words).
  static GuardFeatures Extract(std::string_view text);
  /// Whether a cached entry with features `cached` may answer `query` at cosine `similarity`.
  GuardDecision Check(const GuardFeatures& query, const GuardFeatures& cached,
                      float similarity) const;
  /// Convenience: Extract both and Check.
  GuardDecision Check(std::string_view query, std::string_view cached, float similarity) const;

 private:
  GuardOptions options_;
};

}  // namespace saola::cache
