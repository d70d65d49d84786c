// What a client asks the engine for, and what the engine streams back. The gRPC layer turns
// protobuf requests into RequestSpecs (validating every field) and RequestOutputs into messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/engine/sampler.h"

namespace saola::engine {

using Clock = std::chrono::steady_clock;

inline constexpr char kDefaultTenant[] = "default";

struct RequestSpec {
  std::string id;                      // unique among live requests (Abort uses it)
  std::string tenant = kDefaultTenant; // mixed into the first KV block's hash
  std::vector<int32_t> prompt;         // at least one token
  SamplingParams sampling;
  int32_t max_tokens = 0;              // > 0; prompt + max_tokens fits the context
  bool ignore_eos = false;
  std::vector<std::string> stop;       // stop strings (not emitted)
  std::vector<int32_t> stop_token_ids; // stop after these tokens (emitted)
  Clock::time_point deadline = Clock::time_point::max();
};

enum class FinishReason { kNone, kStop, kLength };

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;
};

/// One streamed piece: the tokens a step produced for one request, and their text.
struct RequestOutput {
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<SampledToken> logprobs;  // one per token when the request asked for them
  // On the last output only:
  bool finished = false;
  FinishReason reason = FinishReason::kNone;
  std::string matched_stop;            // the stop string that ended generation
  Usage usage;
  absl::Status error;                  // not OK: the request failed (cancelled, deadline, ...)
};

/// Receives a request's outputs, in order, on the engine thread. Must not block: implementations
/// queue the output and return. The last call has finished = true or a non-OK error.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void Push(RequestOutput output) = 0;
};

}  // namespace saola::engine
