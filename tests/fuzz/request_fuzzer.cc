// libFuzzer target for what a client controls: the protobuf bytes of a Generate request (public
// and internal), decoded and turned into an engine request by the worker's request builder,
// which renders chat templates and tokenizes the prompt. Any input must give a spec or an
// INVALID_ARGUMENT, never a crash or an out-of-bounds read. The first input byte picks the
// message type. The tokenizer is the reference model's (SAOLA_FUZZ_MODEL or models/...).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "saola/v1/llm.pb.h"
#include "saola/v1/worker.pb.h"
#include "worker/model/gguf.h"
#include "worker/model/tokenizer.h"
#include "worker/server/request_builder.h"

namespace {

std::unique_ptr<saola::model::Tokenizer> g_tokenizer;
saola::server::ServedModel g_model;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in string fields is a normal parse failure here, not worth a log line each.
  google::protobuf::SetLogHandler(nullptr);
  const char* env = std::getenv("SAOLA_FUZZ_MODEL");
  const std::string path = env ? env : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  auto file = saola::model::GgufFile::Open(path);
  if (!file.ok()) {
    std::fprintf(stderr, "request_fuzzer: %s (set SAOLA_FUZZ_MODEL)\n",
                 std::string(file.status().message()).c_str());
    std::abort();
  }
  auto spec = saola::model::LoadTokenizerSpec(**file);
  auto tokenizer = saola::model::Tokenizer::Create(*std::move(spec));
  if (!tokenizer.ok()) std::abort();
  g_tokenizer = *std::move(tokenizer);
  g_model = {.name = "model", .context_limit = 8192, .tokenizer = g_tokenizer.get()};
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool internal = data[0] & 1;
  ++data;
  --size;
  if (internal) {
    saola::v1::WorkerGenerateRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    auto spec = saola::server::BuildRequestSpec(request, g_model, 42);
    if (spec.ok() && (spec->prompt.empty() || spec->max_tokens < 1)) std::abort();
  } else {
    saola::v1::GenerateRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    auto spec = saola::server::BuildRequestSpec(request, g_model, 42);
    if (spec.ok()) {
      for (int32_t id : spec->prompt) {
        if (id < 0 || id >= g_tokenizer->vocab_size()) std::abort();
      }
      if (spec->prompt.size() + spec->max_tokens > 8192u) std::abort();
    }
  }
  return 0;
}
