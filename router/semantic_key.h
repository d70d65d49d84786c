// What the semantic cache compares. Only the last message of a conversation (or the whole plain
// prompt) is compared by meaning; everything else must match exactly and goes into the
// partition: tenant, model, sampling parameters, stop conditions, max_tokens (the exact cache's
// partition bytes), plus every earlier message and the last message's role. So "What's its
// population?" after a question about France never reuses the answer given after a question
// about Germany.
#pragma once

#include <string>
#include <string_view>

#include "saola/v1/llm.pb.h"

namespace saola::router {

struct SemanticKey {
  std::string partition;
  std::string text;
};

SemanticKey BuildSemanticKey(std::string_view tenant, std::string_view model,
                             const saola::v1::GenerateRequest& request);

}  // namespace saola::router
