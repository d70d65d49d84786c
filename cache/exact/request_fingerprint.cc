#include "cache/exact/request_fingerprint.h"

#include <bit>
#include <cmath>
#include <limits>
#include <optional>

#include "cache/exact/hash128.h"

namespace saola::cache {
namespace {

// Defaults from the comments of proto/saola/v1/llm.proto (SamplingParams).
constexpr float kDefaultTemperature = 1.0f;
constexpr float kDefaultTopP = 1.0f;
constexpr int32_t kDefaultTopK = 0;
constexpr float kDefaultMinP = 0.0f;
constexpr float kDefaultRepetitionPenalty = 1.0f;
constexpr float kDefaultPresencePenalty = 0.0f;
constexpr float kDefaultFrequencyPenalty = 0.0f;

// Appends fixed-width little-endian fields and length-prefixed strings.
class CanonicalWriter {
 public:
  explicit CanonicalWriter(std::string* out) : out_(out) {}

  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  // -0 and +0 sample the same way, and validation rejects NaN; fold them so equal meaning gives
  // equal bytes.
  void F32(float v) {
    if (v == 0.0f) v = 0.0f;
    if (std::isnan(v)) v = std::numeric_limits<float>::quiet_NaN();
    U32(std::bit_cast<uint32_t>(v));
  }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_->append(s.data(), s.size());
  }

 private:
  std::string* out_;
};

// Everything but the tag and the prompt ids; `prompt_ids` is written when given.
std::string Canonical(std::string_view tag, std::string_view tenant, std::string_view model,
                      std::optional<std::span<const int32_t>> prompt_ids,
                      const saola::v1::GenerateRequest& request) {
  std::string out;
  out.reserve(128 + tenant.size() + model.size() + (prompt_ids ? 4 * prompt_ids->size() : 0));
  out.append(tag.data(), tag.size());
  out.push_back('\0');
  CanonicalWriter w(&out);
  w.Str(tenant);
  w.Str(model);
  if (prompt_ids) {
    w.U32(static_cast<uint32_t>(prompt_ids->size()));
    for (int32_t id : *prompt_ids) w.I32(id);
  }

  const saola::v1::SamplingParams& s = request.sampling();
  w.F32(s.has_temperature() ? s.temperature() : kDefaultTemperature);
  w.F32(s.has_top_p() ? s.top_p() : kDefaultTopP);
  w.I32(s.has_top_k() ? s.top_k() : kDefaultTopK);
  w.U8(s.has_seed() ? 1 : 0);
  w.U64(s.has_seed() ? s.seed() : 0);
  w.F32(s.has_min_p() ? s.min_p() : kDefaultMinP);
  w.F32(s.has_repetition_penalty() ? s.repetition_penalty() : kDefaultRepetitionPenalty);
  w.F32(s.has_presence_penalty() ? s.presence_penalty() : kDefaultPresencePenalty);
  w.F32(s.has_frequency_penalty() ? s.frequency_penalty() : kDefaultFrequencyPenalty);
  w.U8(s.logprobs() ? 1 : 0);
  w.U32(s.top_logprobs());

  w.U32(static_cast<uint32_t>(request.stop_size()));
  for (const std::string& stop : request.stop()) w.Str(stop);
  w.U32(static_cast<uint32_t>(request.stop_token_ids_size()));
  for (uint32_t id : request.stop_token_ids()) w.U32(id);
  w.U32(request.max_tokens());
  w.U8(request.ignore_eos() ? 1 : 0);
  return out;
}

}  // namespace

bool IsDeterministic(const saola::v1::SamplingParams& sampling) {
  return (sampling.has_temperature() && sampling.temperature() == 0.0f) || sampling.has_seed();
}

RequestFingerprint FingerprintRequest(std::string_view tenant, std::string_view model,
                                      std::span<const int32_t> prompt_ids,
                                      const saola::v1::GenerateRequest& request) {
  RequestFingerprint fp;
  fp.canonical = Canonical("saola-exact-v1", tenant, model, prompt_ids, request);
  fp.key.reserve(kExactKeyPrefix.size() + 32);
  fp.key.append(kExactKeyPrefix);
  fp.key.append(Hash128Hex(HashBytes128(fp.canonical)));
  return fp;
}

std::string PartitionCanonical(std::string_view tenant, std::string_view model,
                               const saola::v1::GenerateRequest& request) {
  return Canonical("saola-partition-v1", tenant, model, std::nullopt, request);
}

}  // namespace saola::cache
