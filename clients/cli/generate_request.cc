#include "clients/cli/generate_request.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace saola::client {
namespace {

constexpr size_t kMaxChatFileBytes = 16 << 20;

absl::Status ChatFileError(const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--chat-file ", path, ": ", why));
}

}  // namespace

const std::set<std::string>& GenerateValueFlags() {
  static const auto* flags = new std::set<std::string>{
      "addr", "target", "prompt", "chat", "chat-file", "system", "max-tokens", "temperature",
      "top-p", "top-k", "seed", "stop", "model", "timeout-seconds", "api-key",
      "semantic-threshold"};
  return *flags;
}

const std::set<std::string>& GenerateBoolFlags() {
  static const auto* flags =
      new std::set<std::string>{"ignore-eos", "json", "semantic", "no-cache"};
  return *flags;
}

absl::StatusOr<saola::v1::Chat> ReadChatFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ChatFileError(path, "cannot open the file");
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxChatFileBytes) return ChatFileError(path, "larger than 16 MiB");
  }
  if (in.bad()) return ChatFileError(path, "cannot read the file");
  absl::StatusOr<json::Value> doc = json::Parse(text);
  if (!doc.ok()) return ChatFileError(path, absl::StrCat("bad JSON: ", doc.status().message()));
  const json::Value* messages = &*doc;
  if (doc->is_object()) {
    messages = doc->Find("messages");
    if (messages == nullptr) return ChatFileError(path, "the object has no \"messages\" member");
  }
  if (!messages->is_array()) {
    return ChatFileError(path, "expected an array of messages or {\"messages\": [...]}");
  }
  if (messages->arr().empty()) return ChatFileError(path, "no messages");
  saola::v1::Chat chat;
  for (size_t i = 0; i < messages->arr().size(); ++i) {
    const json::Value& m = messages->arr()[i];
    const json::Value* role = m.Find("role");
    const json::Value* content = m.Find("content");
    if (role == nullptr || !role->is_string() || content == nullptr || !content->is_string()) {
      return ChatFileError(path, absl::StrCat("message ", i,
                                              ": expected {\"role\": string, \"content\": string}"));
    }
    saola::v1::ChatMessage* out = chat.add_messages();
    out->set_role(role->str());
    out->set_content(content->str());
  }
  return chat;
}

absl::StatusOr<saola::v1::GenerateRequest> BuildGenerateRequest(const cli::Flags& flags) {
  const int sources = flags.Has("prompt") + flags.Has("chat") + flags.Has("chat-file");
  if (sources != 1) {
    return absl::InvalidArgumentError("give exactly one of --prompt, --chat, --chat-file");
  }
  saola::v1::GenerateRequest request;
  if (flags.Has("prompt")) {
    if (flags.Has("system")) {
      return absl::InvalidArgumentError("--system: only with --chat or --chat-file");
    }
    ASSIGN_OR_RETURN(std::string prompt, flags.String("prompt"));
    request.set_prompt(prompt);
  } else {
    saola::v1::Chat* chat = request.mutable_chat();
    if (flags.Has("system")) {
      saola::v1::ChatMessage* m = chat->add_messages();
      m->set_role("system");
      ASSIGN_OR_RETURN(std::string system, flags.String("system"));
      m->set_content(system);
    }
    if (flags.Has("chat")) {
      saola::v1::ChatMessage* m = chat->add_messages();
      m->set_role("user");
      ASSIGN_OR_RETURN(std::string content, flags.String("chat"));
      m->set_content(content);
    } else {
      ASSIGN_OR_RETURN(std::string path, flags.String("chat-file"));
      ASSIGN_OR_RETURN(saola::v1::Chat file_chat, ReadChatFile(path));
      chat->MergeFrom(file_chat);
    }
  }
  if (flags.Has("model")) {
    ASSIGN_OR_RETURN(std::string model, flags.String("model"));
    request.set_model(model);
  }
  ASSIGN_OR_RETURN(int64_t max_tokens, flags.Int("max-tokens", 256, 0, 1 << 30));
  request.set_max_tokens(static_cast<uint32_t>(max_tokens));

  saola::v1::SamplingParams* sampling = request.mutable_sampling();
  if (flags.Has("temperature")) {
    ASSIGN_OR_RETURN(double t, flags.Float("temperature", 1.0, 0.0, 100.0));
    sampling->set_temperature(static_cast<float>(t));
  }
  if (flags.Has("top-p")) {
    ASSIGN_OR_RETURN(double p, flags.Float("top-p", 1.0, 0.0, 1.0));
    sampling->set_top_p(static_cast<float>(p));
  }
  if (flags.Has("top-k")) {
    ASSIGN_OR_RETURN(int64_t k, flags.Int("top-k", 0, 0, 1 << 20));
    sampling->set_top_k(static_cast<int32_t>(k));
  }
  if (flags.Has("seed")) {
    ASSIGN_OR_RETURN(uint64_t s, flags.Uint64("seed", 0));
    sampling->set_seed(s);
  }
  if (flags.Has("stop")) {
    ASSIGN_OR_RETURN(std::string stop, flags.String("stop"));
    request.add_stop(stop);
  }
  request.set_ignore_eos(flags.Bool("ignore-eos"));

  saola::v1::CacheControl* cache = request.mutable_cache();
  cache->set_bypass(flags.Bool("no-cache"));
  // A threshold only matters for a semantic lookup, so giving one asks for it.
  cache->set_semantic(flags.Bool("semantic") || flags.Has("semantic-threshold"));
  if (flags.Has("semantic-threshold")) {
    ASSIGN_OR_RETURN(double x, flags.Float("semantic-threshold", 0.85, 1e-6, 1.0));
    cache->set_semantic_threshold(static_cast<float>(x));
  }
  if (cache->bypass() && cache->semantic()) {
    return absl::InvalidArgumentError("--no-cache: conflicts with --semantic");
  }
  return request;
}

}  // namespace saola::client
