// Byte-level BPE tokenizer (GPT-2 style, as llama.cpp's "gpt2" vocab type) built from GGUF metadata.
//
// Encoding: special (control / user-defined) token text is split out first when parse_special is
// set; each remaining fragment is pre-tokenized with the regex family named by tokenizer.ggml.pre
// (e.g. "smollm", "llama-bpe", "gpt2", "qwen2"), mapped to the GPT-2 byte-to-unicode alphabet and
// merged by BPE rank. The ids equal llama.cpp's llama_tokenize on the same file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/string_table.h"

namespace saola::model {

class GgufFile;

/// Token types as GGUF stores them (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5,
  kByte = 6,
};

/// Everything the tokenizer needs, independent of where it came from (GGUF metadata, or the
/// router's copy received over gRPC). The token and merge lists are StringTables (one buffer
/// each, not one std::string per entry) to keep the vocabulary's resident memory small.
struct TokenizerSpec {
  std::string model = "gpt2";          // tokenizer.ggml.model
  std::string pre = "default";         // tokenizer.ggml.pre
  StringTable tokens;                  // tokenizer.ggml.tokens
  std::vector<int32_t> token_types;    // tokenizer.ggml.token_type (empty: all normal)
  StringTable merges;                  // tokenizer.ggml.merges, "left right"
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;                 // end of turn, when the vocab has one
  // Further ids llama.cpp reads (-1: absent, then found by token text as llama.cpp does). The
  // FIM pad/repo/sep tokens and EOM end generation; detected ones become control tokens.
  int32_t eom_id = -1;                 // tokenizer.ggml.eom_token_id
  int32_t fim_pre_id = -1;             // tokenizer.ggml.fim_pre_token_id
  int32_t fim_suf_id = -1;             // tokenizer.ggml.fim_suf_token_id
  int32_t fim_mid_id = -1;             // tokenizer.ggml.fim_mid_token_id
  int32_t fim_pad_id = -1;             // tokenizer.ggml.fim_pad_token_id
  int32_t fim_rep_id = -1;             // tokenizer.ggml.fim_rep_token_id
  int32_t fim_sep_id = -1;             // tokenizer.ggml.fim_sep_token_id
  bool add_bos = false;
  bool add_eos = false;
  std::string chat_template;           // tokenizer.chat_template (Jinja source), may be empty
};

/// Reads a TokenizerSpec from GGUF metadata; INVALID_ARGUMENT naming the key when malformed.
absl::StatusOr<TokenizerSpec> LoadTokenizerSpec(const GgufFile& file);

class Tokenizer {
 public:
  /// Builds the vocab and merge ranks; INVALID_ARGUMENT for unsupported models/pre-tokenizers or
  /// inconsistent tables.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerSpec spec);

  /// Token ids of `text`. add_special adds BOS (and EOS) as the spec says; parse_special
  /// recognises special-token text such as "<|im_start|>" inside `text`.
  std::vector<int32_t> Encode(std::string_view text, bool add_special, bool parse_special) const;

  /// Bytes of one token (byte-level alphabet decoded; special tokens render as their text).
  /// Empty for ids outside the vocabulary.
  std::string TokenBytes(int32_t id) const;
  /// As above; with render_special false, control and unknown tokens (IsSpecial) render as
  /// nothing, as llama_token_to_piece with special=false (use this for user-visible output).
  std::string TokenBytes(int32_t id, bool render_special) const;
  /// Concatenated bytes of ids (may end inside a UTF-8 sequence).
  std::string Decode(const std::vector<int32_t>& ids) const;
  std::string Decode(const std::vector<int32_t>& ids, bool render_special) const;

  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  /// End-of-turn token: the spec's, else found by text (<|eot_id|>, <|im_end|>, ...); -1 if none.
  int32_t eot_id() const;
  /// True for tokens that end generation, by llama.cpp's rules: EOS, EOT, EOM, FIM pad/repo/sep
  /// and tokens whose text is one of llama.cpp's end markers (<|im_end|>, <|endoftext|>,
  /// <|eot_id|>, <end_of_turn>, </s>, ...). For SmolLM2: <|endoftext|>, <|im_end|>, <reponame>.
  bool IsEndOfGeneration(int32_t id) const;
  /// True for control and unknown tokens (hidden when render_special is false).
  bool IsSpecial(int32_t id) const;
  /// Id of the token whose text is exactly `text`, or -1.
  int32_t TokenId(std::string_view text) const;
  /// The spec the tokenizer was created from, less what it no longer needs: `merges` and
  /// `token_types` are empty once Create has built its own compact tables from them (the token
  /// texts, ids, flags and chat template are kept as given).
  const TokenizerSpec& spec() const;

  ~Tokenizer();

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Turns a stream of token ids into text pieces that never split a UTF-8 sequence: bytes of an
/// incomplete trailing sequence are held back until the next token completes them (or Flush).
/// Every piece returned is valid UTF-8: bytes that cannot start or continue a sequence become
/// U+FFFD (one per maximal invalid subpart). By default control tokens such as <|im_end|> render
/// as nothing (user-visible output); render_special=true renders them as their text.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}
  /// The text that becomes complete with `id` (possibly empty).
  std::string Push(int32_t id);
  /// Whatever is held back, with invalid bytes replaced by U+FFFD.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_ = false;
  std::string pending_;
};

/// One chat message.
struct ChatMessage {
  std::string role;
  std::string content;
};

/// Renders messages with the model's chat template (ChatML for SmolLM2, detected from the
/// template source as llama.cpp does) and, with add_generation_prompt, opens the assistant turn.
/// INVALID_ARGUMENT for templates it does not know or roles the template does not allow.
absl::StatusOr<std::string> ApplyChatTemplate(const TokenizerSpec& spec,
                                              const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt);

}  // namespace saola::model
