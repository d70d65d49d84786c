#include "worker/server/request_builder.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace saola::server {
namespace {

constexpr int kMaxStops = 16;
constexpr size_t kMaxStopBytes = 256;
constexpr int kMaxStopTokenIds = 64;
constexpr uint32_t kMaxTopLogprobs = 20;
constexpr size_t kMaxTenantBytes = 256;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::Status CheckModel(const std::string& requested, const ServedModel& model) {
  if (requested.empty() || requested == model.name) return absl::OkStatus();
  return Invalid(absl::StrFormat("model: unknown model '%s' (this endpoint serves '%s')",
                                 requested, model.name));
}

// Fields shared by both request kinds. `prompt` is already tokenized.
template <typename Request>
absl::StatusOr<engine::RequestSpec> BuildCommon(const Request& request,
                                                std::vector<int32_t> prompt,
                                                const ServedModel& model, uint64_t fresh_seed) {
  RETURN_IF_ERROR(CheckModel(request.model(), model));
  engine::RequestSpec spec;
  ASSIGN_OR_RETURN(spec.sampling, BuildSamplingParams(request.sampling(), fresh_seed));
  if (request.stop_size() > kMaxStops) {
    return Invalid(absl::StrFormat("stop: %d strings, at most %d", request.stop_size(), kMaxStops));
  }
  for (const std::string& stop : request.stop()) {
    if (stop.empty() || stop.size() > kMaxStopBytes) {
      return Invalid(absl::StrFormat("stop: each string must be 1..%d bytes", kMaxStopBytes));
    }
    spec.stop.push_back(stop);
  }
  if (request.stop_token_ids_size() > kMaxStopTokenIds) {
    return Invalid(absl::StrFormat("stop_token_ids: at most %d", kMaxStopTokenIds));
  }
  const int32_t vocab = model.tokenizer->vocab_size();
  for (uint32_t id : request.stop_token_ids()) {
    if (id >= static_cast<uint32_t>(vocab)) {
      return Invalid(absl::StrFormat("stop_token_ids: %u is outside the vocabulary (0..%d)", id,
                                     vocab - 1));
    }
    spec.stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  if (prompt.empty()) return Invalid("prompt: no tokens");
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len >= model.context_limit) {
    return Invalid(absl::StrFormat("prompt: %d tokens leave no room in the context of %d",
                                   prompt_len, model.context_limit));
  }
  if (request.max_tokens() == 0) {
    spec.max_tokens = static_cast<int32_t>(model.context_limit - prompt_len);
  } else if (prompt_len + request.max_tokens() > model.context_limit) {
    return Invalid(absl::StrFormat(
        "max_tokens: prompt (%d tokens) plus max_tokens (%u) exceeds the context of %d tokens",
        prompt_len, request.max_tokens(), model.context_limit));
  } else {
    spec.max_tokens = static_cast<int32_t>(request.max_tokens());
  }
  spec.ignore_eos = request.ignore_eos();
  spec.prompt = std::move(prompt);
  return spec;
}

}  // namespace

absl::StatusOr<engine::SamplingParams> BuildSamplingParams(const saola::v1::SamplingParams& p,
                                                           uint64_t fresh_seed) {
  engine::SamplingParams s;
  s.temperature = p.has_temperature() ? p.temperature() : 1.0f;
  if (!std::isfinite(s.temperature) || s.temperature < 0) {
    return Invalid(absl::StrFormat("sampling.temperature: must be >= 0, got %g", s.temperature));
  }
  s.top_p = p.has_top_p() ? p.top_p() : 1.0f;
  if (!(s.top_p > 0 && s.top_p <= 1)) {
    return Invalid(absl::StrFormat("sampling.top_p: must be in (0, 1], got %g", s.top_p));
  }
  s.top_k = p.has_top_k() ? p.top_k() : 0;
  if (s.top_k < 0) {
    return Invalid(absl::StrFormat("sampling.top_k: must be >= 0 (0 is off), got %d", s.top_k));
  }
  s.min_p = p.has_min_p() ? p.min_p() : 0.0f;
  if (!(s.min_p >= 0 && s.min_p <= 1)) {
    return Invalid(absl::StrFormat("sampling.min_p: must be in [0, 1], got %g", s.min_p));
  }
  s.repetition_penalty = p.has_repetition_penalty() ? p.repetition_penalty() : 1.0f;
  if (!std::isfinite(s.repetition_penalty) || s.repetition_penalty <= 0) {
    return Invalid(absl::StrFormat("sampling.repetition_penalty: must be > 0, got %g",
                                   s.repetition_penalty));
  }
  s.presence_penalty = p.has_presence_penalty() ? p.presence_penalty() : 0.0f;
  if (!(s.presence_penalty >= -2 && s.presence_penalty <= 2)) {
    return Invalid(absl::StrFormat("sampling.presence_penalty: must be in [-2, 2], got %g",
                                   s.presence_penalty));
  }
  s.frequency_penalty = p.has_frequency_penalty() ? p.frequency_penalty() : 0.0f;
  if (!(s.frequency_penalty >= -2 && s.frequency_penalty <= 2)) {
    return Invalid(absl::StrFormat("sampling.frequency_penalty: must be in [-2, 2], got %g",
                                   s.frequency_penalty));
  }
  if (p.top_logprobs() > kMaxTopLogprobs) {
    return Invalid(absl::StrFormat("sampling.top_logprobs: at most %u, got %u", kMaxTopLogprobs,
                                   p.top_logprobs()));
  }
  s.logprobs = p.logprobs();
  s.top_logprobs = static_cast<int32_t>(p.top_logprobs());
  s.seed = p.has_seed() ? p.seed() : fresh_seed;
  return s;
}

absl::StatusOr<engine::RequestSpec> BuildRequestSpec(const saola::v1::GenerateRequest& request,
                                                     const ServedModel& model,
                                                     uint64_t fresh_seed) {
  RETURN_IF_ERROR(CheckModel(request.model(), model));
  const bool has_prompt = !request.prompt().empty();
  const bool has_chat = request.has_chat() && request.chat().messages_size() > 0;
  if (has_prompt == has_chat) {
    return Invalid(has_prompt ? "prompt: set either prompt or chat, not both"
                              : "prompt: empty (set prompt or chat.messages)");
  }
  std::string text;
  if (has_prompt) {
    text = request.prompt();
  } else {
    std::vector<model::ChatMessage> messages;
    for (const saola::v1::ChatMessage& m : request.chat().messages()) {
      messages.push_back({m.role(), m.content()});
    }
    absl::StatusOr<std::string> rendered =
        model::ApplyChatTemplate(model.tokenizer->spec(), messages, true);
    if (!rendered.ok()) return Invalid(absl::StrCat("chat: ", rendered.status().message()));
    text = *std::move(rendered);
  }
  // Special-token text in the prompt is parsed as special tokens, as llama.cpp's server does.
  std::vector<int32_t> prompt = model.tokenizer->Encode(text, /*add_special=*/true,
                                                        /*parse_special=*/true);
  return BuildCommon(request, std::move(prompt), model, fresh_seed);
}

absl::StatusOr<engine::RequestSpec> BuildRequestSpec(
    const saola::v1::WorkerGenerateRequest& request, const ServedModel& model,
    uint64_t fresh_seed) {
  const int32_t vocab = model.tokenizer->vocab_size();
  std::vector<int32_t> prompt;
  prompt.reserve(request.prompt_token_ids_size());
  for (uint32_t id : request.prompt_token_ids()) {
    if (id >= static_cast<uint32_t>(vocab)) {
      return Invalid(absl::StrFormat("prompt_token_ids: %u is outside the vocabulary (0..%d)", id,
                                     vocab - 1));
    }
    prompt.push_back(static_cast<int32_t>(id));
  }
  if (request.tenant().size() > kMaxTenantBytes) {
    return Invalid(absl::StrFormat("tenant: at most %d bytes", kMaxTenantBytes));
  }
  ASSIGN_OR_RETURN(engine::RequestSpec spec,
                   BuildCommon(request, std::move(prompt), model, fresh_seed));
  if (!request.tenant().empty()) spec.tenant = request.tenant();
  spec.id = request.request_id();
  return spec;
}

}  // namespace saola::server
