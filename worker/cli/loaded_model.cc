#include "worker/cli/loaded_model.h"

#include <cstdio>

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
  return m;
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
