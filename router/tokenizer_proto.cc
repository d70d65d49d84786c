#include "router/tokenizer_proto.h"

#include "absl/strings/str_cat.h"

namespace saola::router {

absl::StatusOr<std::unique_ptr<model::Tokenizer>> TokenizerFromProto(
    const saola::v1::Tokenizer& proto) {
  model::TokenizerSpec spec;
  spec.model = proto.model();
  spec.pre = proto.pre();
  size_t token_bytes = 0;
  for (const std::string& t : proto.tokens()) token_bytes += t.size();
  spec.tokens.reserve(proto.tokens_size(), token_bytes);
  for (const std::string& t : proto.tokens()) spec.tokens.push_back(t);
  spec.token_types.assign(proto.token_types().begin(), proto.token_types().end());
  for (const std::string& m : proto.merges()) spec.merges.push_back(m);
  spec.bos_id = proto.bos_id();
  spec.eos_id = proto.eos_id();
  spec.eot_id = proto.eot_id();
  spec.add_bos = proto.add_bos();
  spec.add_eos = proto.add_eos();
  spec.chat_template = proto.chat_template();
  absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer =
      model::Tokenizer::Create(std::move(spec));
  if (!tokenizer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer: ", tokenizer.status().message()));
  }
  return tokenizer;
}

}  // namespace saola::router
