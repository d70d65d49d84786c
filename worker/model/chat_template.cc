// ApplyChatTemplate: renders chat messages the way a model's Jinja chat template would, for the
// template families llama.cpp recognises by substring (llama-chat.cpp), without a Jinja engine.
//
// Detection follows llama.cpp's order: an exact family name ("chatml", "llama3", ...), then
// marker substrings of the template source ("<|im_start|>" is ChatML, "[INST]" the Llama 2 /
// Mistral family, "<|start_header_id|>" Llama 3, ...). An empty template is ChatML, as in
// llama.cpp.
//
// ChatML goes one step further than llama.cpp so that the output equals what the Jinja template
// renders: a template that carries a whole default system turn as a string literal (SmolLM2's
// "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\n", Qwen2.5's)
// emits that turn first when the conversation does not start with a system message.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/model/tokenizer.h"

namespace saola::model {
namespace {

enum class Family {
  kChatml, kPhi4, kLlama3, kLlama2, kLlama2Sys, kLlama2SysBos, kLlama2SysStrip, kMistralV1,
  kMistralV3, kMistralV3Tekken, kMistralV7, kMistralV7Tekken, kPhi3, kZephyr, kGemma,
};

bool Contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// The family of `tmpl`, or false when it is none of the supported ones.
bool DetectFamily(std::string_view tmpl, Family* family) {
  static constexpr std::pair<std::string_view, Family> kNames[] = {
      {"chatml", Family::kChatml},
      {"phi4", Family::kPhi4},
      {"llama3", Family::kLlama3},
      {"llama2", Family::kLlama2},
      {"llama2-sys", Family::kLlama2Sys},
      {"llama2-sys-bos", Family::kLlama2SysBos},
      {"llama2-sys-strip", Family::kLlama2SysStrip},
      {"mistral-v1", Family::kMistralV1},
      {"mistral-v3", Family::kMistralV3},
      {"mistral-v3-tekken", Family::kMistralV3Tekken},
      {"mistral-v7", Family::kMistralV7},
      {"mistral-v7-tekken", Family::kMistralV7Tekken},
      {"phi3", Family::kPhi3},
      {"zephyr", Family::kZephyr},
      {"gemma", Family::kGemma},
  };
  for (const auto& [name, f] : kNames) {
    if (tmpl == name) {
      *family = f;
      return true;
    }
  }
  if (tmpl.empty()) {
    *family = Family::kChatml;
    return true;
  }
  if (Contains(tmpl, "<|im_start|>")) {
    // SmolVLM uses <|im_start|> without being ChatML.
    if (Contains(tmpl, "<end_of_utterance>")) return false;
    *family = Contains(tmpl, "<|im_sep|>") ? Family::kPhi4 : Family::kChatml;
    return true;
  }
  if (tmpl.substr(0, 7) == "mistral" || Contains(tmpl, "[INST]")) {
    if (Contains(tmpl, "[SYSTEM_PROMPT]")) {
      *family = Family::kMistralV7;
    } else if (Contains(tmpl, "' [INST] ' + system_message") ||
               Contains(tmpl, "[AVAILABLE_TOOLS]")) {
      *family = Contains(tmpl, " [INST]")       ? Family::kMistralV1
                : Contains(tmpl, "\"[INST]\"") ? Family::kMistralV3Tekken
                                               : Family::kMistralV3;
    } else if (Contains(tmpl, "content.strip()")) {
      *family = Family::kLlama2SysStrip;
    } else if (Contains(tmpl, "bos_token + '[INST]")) {
      *family = Family::kLlama2SysBos;
    } else if (Contains(tmpl, "<<SYS>>")) {
      *family = Family::kLlama2Sys;
    } else {
      *family = Family::kLlama2;
    }
    return true;
  }
  if (Contains(tmpl, "<|assistant|>") && Contains(tmpl, "<|end|>")) {
    *family = Family::kPhi3;
    return true;
  }
  if (Contains(tmpl, "<|user|>") && Contains(tmpl, "<|endoftext|>")) {
    *family = Family::kZephyr;
    return true;
  }
  if (Contains(tmpl, "<start_of_turn>")) {
    *family = Family::kGemma;
    return true;
  }
  if (Contains(tmpl, "<|start_header_id|>") && Contains(tmpl, "<|end_header_id|>")) {
    *family = Family::kLlama3;
    return true;
  }
  return false;
}

// The string literals inside the template's {{ }} and {% %} tags, with Jinja/Python escapes
// (\n, \t, \', \", \\) resolved.
std::vector<std::string> TagStringLiterals(std::string_view tmpl) {
  std::vector<std::string> literals;
  size_t i = 0;
  while (i + 1 < tmpl.size()) {
    const bool open = tmpl[i] == '{' && (tmpl[i + 1] == '{' || tmpl[i + 1] == '%');
    if (!open) {
      ++i;
      continue;
    }
    const char close = tmpl[i + 1] == '{' ? '}' : '%';
    i += 2;
    while (i < tmpl.size() && !(tmpl[i] == close && i + 1 < tmpl.size() && tmpl[i + 1] == '}')) {
      const char q = tmpl[i];
      if (q != '\'' && q != '"') {
        ++i;
        continue;
      }
      std::string lit;
      for (++i; i < tmpl.size() && tmpl[i] != q; ++i) {
        if (tmpl[i] == '\\' && i + 1 < tmpl.size()) {
          const char e = tmpl[++i];
          lit += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        } else {
          lit += tmpl[i];
        }
      }
      ++i;  // the closing quote
      literals.push_back(std::move(lit));
    }
    i += 2;
  }
  return literals;
}

// A whole default system turn written as one literal in a ChatML template, or "".
std::string DefaultChatmlSystemTurn(std::string_view tmpl) {
  if (!Contains(tmpl, "'system'") && !Contains(tmpl, "\"system\"")) return std::string();
  for (std::string& lit : TagStringLiterals(tmpl)) {
    constexpr std::string_view kHead = "<|im_start|>system\n";
    constexpr std::string_view kTail = "<|im_end|>\n";
    if (lit.size() >= kHead.size() + kTail.size() && lit.compare(0, kHead.size(), kHead) == 0 &&
        lit.compare(lit.size() - kTail.size(), kTail.size(), kTail) == 0 &&
        !Contains(std::string_view(lit).substr(kHead.size()), "<|im_start|>")) {
      return lit;
    }
  }
  return std::string();
}

// Leading and trailing ASCII whitespace removed (llama.cpp's trim).
std::string Trim(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  size_t b = 0, e = s.size();
  while (b < e && space(s[b])) ++b;
  while (e > b && space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

absl::Status CheckBasicRoles(const std::vector<ChatMessage>& messages, std::string_view family) {
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return absl::InvalidArgumentError(
          absl::StrCat("chat template (", std::string(family), "): unsupported role '", m.role,
                       "' (system, user and assistant only)"));
    }
  }
  return absl::OkStatus();
}

void RenderLlama2(Family family, const std::vector<ChatMessage>& messages, std::string* out) {
  const bool system_supported = family != Family::kLlama2;
  const bool bos_inside = family == Family::kLlama2SysBos;
  const bool strip = family == Family::kLlama2SysStrip;
  bool inside_turn = true;  // the first [INST] has no BOS: the tokenizer adds it
  *out += "[INST] ";
  for (const ChatMessage& m : messages) {
    const std::string content = strip ? Trim(m.content) : m.content;
    if (!inside_turn) {
      inside_turn = true;
      *out += bos_inside ? "<s>[INST] " : "[INST] ";
    }
    if (m.role == "system") {
      *out += system_supported ? absl::StrCat("<<SYS>>\n", content, "\n<</SYS>>\n\n")
                               : absl::StrCat(content, "\n");
    } else if (m.role == "user") {
      absl::StrAppend(out, content, " [/INST]");
    } else {
      absl::StrAppend(out, content, "</s>");
      inside_turn = false;
    }
  }
}

void RenderMistral(Family family, const std::vector<ChatMessage>& messages, std::string* out) {
  if (family == Family::kMistralV7 || family == Family::kMistralV7Tekken) {
    const char* sp = family == Family::kMistralV7 ? " " : "";
    for (const ChatMessage& m : messages) {
      if (m.role == "system") {
        absl::StrAppend(out, "[SYSTEM_PROMPT]", sp, m.content, "[/SYSTEM_PROMPT]");
      } else if (m.role == "user") {
        absl::StrAppend(out, "[INST]", sp, m.content, "[/INST]");
      } else {
        absl::StrAppend(out, sp, m.content, "</s>");
      }
    }
    return;
  }
  const std::string lead = family == Family::kMistralV1 ? " " : "";
  const std::string trail = family == Family::kMistralV3Tekken ? "" : " ";
  const bool trim_assistant = family == Family::kMistralV3;
  bool inside_turn = false;
  for (const ChatMessage& m : messages) {
    if (!inside_turn) {
      absl::StrAppend(out, lead, "[INST]", trail);
      inside_turn = true;
    }
    if (m.role == "system") {
      absl::StrAppend(out, m.content, "\n\n");
    } else if (m.role == "user") {
      absl::StrAppend(out, m.content, lead, "[/INST]");
    } else {
      absl::StrAppend(out, trail, trim_assistant ? Trim(m.content) : m.content, "</s>");
      inside_turn = false;
    }
  }
}

}  // namespace

absl::StatusOr<std::string> ApplyChatTemplate(const TokenizerSpec& spec,
                                              const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt) {
  const std::string& tmpl = spec.chat_template;
  Family family;
  if (!DetectFamily(tmpl, &family)) {
    return absl::InvalidArgumentError(
        "tokenizer.chat_template: unsupported chat template (not ChatML, Llama 2/3, Mistral, "
        "Zephyr, Phi-3/4 or Gemma)");
  }
  std::string out;
  switch (family) {
    case Family::kChatml: {
      const std::string system_turn = DefaultChatmlSystemTurn(tmpl);
      if (!system_turn.empty() && !messages.empty() && messages[0].role != "system") {
        out += system_turn;
      }
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    }
    case Family::kPhi4:
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|im_start|>", m.role, "<|im_sep|>", m.content, "<|im_end|>");
      }
      if (add_generation_prompt) out += "<|im_start|>assistant<|im_sep|>";
      break;
    case Family::kLlama3:
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n",
                        Trim(m.content), "<|eot_id|>");
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case Family::kLlama2:
    case Family::kLlama2Sys:
    case Family::kLlama2SysBos:
    case Family::kLlama2SysStrip:
      if (absl::Status s = CheckBasicRoles(messages, "llama2"); !s.ok()) return s;
      RenderLlama2(family, messages, &out);
      break;
    case Family::kMistralV1:
    case Family::kMistralV3:
    case Family::kMistralV3Tekken:
    case Family::kMistralV7:
    case Family::kMistralV7Tekken:
      if (absl::Status s = CheckBasicRoles(messages, "mistral"); !s.ok()) return s;
      RenderMistral(family, messages, &out);
      break;
    case Family::kPhi3:
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|", m.role, "|>\n", m.content, "<|end|>\n");
      }
      if (add_generation_prompt) out += "<|assistant|>\n";
      break;
    case Family::kZephyr:
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|", m.role, "|>\n", m.content, "<|endoftext|>\n");
      }
      if (add_generation_prompt) out += "<|assistant|>\n";
      break;
    case Family::kGemma: {
      if (absl::Status s = CheckBasicRoles(messages, "gemma"); !s.ok()) return s;
      std::string system;  // Gemma has no system turn: it goes into the next user turn
      for (const ChatMessage& m : messages) {
        if (m.role == "system") {
          system += Trim(m.content);
          continue;
        }
        const std::string role = m.role == "assistant" ? "model" : m.role;
        absl::StrAppend(&out, "<start_of_turn>", role, "\n");
        if (!system.empty() && role != "model") {
          absl::StrAppend(&out, system, "\n\n");
          system.clear();
        }
        absl::StrAppend(&out, Trim(m.content), "<end_of_turn>\n");
      }
      if (add_generation_prompt) out += "<start_of_turn>model\n";
      break;
    }
  }
  return out;
}

}  // namespace saola::model
