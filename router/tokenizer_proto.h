// The router tokenizes with the tokenizer its workers describe in GetInfo: no weights needed.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "saola/v1/worker.pb.h"
#include "worker/model/tokenizer.h"

namespace saola::router {

/// Builds a tokenizer from a worker's description; INVALID_ARGUMENT naming the field when the
/// tables are inconsistent (the worker is then not used).
absl::StatusOr<std::unique_ptr<model::Tokenizer>> TokenizerFromProto(
    const saola::v1::Tokenizer& proto);

}  // namespace saola::router
