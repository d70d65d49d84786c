#include "clients/cli/commands.h"

#include <chrono>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/json.h"
#include "grpcpp/grpcpp.h"
#include "saola/v1/llm.grpc.pb.h"

namespace saola::client {
namespace {

int Fail(const std::string& message, int code = 2) {
  std::fprintf(stderr, "saola: %s\n", message.c_str());
  return code;
}

int FailRpc(const grpc::Status& status) {
  const bool bad_request = status.error_code() == grpc::StatusCode::INVALID_ARGUMENT;
  return Fail(absl::StrFormat("%s (gRPC %d)", status.error_message(), status.error_code()),
              bad_request ? 2 : 1);
}

std::unique_ptr<saola::v1::Llm::Stub> Connect(const std::string& target) {
  return saola::v1::Llm::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
}

const char* FinishName(saola::v1::FinishReason reason) {
  switch (reason) {
    case saola::v1::STOP:
      return "stop";
    case saola::v1::LENGTH:
      return "length";
    default:
      return "unspecified";
  }
}

const char* CacheName(saola::v1::CacheSource source) {
  switch (source) {
    case saola::v1::EXACT:
      return "exact";
    case saola::v1::SEMANTIC:
      return "semantic";
    default:
      return "none";
  }
}

}  // namespace

int RunGenerate(const std::vector<std::string>& raw_args) {
  auto flags = cli::Flags::Parse(
      raw_args,
      {"target", "prompt", "chat", "system", "max-tokens", "temperature", "top-p", "top-k", "seed",
       "stop", "model", "timeout-seconds"},
      {"ignore-eos", "json"});
  if (!flags.ok()) return Fail(std::string(flags.status().message()));
  auto target = flags->String("target");
  if (!target.ok()) return Fail(std::string(target.status().message()));
  if (flags->Has("prompt") == flags->Has("chat")) return Fail("give exactly one of --prompt, --chat");

  saola::v1::GenerateRequest request;
  if (flags->Has("prompt")) {
    request.set_prompt(*flags->String("prompt"));
  } else {
    if (flags->Has("system")) {
      auto* m = request.mutable_chat()->add_messages();
      m->set_role("system");
      m->set_content(*flags->String("system"));
    }
    auto* m = request.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(*flags->String("chat"));
  }
  if (flags->Has("model")) request.set_model(*flags->String("model"));
  auto max_tokens = flags->Int("max-tokens", 256, 0, 1 << 30);
  if (!max_tokens.ok()) return Fail(std::string(max_tokens.status().message()));
  request.set_max_tokens(static_cast<uint32_t>(*max_tokens));
  saola::v1::SamplingParams* sampling = request.mutable_sampling();
  if (flags->Has("temperature")) {
    auto t = flags->Float("temperature", 1.0, 0.0, 100.0);
    if (!t.ok()) return Fail(std::string(t.status().message()));
    sampling->set_temperature(static_cast<float>(*t));
  }
  if (flags->Has("top-p")) {
    auto p = flags->Float("top-p", 1.0, 0.0, 1.0);
    if (!p.ok()) return Fail(std::string(p.status().message()));
    sampling->set_top_p(static_cast<float>(*p));
  }
  if (flags->Has("top-k")) {
    auto k = flags->Int("top-k", 0, 0, 1 << 20);
    if (!k.ok()) return Fail(std::string(k.status().message()));
    sampling->set_top_k(static_cast<int32_t>(*k));
  }
  if (flags->Has("seed")) {
    auto s = flags->Uint64("seed", 0);
    if (!s.ok()) return Fail(std::string(s.status().message()));
    sampling->set_seed(*s);
  }
  if (flags->Has("stop")) request.add_stop(*flags->String("stop"));
  request.set_ignore_eos(flags->Bool("ignore-eos"));
  auto timeout = flags->Int("timeout-seconds", 600, 1, 86400);
  if (!timeout.ok()) return Fail(std::string(timeout.status().message()));
  const bool json = flags->Bool("json");

  auto stub = Connect(*target);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(*timeout));
  auto reader = stub->Generate(&context, request);
  saola::v1::GenerateResponse msg;
  std::string text;
  saola::v1::Finish finish;
  while (reader->Read(&msg)) {
    text += msg.text();
    if (!json) {
      std::fwrite(msg.text().data(), 1, msg.text().size(), stdout);
      std::fflush(stdout);
    }
    if (msg.has_finish()) finish = msg.finish();
  }
  const grpc::Status status = reader->Finish();
  if (!json) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  if (!status.ok()) return FailRpc(status);
  if (json) {
    std::printf("{\"text\": %s, \"finish_reason\": \"%s\", \"prompt_tokens\": %u, "
                "\"completion_tokens\": %u, \"cached_prompt_tokens\": %u, \"cache_source\": \"%s\"}\n",
                json::Quote(text).c_str(), FinishName(finish.reason()),
                finish.usage().prompt_tokens(), finish.usage().completion_tokens(),
                finish.usage().cached_prompt_tokens(), CacheName(finish.cache_source()));
  } else {
    std::fprintf(stderr, "[%s; %u prompt tokens (%u cached), %u generated; cache %s]\n",
                 FinishName(finish.reason()), finish.usage().prompt_tokens(),
                 finish.usage().cached_prompt_tokens(), finish.usage().completion_tokens(),
                 CacheName(finish.cache_source()));
  }
  return 0;
}

int RunModels(const std::vector<std::string>& raw_args) {
  auto flags = cli::Flags::Parse(raw_args, {"target"}, {});
  if (!flags.ok()) return Fail(std::string(flags.status().message()));
  auto target = flags->String("target");
  if (!target.ok()) return Fail(std::string(target.status().message()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  saola::v1::ListModelsResponse response;
  const grpc::Status status = Connect(*target)->ListModels(&context, {}, &response);
  if (!status.ok()) return FailRpc(status);
  for (const saola::v1::ModelCard& m : response.models()) {
    std::printf("%s\t%s\t%s\tcontext %u\t%llu parameters\n", m.id().c_str(),
                m.architecture().c_str(), m.quantization().c_str(), m.context_length(),
                static_cast<unsigned long long>(m.parameters()));
  }
  return 0;
}

}  // namespace saola::client
