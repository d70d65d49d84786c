// WordPiece tokenizer of BERT uncased models (as HF BertTokenizer / tokenizers' WordPiece with
// do_lower_case): the words of ForEachBertWord (bert_normalizer.h), each split greedily into
// the longest vocabulary pieces from the left, continuations prefixed "##":
//
//   "unaffable" -> "un", "##aff", "##able"
//
// A word with no split into vocabulary pieces, or longer than kMaxCharsPerWord codepoints,
// becomes a single [UNK]. The special tokens [PAD] [UNK] [CLS] [SEP] [MASK], written literally
// in the raw text (case-sensitive, before normalization), are their own ids, as HF's added
// tokens are. The sequence is framed as [CLS] pieces... [SEP] and truncated to a maximum length
// by dropping pieces from the end, so [SEP] stays last. Tokenization stops reading the text
// once the window is full.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace saola::cache {

class WordpieceTokenizer {
 public:
  static constexpr int kMaxCharsPerWord = 100;

  /// Loads a vocab.txt: one token per line, the line number (from 0) is its id. A trailing
  /// "\r" is ignored; when a token repeats, the later line wins (as in HF). [CLS], [SEP] and
  /// [UNK] must be present.
  static absl::StatusOr<std::unique_ptr<WordpieceTokenizer>> FromFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<WordpieceTokenizer>> FromVocab(std::string_view vocab);

  /// Token ids of `text` (any bytes): [CLS], the word pieces, [SEP]; at most `max_tokens` ids
  /// (max_tokens >= 2). Thread-safe.
  std::vector<int32_t> Encode(std::string_view text, int max_tokens) const;

  int vocab_size() const { return vocab_size_; }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t unk_id() const { return unk_id_; }

 private:
  WordpieceTokenizer() = default;

  // Appends the pieces of one word to `ids`.
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;

  // Word-initial pieces, and continuation pieces without their "##", each to its id.
  absl::flat_hash_map<std::string, int32_t> initial_;
  absl::flat_hash_map<std::string, int32_t> continuation_;
  // Special tokens matched in the raw text, and their ids.
  std::vector<std::pair<std::string, int32_t>> special_tokens_;
  int vocab_size_ = 0;
  int32_t cls_id_ = -1;
  int32_t sep_id_ = -1;
  int32_t unk_id_ = -1;
};

}  // namespace saola::cache
