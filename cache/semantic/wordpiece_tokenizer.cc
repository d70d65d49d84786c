#include "cache/semantic/wordpiece_tokenizer.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cache/semantic/bert_normalizer.h"

namespace saola::cache {
namespace {

constexpr std::string_view kContinuationPrefix = "##";

// Byte offsets of the codepoint starts of `word` (valid UTF-8), plus its size at the end.
void CodepointOffsets(std::string_view word, std::vector<size_t>* offsets) {
  offsets->clear();
  for (size_t i = 0; i < word.size(); ++i) {
    if ((static_cast<uint8_t>(word[i]) & 0xC0) != 0x80) offsets->push_back(i);
  }
  offsets->push_back(word.size());
}

}  // namespace

absl::StatusOr<std::unique_ptr<WordpieceTokenizer>> WordpieceTokenizer::FromFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open vocabulary ", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read vocabulary ", path));
  return FromVocab(text.str());
}

absl::StatusOr<std::unique_ptr<WordpieceTokenizer>> WordpieceTokenizer::FromVocab(
    std::string_view vocab) {
  auto tokenizer = std::unique_ptr<WordpieceTokenizer>(new WordpieceTokenizer());
  int32_t id = 0;
  size_t pos = 0;
  while (pos < vocab.size()) {
    size_t end = vocab.find('\n', pos);
    if (end == std::string_view::npos) end = vocab.size();
    std::string_view token = vocab.substr(pos, end - pos);
    pos = end + 1;
    if (!token.empty() && token.back() == '\r') token.remove_suffix(1);
    if (id == INT32_MAX) return absl::InvalidArgumentError("vocabulary too large");
    if (token.substr(0, kContinuationPrefix.size()) == kContinuationPrefix) {
      tokenizer->continuation_[std::string(token.substr(kContinuationPrefix.size()))] = id;
    }
    // A "##x" token is also a word-initial piece: HF matches the literal text "##x" at a word
    // start, which a word can only hold when '#' is not split off (it always is in BERT).
    tokenizer->initial_[std::string(token)] = id;
    for (std::string_view special : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
      if (token == special) tokenizer->special_tokens_.emplace_back(special, id);
    }
    if (token == "[CLS]") tokenizer->cls_id_ = id;
    if (token == "[SEP]") tokenizer->sep_id_ = id;
    if (token == "[UNK]") tokenizer->unk_id_ = id;
    ++id;
  }
  tokenizer->vocab_size_ = id;
  if (tokenizer->cls_id_ < 0 || tokenizer->sep_id_ < 0 || tokenizer->unk_id_ < 0) {
    return absl::InvalidArgumentError("vocabulary lacks one of [CLS], [SEP], [UNK]");
  }
  return tokenizer;
}

std::vector<int32_t> WordpieceTokenizer::Encode(std::string_view text, int max_tokens) const {
  std::vector<int32_t> ids = {cls_id_};
  const size_t max_pieces = max_tokens > 2 ? static_cast<size_t>(max_tokens) - 2 : 0;
  const auto full = [&] { return ids.size() - 1 >= max_pieces; };
  size_t pos = 0;
  while (!full()) {
    // The text up to the next special token is tokenized as usual; the token is one id.
    size_t next = text.size();
    const std::pair<std::string, int32_t>* special = nullptr;
    for (size_t i = text.find('[', pos); i != std::string_view::npos; i = text.find('[', i + 1)) {
      for (const auto& s : special_tokens_) {
        if (text.compare(i, s.first.size(), s.first) == 0) special = &s;
      }
      if (special != nullptr) {
        next = i;
        break;
      }
    }
    ForEachBertWord(text.substr(pos, next - pos), [&](std::string_view word) {
      EncodeWord(word, &ids);
      return !full();
    });
    if (special == nullptr || full()) break;
    ids.push_back(special->second);
    pos = next + special->first.size();
  }
  if (ids.size() - 1 > max_pieces) ids.resize(max_pieces + 1);
  ids.push_back(sep_id_);
  return ids;
}

void WordpieceTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  thread_local std::vector<size_t> offsets;
  CodepointOffsets(word, &offsets);
  const size_t num_chars = offsets.size() - 1;
  if (num_chars > static_cast<size_t>(kMaxCharsPerWord)) {
    ids->push_back(unk_id_);
    return;
  }
  const size_t first_piece = ids->size();
  size_t start = 0;
  while (start < num_chars) {
    const auto& pieces = start == 0 ? initial_ : continuation_;
    // Longest match first: shrink the candidate from the end of the word.
    int32_t found = -1;
    size_t end = num_chars;
    for (; end > start; --end) {
      // (absl::string_view: this Abseil's is not std::string_view, and only it is hashable.)
      auto it = pieces.find(
          absl::string_view(word.data() + offsets[start], offsets[end] - offsets[start]));
      if (it != pieces.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // no piece fits here: the whole word is unknown
      ids->resize(first_piece);
      ids->push_back(unk_id_);
      return;
    }
    ids->push_back(found);
    start = end;
  }
}

}  // namespace saola::cache
