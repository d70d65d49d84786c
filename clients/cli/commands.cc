#include "clients/cli/commands.h"

#include <chrono>
#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cli/generate_request.h"
#include "common/flags.h"
#include "common/json.h"
#include "grpcpp/grpcpp.h"
#include "saola/v1/llm.grpc.pb.h"

namespace saola::client {
namespace {

constexpr int kUsageError = 2;

int Fail(absl::string_view message, int code = kUsageError) {
  std::fprintf(stderr, "saola: %.*s\n", static_cast<int>(message.size()), message.data());
  return code;
}

int Fail(const absl::Status& status) { return Fail(status.message()); }

// Exit 2 when the server refused the request as invalid (like a bad flag), 1 otherwise.
int FailRpc(const grpc::Status& status) {
  const bool bad_request = status.error_code() == grpc::StatusCode::INVALID_ARGUMENT;
  return Fail(absl::StrCat(StatusCodeName(status.error_code()), ": ", status.error_message()),
              bad_request ? kUsageError : 1);
}

// --addr HOST:PORT, or its older name --target.
absl::StatusOr<std::string> Address(const cli::Flags& flags) {
  if (flags.Has("addr") && flags.Has("target")) {
    return absl::InvalidArgumentError("--target is another name of --addr: give one");
  }
  if (flags.Has("target")) return flags.String("target");
  return flags.String("addr");
}

std::unique_ptr<saola::v1::Llm::Stub> Connect(const std::string& address) {
  return saola::v1::Llm::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
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

// One --json line: the message's text and token ids; the last one also carries the finish.
std::string JsonLine(const saola::v1::GenerateResponse& msg, std::optional<double> ttft_ms,
                     double total_ms) {
  std::string line = absl::StrCat("{\"text\": ", json::Quote(msg.text()), ", \"token_ids\": [");
  for (int i = 0; i < msg.token_ids_size(); ++i) {
    absl::StrAppend(&line, i > 0 ? ", " : "", msg.token_ids(i));
  }
  line += "]";
  if (msg.has_finish()) {
    const saola::v1::Finish& f = msg.finish();
    absl::StrAppendFormat(
        &line,
        ", \"finish_reason\": \"%s\", \"usage\": {\"prompt_tokens\": %u, \"completion_tokens\": "
        "%u, \"cached_prompt_tokens\": %u}, \"cache_source\": \"%s\", \"stop\": %s, "
        "\"ttft_ms\": %.1f, \"total_ms\": %.1f",
        FinishName(f.reason()), f.usage().prompt_tokens(), f.usage().completion_tokens(),
        f.usage().cached_prompt_tokens(), CacheName(f.cache_source()), json::Quote(f.stop()),
        ttft_ms.value_or(total_ms), total_ms);
  }
  return line + "}\n";
}

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

int RunGenerate(const std::vector<std::string>& raw_args) {
  absl::StatusOr<cli::Flags> flags =
      cli::Flags::Parse(raw_args, GenerateValueFlags(), GenerateBoolFlags());
  if (!flags.ok()) return Fail(flags.status());
  absl::StatusOr<std::string> address = Address(*flags);
  if (!address.ok()) return Fail(address.status());
  absl::StatusOr<saola::v1::GenerateRequest> request = BuildGenerateRequest(*flags);
  if (!request.ok()) return Fail(request.status());
  absl::StatusOr<int64_t> timeout = flags->Int("timeout-seconds", 600, 1, 86400);
  if (!timeout.ok()) return Fail(timeout.status());
  const bool json = flags->Bool("json");

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(*timeout));
  if (flags->Has("api-key")) context.AddMetadata("authorization", "Bearer " + *flags->String("api-key"));
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<grpc::ClientReader<saola::v1::GenerateResponse>> reader =
      Connect(*address)->Generate(&context, *request);
  saola::v1::GenerateResponse msg;
  saola::v1::Finish finish;
  std::optional<double> ttft_ms;  // time to the first message with generated text or tokens
  bool wrote_text = false;
  while (reader->Read(&msg)) {
    if (!ttft_ms.has_value() && (!msg.text().empty() || msg.token_ids_size() > 0)) {
      ttft_ms = MillisSince(start);
    }
    if (json) {
      const std::string line = JsonLine(msg, ttft_ms, MillisSince(start));
      std::fwrite(line.data(), 1, line.size(), stdout);
    } else {
      std::fwrite(msg.text().data(), 1, msg.text().size(), stdout);
      wrote_text = wrote_text || !msg.text().empty();
    }
    std::fflush(stdout);
    if (msg.has_finish()) finish = msg.finish();
  }
  const grpc::Status status = reader->Finish();
  const double total_ms = MillisSince(start);
  if (wrote_text) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  if (!status.ok()) return FailRpc(status);
  std::fprintf(stderr,
               "saola: finish=%s prompt_tokens=%u completion_tokens=%u cached_prompt_tokens=%u "
               "cache=%s ttft_ms=%.1f total_ms=%.1f\n",
               FinishName(finish.reason()), finish.usage().prompt_tokens(),
               finish.usage().completion_tokens(), finish.usage().cached_prompt_tokens(),
               CacheName(finish.cache_source()), ttft_ms.value_or(total_ms), total_ms);
  return 0;
}

int RunModels(const std::vector<std::string>& raw_args) {
  absl::StatusOr<cli::Flags> flags =
      cli::Flags::Parse(raw_args, {"addr", "target", "api-key"}, {});
  if (!flags.ok()) return Fail(flags.status());
  absl::StatusOr<std::string> address = Address(*flags);
  if (!address.ok()) return Fail(address.status());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (flags->Has("api-key")) context.AddMetadata("authorization", "Bearer " + *flags->String("api-key"));
  saola::v1::ListModelsResponse response;
  const grpc::Status status = Connect(*address)->ListModels(&context, {}, &response);
  if (!status.ok()) return FailRpc(status);
  for (const saola::v1::ModelCard& m : response.models()) {
    std::printf("%s\t%s\t%s\tcontext %u\t%llu parameters\n", m.id().c_str(),
                m.architecture().c_str(), m.quantization().c_str(), m.context_length(),
                static_cast<unsigned long long>(m.parameters()));
  }
  return 0;
}

}  // namespace saola::client
