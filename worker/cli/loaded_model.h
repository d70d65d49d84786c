// Opens a GGUF model for the CLI commands: the mapped file, the CPU backend, the tokenizer and
// (unless only the tokenizer is needed) the model.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/cpu/cpu_backend.h"
#include "worker/model/gguf.h"
#include "worker/model/llama_model.h"
#include "worker/model/tokenizer.h"

namespace saola::cli {

struct LoadedModel {
  std::unique_ptr<model::GgufFile> file;
  std::unique_ptr<model::Tokenizer> tokenizer;
  std::unique_ptr<kernels::cpu::CpuBackend> backend;
  std::unique_ptr<model::LlamaModel> model;  // null when opened for the tokenizer only
};

absl::StatusOr<LoadedModel> OpenModel(const std::string& path, bool with_weights, int threads,
                                      int max_batch_tokens);

/// One thread per available core, within the --threads bounds [1, 1024].
int DefaultThreads();

/// Exit code for a failed command: 2 for bad input (flags, files, requests), 1 otherwise.
int ExitCodeFor(const absl::Status& status);

/// Prints "saola-worker: <message>" on stderr and returns ExitCodeFor(status).
int Fail(const absl::Status& status);

}  // namespace saola::cli
