#include "router/semantic_key.h"

#include <cstdint>

#include "cache/exact/request_fingerprint.h"

namespace saola::router {
namespace {

void AppendString(std::string* out, std::string_view s) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out->append(s);
}

}  // namespace

SemanticKey BuildSemanticKey(std::string_view tenant, std::string_view model,
                             const saola::v1::GenerateRequest& request) {
  SemanticKey key;
  key.partition = cache::PartitionCanonical(tenant, model, request);
  const auto& messages = request.chat().messages();
  if (request.prompt().empty() && !messages.empty()) {
    key.partition.append("chat");
    for (int i = 0; i + 1 < messages.size(); ++i) {
      AppendString(&key.partition, messages[i].role());
      AppendString(&key.partition, messages[i].content());
    }
    AppendString(&key.partition, messages[messages.size() - 1].role());
    key.text = messages[messages.size() - 1].content();
  } else {
    key.partition.append("prompt");
    key.text = request.prompt();
  }
  return key;
}

}  // namespace saola::router
