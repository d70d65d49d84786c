// Turns protobuf requests into engine RequestSpecs. Every field is checked here, before anything
// reaches the engine: a bad request gets INVALID_ARGUMENT with a one-line message that starts
// with the field's name, and changes nothing.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "saola/v1/llm.pb.h"
#include "saola/v1/worker.pb.h"
#include "worker/engine/request.h"
#include "worker/model/tokenizer.h"

namespace saola::server {

/// What the builder needs to know about the served model.
struct ServedModel {
  std::string name;            // GenerateRequest.model must be empty or this
  int32_t context_limit = 0;   // prompt + max_tokens must fit
  const model::Tokenizer* tokenizer = nullptr;
};

/// Sampling defaults for unset fields, and range checks. A request without a seed gets
/// `fresh_seed`.
absl::StatusOr<engine::SamplingParams> BuildSamplingParams(const saola::v1::SamplingParams& proto,
                                                           uint64_t fresh_seed);

/// Renders and tokenizes the prompt or chat of a public request and builds the spec (tenant:
/// the default).
absl::StatusOr<engine::RequestSpec> BuildRequestSpec(const saola::v1::GenerateRequest& request,
                                                     const ServedModel& model,
                                                     uint64_t fresh_seed);

/// Builds the spec of an internal, already tokenized request.
absl::StatusOr<engine::RequestSpec> BuildRequestSpec(
    const saola::v1::WorkerGenerateRequest& request, const ServedModel& model,
    uint64_t fresh_seed);

}  // namespace saola::server
