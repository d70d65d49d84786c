#include "worker/cli/loaded_model.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace saola::cli {

absl::StatusOr<LoadedModel> OpenModel(const std::string& path, bool with_weights, int threads,
                                      int max_batch_tokens) {
  LoadedModel m;
  ASSIGN_OR_RETURN(m.file, model::GgufFile::Open(path));
  ASSIGN_OR_RETURN(model::TokenizerSpec spec, model::LoadTokenizerSpec(*m.file));
  ASSIGN_OR_RETURN(m.tokenizer, model::Tokenizer::Create(std::move(spec)));
  if (!with_weights) return m;
  m.backend = std::make_unique<kernels::cpu::CpuBackend>(threads);
  model::LlamaModel::Options options;
  options.max_batch_tokens = max_batch_tokens;
  ASSIGN_OR_RETURN(m.model, model::LlamaModel::Load(*m.file, *m.backend, options));
  // Every token id the tokenizer can produce must have an embedding row (and every id the model
  // can sample, some text): a mismatch means the file is inconsistent.
  if (m.tokenizer->vocab_size() != m.model->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model: the tokenizer has %d tokens but the embedding table %d rows",
        m.tokenizer->vocab_size(), m.model->config().vocab_size));
  }
  return m;
}

int DefaultThreads() {
  return static_cast<int>(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, 1024));
}

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kPermissionDenied:
      return 2;
    default:
      return 1;
  }
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "saola-worker: %s\n", std::string(status.message()).c_str());
  return ExitCodeFor(status);
}

}  // namespace saola::cli
