#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/model/gguf.h"
#include "worker/model/tokenizer.h"

namespace saola::model {
namespace {

// tokenizer.chat_template of SmolLM2-135M-Instruct.
constexpr char kSmolTemplate[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

constexpr char kSmolSystem[] =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n";

TokenizerSpec SpecWith(std::string tmpl) {
  TokenizerSpec spec;
  spec.chat_template = std::move(tmpl);
  return spec;
}

std::string Render(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                   bool add_generation_prompt = true) {
  auto out = ApplyChatTemplate(SpecWith(tmpl), messages, add_generation_prompt);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::string();
}

// Expected strings below are what Jinja2 renders from kSmolTemplate.

TEST(ChatTemplateTest, SmolOneMessageGetsTheDefaultSystemPrompt) {
  EXPECT_EQ(Render(kSmolTemplate, {{"user", "Hi"}}),
            std::string(kSmolSystem) +
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(Render(kSmolTemplate, {{"user", "Hi"}}, /*add_generation_prompt=*/false),
            std::string(kSmolSystem) + "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, SmolTwoMessagesWithOwnSystemPrompt) {
  EXPECT_EQ(Render(kSmolTemplate, {{"system", "Be brief."}, {"user", "Hi"}}),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, SmolThreeMessages) {
  EXPECT_EQ(
      Render(kSmolTemplate, {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "How are you?"}}),
      std::string(kSmolSystem) +
          "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
          "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, SmolNoMessages) {
  EXPECT_EQ(Render(kSmolTemplate, {}), "<|im_start|>assistant\n");
  EXPECT_EQ(Render(kSmolTemplate, {}, false), "");
}

TEST(ChatTemplateTest, TemplateFromTheGgufFile) {
  const std::string path = std::string(SAOLA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::ifstream(path).good()) GTEST_SKIP() << "model file absent: " << path;
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto spec = LoadTokenizerSpec(**file);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->chat_template, kSmolTemplate);
  auto out = ApplyChatTemplate(*spec, {{"user", "Hi"}}, true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, std::string(kSmolSystem) +
                      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, PlainChatmlAndEmptyTemplateHaveNoDefaultSystemPrompt) {
  const std::string chatml =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const std::string want = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(Render(chatml, {{"user", "Hi"}}), want);
  EXPECT_EQ(Render("", {{"user", "Hi"}}), want);
  EXPECT_EQ(Render("chatml", {{"user", "Hi"}}), want);
}

TEST(ChatTemplateTest, QwenStyleDefaultSystemWithEscapedNewlines) {
  // The default system turn as Qwen2.5 writes it: a literal with \n escapes, in an else branch.
  const std::string qwen =
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
      "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are "
      "Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
      "{%- for message in messages %}...{%- endfor %}";
  EXPECT_EQ(Render(qwen, {{"user", "Hi"}}),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(Render(qwen, {{"system", "S"}, {"user", "Hi"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, Llama3) {
  const std::string tmpl =
      "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
      "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}";
  EXPECT_EQ(Render(tmpl, {{"system", "Be brief. "}, {"user", " Hi"}}),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(Render("llama3", {{"user", "Hi"}}, false),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplateTest, Llama2WithSystemMessage) {
  const std::string tmpl = "{% if messages[0]['role'] == 'system' %}<<SYS>>{% endif %}[INST]";
  EXPECT_EQ(Render(tmpl, {{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}, {"user", "Q"}}),
            "[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]Yo</s>[INST] Q [/INST]");
  auto bad = ApplyChatTemplate(SpecWith(tmpl), {{"tool", "x"}}, true);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, MistralV7) {
  EXPECT_EQ(Render("mistral-v7", {{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}}),
            "[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] Hi[/INST] Yo</s>");
}

TEST(ChatTemplateTest, Zephyr) {
  const std::string tmpl = "{{ '<|user|>\\n' + message['content'] + '<|endoftext|>' }}";
  EXPECT_EQ(Render(tmpl, {{"system", "S"}, {"user", "Hi"}}),
            "<|system|>\nS<|endoftext|>\n<|user|>\nHi<|endoftext|>\n<|assistant|>\n");
}

TEST(ChatTemplateTest, GemmaMergesTheSystemPromptIntoTheFirstUserTurn) {
  EXPECT_EQ(Render("{{ '<start_of_turn>' + role }}",
                   {{"system", "S "}, {"user", "Hi"}, {"assistant", "Yo"}}),
            "<start_of_turn>user\nS\n\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n"
            "<start_of_turn>model\n");
}

TEST(ChatTemplateTest, UnknownTemplateIsInvalidArgument) {
  auto out = ApplyChatTemplate(SpecWith("{{ 'Human: ' + content }}"), {{"user", "Hi"}}, true);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace saola::model
