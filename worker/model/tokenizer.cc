// Byte-level BPE tokenizer with llama.cpp's exact behaviour (llama-vocab.cpp, "gpt2" vocab).
//
// Encode, step by step:
//   1. Special tokens. Control / user-defined / unknown tokens are split out of the text first,
//      longest text first (the order of llama.cpp's std::sort), each token splitting every raw
//      fragment at all of its occurrences. Without parse_special only user-defined tokens are.
//   2. Pre-tokenization of each raw fragment (pretokenizer.h): lenient UTF-8 decoding, then the
//      splitting passes of the tokenizer.ggml.pre family.
//   3. BPE per word. A word's bytes start as one symbol each; the adjacent pair with the lowest
//      merge rank (ties: leftmost) is merged until no pair has a rank. Merges are matched on
//      raw bytes: every merge's parts and result are named by integers up front (the token with
//      those bytes, else an id past the vocabulary), so a merge lookup is one hash probe on a
//      packed pair of ints and a word never builds a string.
//      (llama.cpp matches the GPT-2 byte-to-unicode text; the mapping is a bijection, so this
//      is the same relation.) With ignore_merges (Llama 3) a word that is a token is emitted
//      whole.
//   4. A final symbol that is not a token falls back per byte of its GPT-2-alphabet text; bytes
//      with no single-byte token are dropped, as in llama.cpp.
//
// Memory: the token texts stay in the spec's StringTable; decoded pieces are one more
// StringTable; the text -> id and bytes -> id maps are sets of 4-byte ids that hash the string
// where it lies; the merge table is keyed by the packed id pair. The spec's merge list and token
// types are freed once the tables are built (bench/tokenizer_memory.cc measures all this).
//
// Decoding maps a token's alphabet text back to bytes; control and unknown tokens render as
// their text, or as nothing when render_special is false (llama_token_to_piece's `special`).
#include "worker/model/tokenizer.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/model/pretokenizer.h"

namespace saola::model {
namespace {

// Token attributes as llama.cpp keeps them: a bit set, since detection rules add kControl.
enum Attr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
};

// absl::string_view is not std::string_view in this Abseil build.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

uint32_t AttrFromType(int32_t type) {
  switch (static_cast<TokenType>(type)) {
    case TokenType::kUnknown: return kAttrUnknown;
    case TokenType::kUnused: return kAttrUnused;
    case TokenType::kNormal: return kAttrNormal;
    case TokenType::kControl: return kAttrControl;
    case TokenType::kUserDefined: return kAttrUserDefined;
    case TokenType::kByte: return kAttrByte;
    default: return kAttrUndefined;
  }
}

// GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for themselves, the other 68
// bytes for U+0100.. in byte order.
struct ByteAlphabet {
  uint32_t byte_to_cp[256];
  int16_t cp_to_byte[0x144];  // -1 when the codepoint is not in the alphabet

  ByteAlphabet() {
    std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), -1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      byte_to_cp[b] = printable ? b : next++;
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }

  int ByteOf(uint32_t cp) const { return cp < 0x144 ? cp_to_byte[cp] : -1; }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// Raw bytes of alphabet text, or false when `text` is not canonical UTF-8 made only of
// alphabet characters (such a token can never equal the text BPE produces).
bool AlphabetToBytes(std::string_view text, std::string* raw) {
  raw->clear();
  std::vector<uint32_t> cpts;
  DecodeUtf8Lenient(text, &cpts);
  std::string canonical;
  for (uint32_t cp : cpts) {
    const int b = Alphabet().ByteOf(cp);
    if (b < 0) return false;
    raw->push_back(static_cast<char>(b));
    AppendUtf8(cp, &canonical);
  }
  return canonical == text;
}

// llama.cpp's llama_decode_text: each character of a normal token's text mapped back to its
// byte; a character outside the alphabet renders as "[UNK_BYTE_0x<hex>" + text + "]".
std::string DecodeNormalPiece(std::string_view text) {
  std::vector<uint32_t> cpts;
  DecodeUtf8Lenient(text, &cpts);
  std::string out;
  for (uint32_t cp : cpts) {
    const int b = Alphabet().ByteOf(cp);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
      continue;
    }
    std::string utf8;
    AppendUtf8(cp, &utf8);
    out += "[UNK_BYTE_0x";
    for (unsigned char c : utf8) out += absl::StrFormat("%02x", c);
    out.append(text);
    out += ']';
  }
  return out;
}

// Byte tokens ("<0x0A>"): the hex digits at offset 3, parsed as strtol does.
std::string BytePiece(std::string_view text) {
  if (text.size() < 3) return std::string();
  const std::string hex(text.substr(3, 2));
  return std::string(1, static_cast<char>(std::strtol(hex.c_str(), nullptr, 16)));
}

// Token texts llama.cpp recognises, in the order it lists them (llama-vocab.cpp, load()).
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"};
constexpr std::string_view kEomTexts[] = {"<|eom_id|>"};
constexpr std::string_view kFimPreTexts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>"};
constexpr std::string_view kFimSufTexts[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
    "<|code_suffix|>", "<|suffix|>"};
constexpr std::string_view kFimMidTexts[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
    "<|code_middle|>", "<|middle|>"};
constexpr std::string_view kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                             "[PAD]"};
constexpr std::string_view kFimRepTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                             "<REPO>", "<reponame>"};
constexpr std::string_view kFimSepTexts[] = {"<|file_sep|>"};
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~["};

template <size_t N>
bool TextIn(std::string_view text, const std::string_view (&list)[N]) {
  return std::find(std::begin(list), std::end(list), text) != std::end(list);
}

struct Merge {
  int32_t rank;
  int32_t result;  // id of left + right (see Impl::merges)
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// One BPE symbol: a span of the word's bytes.
struct Symbol {
  int32_t start;
  int32_t len;     // 0 once merged into its left neighbour
  int32_t piece;   // id of the span's bytes (see Impl::merges), -1 when it has none
  int32_t prev;
  int32_t next;
};

struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t len;     // left.len + right.len when pushed; a mismatch at pop means it is stale
  int32_t result;
};

// Heap order: lowest rank first, then leftmost (llama.cpp's llm_bigram_bpe::comparator).
bool BigramAfter(const Bigram& a, const Bigram& b) {
  return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
}

}  // namespace

struct Tokenizer::Impl {
  // Sets of token ids looked up by a string of each id (its text, or its raw bytes): the ids are
  // the stored keys, the strings stay where they are, so a slot costs 4 bytes, not a
  // std::string. Lookups by std::string_view hash the string the same way.
  enum class Key { kText, kRaw };
  template <Key kKey>
  struct IdHash {
    using is_transparent = void;
    const Impl* impl = nullptr;
    size_t operator()(std::string_view s) const {
      return absl::Hash<absl::string_view>()(AbslView(s));
    }
    size_t operator()(int32_t id) const { return (*this)(impl->KeyOf<kKey>(id)); }
  };
  template <Key kKey>
  struct IdEq {
    using is_transparent = void;
    const Impl* impl = nullptr;
    bool operator()(int32_t a, int32_t b) const {
      return impl->KeyOf<kKey>(a) == impl->KeyOf<kKey>(b);
    }
    bool operator()(int32_t a, std::string_view b) const { return impl->KeyOf<kKey>(a) == b; }
    bool operator()(std::string_view a, int32_t b) const { return a == impl->KeyOf<kKey>(b); }
  };
  template <Key kKey>
  using IdSet = absl::flat_hash_set<int32_t, IdHash<kKey>, IdEq<kKey>>;

  // What RawOf(id) is: raw bytes exist only for tokens whose text is all GPT-2 alphabet.
  enum RawState : uint8_t { kNoRaw, kRawIsPiece, kRawStored };

  TokenizerSpec spec;  // tokens are the token texts; merges and token_types freed after Create
  PreTokenizer pre;
  int32_t n = 0;  // vocabulary size

  absl::node_hash_map<int32_t, std::string> renamed;  // empty tokens' texts, "[EMPTY_<id>]"
  std::vector<uint8_t> attrs;     // Attr bits
  StringTable pieces;             // bytes each token decodes to (special tokens as text)
  std::vector<uint8_t> raw_state;  // RawState of each token
  absl::node_hash_map<int32_t, std::string> raw_stored;  // raw bytes that differ from the piece
  IdSet<Key::kText> text_to_id;
  IdSet<Key::kRaw> bytes_to_id;  // alphabet tokens by raw bytes (the lowest id of equal ones)
  std::vector<int32_t> special_tokens;  // splitting order of step 1
  std::vector<bool> eog;
  int32_t eot_id = -1;

  // Merges by the pair of their parts' ids. A byte string in the merge table is identified by
  // its token (the bytes_to_id entry) when it has one, else by an id from n up.
  absl::flat_hash_map<uint64_t, Merge> merges;
  int32_t byte_piece[256];     // id of each single byte as above, or -1
  int32_t byte_token[256];     // token whose bytes are this single byte, or -1
  std::vector<int32_t> byte_fallback[256];  // tokens for a byte no token covers (step 4)

  Impl(TokenizerSpec s, PreTokenizer p)
      : spec(std::move(s)),
        pre(std::move(p)),
        text_to_id(0, IdHash<Key::kText>{this}, IdEq<Key::kText>{this}),
        bytes_to_id(0, IdHash<Key::kRaw>{this}, IdEq<Key::kRaw>{this}) {}
  Impl(const Impl&) = delete;  // the sets' functors point at this Impl
  Impl& operator=(const Impl&) = delete;

  // Token text: spec.tokens, with an empty one renamed "[EMPTY_<id>]" as llama.cpp does.
  std::string_view Text(int32_t id) const {
    const std::string_view text = spec.tokens[id];
    return text.empty() ? std::string_view(renamed.at(id)) : text;
  }
  // The token's bytes when its text is canonical GPT-2 alphabet text (see AlphabetToBytes);
  // only called for ids with raw_state != kNoRaw.
  std::string_view Raw(int32_t id) const {
    return raw_state[id] == kRawIsPiece ? pieces[id] : std::string_view(raw_stored.at(id));
  }
  template <Key kKey>
  std::string_view KeyOf(int32_t id) const {
    return kKey == Key::kText ? Text(id) : Raw(id);
  }
  // The token whose raw bytes are `bytes`, or -1.
  int32_t TokenOfBytes(std::string_view bytes) const {
    auto it = bytes_to_id.find(bytes);
    return it == bytes_to_id.end() ? -1 : *it;
  }

  absl::Status BuildVocab();
  void DetectSpecialTokens();
  absl::Status BuildPieces();
  absl::Status BuildMerges();
  void Partition(std::string_view text, bool parse_special,
                 std::vector<std::pair<int32_t, std::string_view>>* fragments) const;
  void EncodeFragment(std::string_view text, std::vector<int32_t>* out) const;
  void EncodeWord(std::string_view word, std::vector<Symbol>* symbols,
                  std::vector<Bigram>* heap, std::vector<int32_t>* out) const;
  void EmitSymbol(std::string_view word, const Symbol& sym, std::vector<int32_t>* out) const;
};

absl::Status Tokenizer::Impl::BuildVocab() {
  const size_t count = spec.tokens.size();
  if (count == 0) return absl::InvalidArgumentError("tokenizer.ggml.tokens: empty vocabulary");
  if (count > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("tokenizer.ggml.tokens: too many tokens");
  }
  n = static_cast<int32_t>(count);
  if (!spec.token_types.empty() && spec.token_types.size() < count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tokenizer.ggml.token_type: %d types for %d tokens", spec.token_types.size(), count));
  }
  attrs.resize(n);
  text_to_id.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    if (spec.tokens[i].empty()) renamed.emplace(i, absl::StrCat("[EMPTY_", i, "]"));
    auto [it, inserted] = text_to_id.insert(i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tokenizer.ggml.tokens: duplicate token '%s' (ids %d and %d)", Text(i), *it, i));
    }
    attrs[i] = static_cast<uint8_t>(spec.token_types.empty() ? kAttrNormal
                                                             : AttrFromType(spec.token_types[i]));
  }
  auto check_id = [&](int32_t id, const char* key) -> absl::Status {
    if (id < -1 || id >= n) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: id %d outside the vocabulary", key, id));
    }
    return absl::OkStatus();
  };
  for (auto [id, key] : {std::pair{spec.bos_id, "tokenizer.ggml.bos_token_id"},
                         {spec.eos_id, "tokenizer.ggml.eos_token_id"},
                         {spec.eot_id, "tokenizer.ggml.eot_token_id"},
                         {spec.eom_id, "tokenizer.ggml.eom_token_id"},
                         {spec.fim_pre_id, "tokenizer.ggml.fim_pre_token_id"},
                         {spec.fim_suf_id, "tokenizer.ggml.fim_suf_token_id"},
                         {spec.fim_mid_id, "tokenizer.ggml.fim_mid_token_id"},
                         {spec.fim_pad_id, "tokenizer.ggml.fim_pad_token_id"},
                         {spec.fim_rep_id, "tokenizer.ggml.fim_rep_token_id"},
                         {spec.fim_sep_id, "tokenizer.ggml.fim_sep_token_id"}}) {
    if (absl::Status s = check_id(id, key); !s.ok()) return s;
  }
  if (spec.add_bos && spec.bos_id < 0) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
  }
  if (spec.add_eos && spec.eos_id < 0) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set");
  }
  spec.token_types = std::vector<int32_t>();  // attrs has them now
  return absl::OkStatus();
}

// Each token's decoded bytes (what TokenBytes returns) and raw bytes (what BPE output is matched
// against). For a normal token both are the alphabet text mapped back to bytes, so the raw bytes
// are stored apart only where they differ (byte tokens, some special tokens).
absl::Status Tokenizer::Impl::BuildPieces() {
  pieces.reserve(n, spec.tokens.bytes());
  raw_state.assign(n, kNoRaw);
  std::string piece;
  std::string raw;
  for (int32_t id = 0; id < n; ++id) {
    const uint32_t a = attrs[id];
    const std::string_view text = Text(id);
    piece.clear();
    if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
      piece = text;
    } else if (a & kAttrNormal) {
      piece = DecodeNormalPiece(text);
    } else if (a & kAttrByte) {
      piece = BytePiece(text);
    }  // undefined and unused tokens render as nothing
    if (piece.size() > StringTable::kMaxBytes - pieces.bytes()) {
      return absl::InvalidArgumentError("tokenizer.ggml.tokens: the decoded tokens exceed 4 GiB");
    }
    pieces.push_back(piece);
    if (!AlphabetToBytes(text, &raw)) continue;
    if (raw == piece) {
      raw_state[id] = kRawIsPiece;
    } else {
      raw_state[id] = kRawStored;
      raw_stored.emplace(id, raw);
    }
  }
  pieces.shrink_to_fit();
  bytes_to_id.reserve(n);
  for (int32_t id = 0; id < n; ++id) {
    if (raw_state[id] != kNoRaw) bytes_to_id.insert(id);  // the first of equal bytes wins
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::BuildMerges() {
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    byte_token[b] = TokenOfBytes(std::string_view(&c, 1));
  }
  // Merge strings that are no token, by bytes; only needed while the table is built.
  absl::flat_hash_map<std::string, int32_t> others;
  auto id_of = [&](const std::string& bytes) -> int32_t {
    const int32_t token = TokenOfBytes(bytes);
    if (token >= 0) return token;
    return others.try_emplace(bytes, n + static_cast<int32_t>(others.size())).first->second;
  };
  std::string left, right;
  merges.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string_view line = spec.merges[rank];
    const size_t space = line.find(' ', 1);
    if (space == std::string::npos) continue;  // llama.cpp keeps ("", ""), which never matches
    if (!AlphabetToBytes(line.substr(0, space), &left) ||
        !AlphabetToBytes(line.substr(space + 1), &right) || left.empty() || right.empty()) {
      continue;  // parts outside the byte alphabet can never match a word's symbols
    }
    if (others.size() + 3 > static_cast<size_t>(INT32_MAX - n)) {
      return absl::InvalidArgumentError("tokenizer.ggml.merges: too many distinct merge parts");
    }
    const int32_t l = id_of(left);
    const int32_t r = id_of(right);
    const int32_t result = id_of(left + right);
    merges.try_emplace(PairKey(l, r), Merge{static_cast<int32_t>(rank), result});  // first wins
  }
  for (int b = 0; b < 256; ++b) {
    if (byte_token[b] >= 0) {
      byte_piece[b] = byte_token[b];
    } else {
      auto it = others.find(std::string(1, static_cast<char>(b)));
      byte_piece[b] = it == others.end() ? -1 : it->second;
    }
    // llama.cpp's fallback looks up each byte of the alphabet character's UTF-8 as a
    // one-byte token text.
    std::string alpha;
    AppendUtf8(Alphabet().byte_to_cp[b], &alpha);
    for (char c : alpha) {
      auto t = text_to_id.find(std::string_view(&c, 1));
      if (t != text_to_id.end()) byte_fallback[b].push_back(*t);
    }
  }
  spec.merges.clear();  // the table above replaces them
  return absl::OkStatus();
}

// End-of-turn, FIM and end-of-generation tokens found by text, as llama.cpp's load() does;
// detected tokens become control tokens. Where llama.cpp takes the first match in hash order,
// this takes the lowest id.
void Tokenizer::Impl::DetectSpecialTokens() {
  auto detect = [&](int32_t given, const auto& list) {
    if (given >= 0) return given;
    for (int32_t id = 0; id < n; ++id) {
      if (TextIn(Text(id), list)) {
        attrs[id] |= kAttrControl;
        return id;
      }
    }
    return -1;
  };
  eot_id = detect(spec.eot_id, kEotTexts);
  const int32_t eom = detect(spec.eom_id, kEomTexts);
  detect(spec.fim_pre_id, kFimPreTexts);
  detect(spec.fim_suf_id, kFimSufTexts);
  detect(spec.fim_mid_id, kFimMidTexts);
  const int32_t fim_pad = detect(spec.fim_pad_id, kFimPadTexts);
  const int32_t fim_rep = detect(spec.fim_rep_id, kFimRepTexts);
  const int32_t fim_sep = detect(spec.fim_sep_id, kFimSepTexts);

  eog.assign(n, false);
  for (int32_t id : {fim_pad, fim_rep, fim_sep, spec.eos_id, eot_id, eom}) {
    if (id >= 0) eog[id] = true;
  }
  for (int32_t id = 0; id < n; ++id) {
    const std::string_view t = Text(id);
    if (TextIn(t, kEogTexts)) {
      eog[id] = true;
      attrs[id] |= kAttrControl;
    }
    // gpt-oss: these always render.
    if (t == "<|channel|>" || t == "<|message|>" || t == "<|start|>" || t == "<|constrain|>") {
      attrs[id] = kAttrUserDefined;
    }
  }
  // o200k_harmony / solar-open: "<|end|>" is not end-of-generation there.
  int32_t end_id = -1;
  bool has_return = false, has_call = false, has_flush = false;
  int32_t s_id = -1;
  bool has_tool_response = false;
  for (int32_t id = 0; id < n; ++id) {
    if (!eog[id]) continue;
    const std::string_view t = Text(id);
    if (t == "<|return|>") has_return = true;
    if (t == "<|call|>" || t == "<|calls|>") has_call = true;
    if (t == "<|flush|>") has_flush = true;
    if (t == "<|end|>") end_id = id;
    if (t == "<|tool_response>") has_tool_response = true;
    if (t == "</s>") s_id = id;
  }
  if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
    eog[end_id] = false;
    attrs[end_id] = kAttrUserDefined;
  }
  // gemma4 / paddleocr: "</s>" is not end-of-generation when "<|tool_response>" is.
  if (s_id >= 0 && has_tool_response) {
    eog[s_id] = false;
    attrs[s_id] = kAttrNormal;
  }

  for (int32_t id = 0; id < n; ++id) {
    if (attrs[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_tokens.push_back(id);
  }
  // The same (unstable) sort as llama.cpp, so that equal lengths keep its order.
  std::sort(special_tokens.begin(), special_tokens.end(), [&](int32_t a, int32_t b) {
    return Text(a).size() > Text(b).size();
  });
}

void Tokenizer::Impl::Partition(
    std::string_view text, bool parse_special,
    std::vector<std::pair<int32_t, std::string_view>>* fragments) const {
  // A fragment is (token, {}) or (-1, raw text).
  fragments->assign(1, {-1, text});
  std::vector<std::pair<int32_t, std::string_view>> next;
  for (int32_t id : special_tokens) {
    if (!parse_special && (attrs[id] & (kAttrControl | kAttrUnknown))) continue;
    const std::string_view token = Text(id);
    if (text.find(token) == std::string_view::npos) continue;  // fast path
    next.clear();
    for (const auto& fragment : *fragments) {
      if (fragment.first >= 0) {
        next.push_back(fragment);
        continue;
      }
      std::string_view raw = fragment.second;
      for (size_t at; (at = raw.find(token)) != std::string_view::npos;) {
        if (at > 0) next.push_back({-1, raw.substr(0, at)});
        next.push_back({id, {}});
        raw.remove_prefix(at + token.size());
      }
      if (!raw.empty()) next.push_back({-1, raw});
    }
    fragments->swap(next);
  }
}

void Tokenizer::Impl::EmitSymbol(std::string_view word, const Symbol& sym,
                                 std::vector<int32_t>* out) const {
  int32_t token = -1;
  if (sym.piece >= 0) {
    token = sym.piece < n ? sym.piece : -1;  // ids from n up are merge strings, not tokens
  } else if (sym.len == 1) {
    token = byte_token[static_cast<uint8_t>(word[sym.start])];
  } else {
    token = TokenOfBytes(word.substr(sym.start, sym.len));
  }
  if (token >= 0) {
    out->push_back(token);
    return;
  }
  for (int32_t i = 0; i < sym.len; ++i) {
    const auto& fallback = byte_fallback[static_cast<uint8_t>(word[sym.start + i])];
    out->insert(out->end(), fallback.begin(), fallback.end());
  }
}

void Tokenizer::Impl::EncodeWord(std::string_view word, std::vector<Symbol>* symbols,
                                 std::vector<Bigram>* heap, std::vector<int32_t>* out) const {
  if (pre.ignore_merges()) {
    const int32_t token = TokenOfBytes(word);
    if (token >= 0) {
      out->push_back(token);
      return;
    }
  }
  const int32_t n = static_cast<int32_t>(word.size());
  auto& syms = *symbols;
  syms.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = Symbol{i, 1, byte_piece[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  heap->clear();
  auto try_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0 || syms[left].piece < 0 || syms[right].piece < 0) return;
    auto it = merges.find(PairKey(syms[left].piece, syms[right].piece));
    if (it == merges.end()) return;
    heap->push_back(Bigram{it->second.rank, left, right, syms[left].len + syms[right].len,
                           it->second.result});
    std::push_heap(heap->begin(), heap->end(), BigramAfter);
  };
  for (int32_t i = 1; i < n; ++i) try_pair(i - 1, i);
  while (!heap->empty()) {
    std::pop_heap(heap->begin(), heap->end(), BigramAfter);
    const Bigram b = heap->back();
    heap->pop_back();
    Symbol& left = syms[b.left];
    Symbol& right = syms[b.right];
    // Symbols only grow, so an unchanged total length means both are as when pushed.
    if (left.len == 0 || right.len == 0 || left.len + right.len != b.len) continue;
    left.len += right.len;
    left.piece = b.result;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = b.left;
    try_pair(left.prev, b.left);
    try_pair(b.left, left.next);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) {
    if (syms[i].len > 0) EmitSymbol(word, syms[i], out);
  }
}

void Tokenizer::Impl::EncodeFragment(std::string_view text, std::vector<int32_t>* out) const {
  std::vector<uint32_t> cpts;
  DecodeUtf8Lenient(text, &cpts);
  std::vector<size_t> lengths;
  pre.Split(cpts, &lengths);
  std::string word;
  std::vector<Symbol> symbols;
  std::vector<Bigram> heap;
  size_t begin = 0;
  for (size_t len : lengths) {
    word.clear();
    for (size_t i = begin; i < begin + len; ++i) AppendUtf8(cpts[i], &word);
    begin += len;
    EncodeWord(word, &symbols, &heap, out);
  }
}

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerSpec spec) {
  if (spec.model != "gpt2") {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer.ggml.model: unsupported tokenizer model '", spec.model, "' (only gpt2)"));
  }
  absl::StatusOr<PreTokenizer> pre = PreTokenizer::ForName(spec.pre);
  if (!pre.ok()) return pre.status();
  auto impl = std::make_unique<Impl>(std::move(spec), *std::move(pre));
  if (absl::Status s = impl->BuildVocab(); !s.ok()) return s;
  impl->DetectSpecialTokens();
  if (absl::Status s = impl->BuildPieces(); !s.ok()) return s;
  if (absl::Status s = impl->BuildMerges(); !s.ok()) return s;
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  tokenizer->impl_ = std::move(impl);
  return tokenizer;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && impl_->spec.add_bos) out.push_back(impl_->spec.bos_id);
  if (!text.empty()) {
    std::vector<std::pair<int32_t, std::string_view>> fragments;
    impl_->Partition(text, parse_special, &fragments);
    for (const auto& [token, raw] : fragments) {
      if (token >= 0) {
        out.push_back(token);
      } else {
        impl_->EncodeFragment(raw, &out);
      }
    }
  }
  if (add_special && impl_->spec.add_eos) out.push_back(impl_->spec.eos_id);
  return out;
}

std::string Tokenizer::TokenBytes(int32_t id) const { return TokenBytes(id, true); }

std::string Tokenizer::TokenBytes(int32_t id, bool render_special) const {
  if (id < 0 || id >= vocab_size()) return std::string();
  if (!render_special && IsSpecial(id)) return std::string();
  return std::string(impl_->pieces[id]);
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const { return Decode(ids, true); }

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (!render_special && IsSpecial(id)) continue;
    out += impl_->pieces[id];
  }
  return out;
}

int32_t Tokenizer::vocab_size() const { return impl_->n; }
int32_t Tokenizer::bos_id() const { return impl_->spec.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->spec.eos_id; }
int32_t Tokenizer::eot_id() const { return impl_->eot_id; }

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->eog[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && (impl_->attrs[id] & (kAttrControl | kAttrUnknown));
}

int32_t Tokenizer::TokenId(std::string_view text) const {
  auto it = impl_->text_to_id.find(text);
  return it == impl_->text_to_id.end() ? -1 : *it;
}

const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }

namespace {

// Length of the longest prefix of `s` that is a whole number of UTF-8 sequences or invalid
// bytes, i.e. everything except a trailing sequence that more bytes could still complete.
// Sets `*out` to that prefix with invalid bytes replaced by U+FFFD.
size_t TakeCompleteUtf8(std::string_view s, bool flush, std::string* out) {
  const auto* b = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = b[i];
    if (c < 0x80) {
      out->push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    size_t len = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (no overlongs/surrogates)
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (len == 0) {
      *out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    // Count how many bytes of the sequence are valid (its maximal subpart).
    size_t k = 1;
    while (k < len && i + k < n) {
      const uint8_t d = b[i + k];
      const bool ok = k == 1 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
      if (!ok) break;
      ++k;
    }
    if (k == len) {
      out->append(s.substr(i, len));
      i += len;
    } else if (i + k == n && !flush) {
      return i;  // an incomplete sequence at the end: wait for more bytes
    } else {
      *out += "\xEF\xBF\xBD";
      i += k;
    }
  }
  return n;
}

}  // namespace

std::string StreamDecoder::Push(int32_t id) {
  pending_ += tokenizer_.TokenBytes(id, render_special_);
  std::string out;
  const size_t used = TakeCompleteUtf8(pending_, /*flush=*/false, &out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out;
  TakeCompleteUtf8(pending_, /*flush=*/true, &out);
  pending_.clear();
  return out;
}

}  // namespace saola::model
