// LoadTokenizerSpec: the tokenizer.* metadata of a GGUF file, with llama.cpp's defaults for
// what the file leaves out.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/model/gguf.h"
#include "worker/model/pretokenizer.h"
#include "worker/model/tokenizer.h"

namespace saola::model {
namespace {

// An optional token id: `fallback` when absent. Like llama.cpp, an id outside the vocabulary
// keeps the fallback; one that is not an unsigned integer is an error.
absl::StatusOr<int32_t> OptionalId(const GgufFile& file, std::string_view key, size_t num_tokens,
                                   int32_t fallback) {
  if (file.Find(key) == nullptr) return fallback;
  absl::StatusOr<uint64_t> id = file.GetUint(key);
  if (!id.ok()) return id.status();
  if (*id >= num_tokens) return fallback;
  return static_cast<int32_t>(*id);
}

// Copies a string array out of the file into one buffer (the file's strings are not kept).
absl::Status CopyStrings(const GgufStringArray& strings, std::string_view key, StringTable* out) {
  size_t total = 0;
  for (std::string_view s : strings) total += s.size();  // disjoint parts of the file: no overflow
  if (total > StringTable::kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %d bytes of strings, more than the 4 GiB supported", key, total));
  }
  out->reserve(strings.size(), total);
  for (std::string_view s : strings) out->push_back(s);
  return absl::OkStatus();
}

absl::StatusOr<bool> OptionalBool(const GgufFile& file, std::string_view key, bool fallback) {
  if (file.Find(key) == nullptr) return fallback;
  return file.GetBool(key);
}

}  // namespace

absl::StatusOr<TokenizerSpec> LoadTokenizerSpec(const GgufFile& file) {
  TokenizerSpec spec;
  absl::StatusOr<std::string> model = file.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  spec.model = *std::move(model);
  spec.pre.clear();
  if (file.Find("tokenizer.ggml.pre") != nullptr) {
    absl::StatusOr<std::string> pre = file.GetString("tokenizer.ggml.pre");
    if (!pre.ok()) return pre.status();
    spec.pre = *std::move(pre);
  }
  if (spec.pre.empty()) spec.pre = "default";

  absl::StatusOr<const GgufStringArray*> tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  if (absl::Status s = CopyStrings(**tokens, "tokenizer.ggml.tokens", &spec.tokens); !s.ok()) {
    return s;
  }
  const size_t n = spec.tokens.size();

  if (file.Find("tokenizer.ggml.token_type") != nullptr) {
    absl::StatusOr<std::vector<int64_t>> types = file.GetIntArray("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    if (types->size() < n) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.ggml.token_type: ", types->size(),
                                                     " types for ", n, " tokens"));
    }
    spec.token_types.reserve(types->size());
    for (int64_t t : *types) spec.token_types.push_back(static_cast<int32_t>(t));
  }

  if (file.Find("tokenizer.ggml.merges") != nullptr) {
    absl::StatusOr<const GgufStringArray*> merges = file.GetStringArray("tokenizer.ggml.merges");
    if (!merges.ok()) return merges.status();
    if (absl::Status s = CopyStrings(**merges, "tokenizer.ggml.merges", &spec.merges); !s.ok()) {
      return s;
    }
  } else if (spec.model == "gpt2") {
    return absl::InvalidArgumentError("tokenizer.ggml.merges: missing for a gpt2 tokenizer");
  }

  // llama.cpp's defaults for BPE vocabularies (bos = eos = 11 when the file has no ids).
  const int32_t default_special = spec.model == "gpt2" && n > 11 ? 11 : -1;
  struct IdKey {
    const char* key;
    int32_t* id;
    int32_t fallback;
  };
  for (const IdKey& k : {IdKey{"tokenizer.ggml.bos_token_id", &spec.bos_id, default_special},
                         IdKey{"tokenizer.ggml.eos_token_id", &spec.eos_id, default_special},
                         IdKey{"tokenizer.ggml.eot_token_id", &spec.eot_id, -1},
                         IdKey{"tokenizer.ggml.eom_token_id", &spec.eom_id, -1},
                         IdKey{"tokenizer.ggml.fim_pre_token_id", &spec.fim_pre_id, -1},
                         IdKey{"tokenizer.ggml.fim_suf_token_id", &spec.fim_suf_id, -1},
                         IdKey{"tokenizer.ggml.fim_mid_token_id", &spec.fim_mid_id, -1},
                         IdKey{"tokenizer.ggml.fim_pad_token_id", &spec.fim_pad_id, -1},
                         IdKey{"tokenizer.ggml.fim_rep_token_id", &spec.fim_rep_id, -1},
                         IdKey{"tokenizer.ggml.fim_sep_token_id", &spec.fim_sep_id, -1}}) {
    absl::StatusOr<int32_t> id = OptionalId(file, k.key, n, k.fallback);
    if (!id.ok()) return id.status();
    *k.id = *id;
  }
  // The deprecated FIM keys fill in what the current ones leave out.
  for (const IdKey& k : {IdKey{"tokenizer.ggml.prefix_token_id", &spec.fim_pre_id, -1},
                         IdKey{"tokenizer.ggml.suffix_token_id", &spec.fim_suf_id, -1},
                         IdKey{"tokenizer.ggml.middle_token_id", &spec.fim_mid_id, -1}}) {
    absl::StatusOr<int32_t> id = OptionalId(file, k.key, n, *k.id);
    if (!id.ok()) return id.status();
    *k.id = *id;
  }

  absl::StatusOr<bool> add_bos = OptionalBool(file, "tokenizer.ggml.add_bos_token",
                                              PreTokenizer::AddsBosByDefault(spec.pre));
  if (!add_bos.ok()) return add_bos.status();
  spec.add_bos = *add_bos;
  absl::StatusOr<bool> add_eos = OptionalBool(file, "tokenizer.ggml.add_eos_token", false);
  if (!add_eos.ok()) return add_eos.status();
  spec.add_eos = *add_eos;

  if (file.Find("tokenizer.chat_template") != nullptr) {
    absl::StatusOr<std::string> tmpl = file.GetString("tokenizer.chat_template");
    if (!tmpl.ok()) return tmpl.status();
    spec.chat_template = *std::move(tmpl);
  }
  return spec;
}

}  // namespace saola::model
