// `saola-worker generate`: one completion from the command line, streamed as it is produced.
#include <cstdio>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "worker/cli/commands.h"
#include "common/flags.h"
#include "worker/cli/loaded_model.h"
#include "worker/engine/generator.h"

namespace saola::cli {
namespace {

struct GenerateArgs {
  std::string model_path;
  std::string prompt;
  int32_t max_tokens = 128;
  engine::SamplingParams sampling;
  bool ignore_eos = false;
  bool chat = false;
  int threads = 0;
  bool json = false;
  int top_logits = 0;  // with --json: the top logits of each generated step
  TensorParallelArgs tp;
  Device device = Device::kCpu;
};

absl::StatusOr<GenerateArgs> ParseArgs(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args, {"model", "prompt", "max-tokens", "temperature", "seed", "threads",
                             "tp-size", "tp-timeout-seconds", "top-logits", "device"},
                            {"ignore-eos", "chat", "json"});
  if (!flags.ok()) return flags.status();
  GenerateArgs a;
  auto model = flags->String("model");
  if (!model.ok()) return model.status();
  a.model_path = *model;
  auto prompt = flags->String("prompt");
  if (!prompt.ok()) return prompt.status();
  a.prompt = *prompt;
  auto max_tokens = flags->Int("max-tokens", 128, 0, 1 << 20);
  if (!max_tokens.ok()) return max_tokens.status();
  a.max_tokens = static_cast<int32_t>(*max_tokens);
  auto temperature = flags->Float("temperature", 0.0, 0.0, 100.0);
  if (!temperature.ok()) return temperature.status();
  a.sampling.temperature = static_cast<float>(*temperature);
  auto seed = flags->Uint64("seed", 0);
  if (!seed.ok()) return seed.status();
  a.sampling.seed = *seed;
  auto threads = flags->Int("threads", DefaultThreads(), 1, 1024);
  if (!threads.ok()) return threads.status();
  a.threads = static_cast<int>(*threads);
  auto top_logits = flags->Int("top-logits", 0, 0, 64);
  if (!top_logits.ok()) return top_logits.status();
  a.top_logits = static_cast<int>(*top_logits);
  auto tp = ParseTensorParallelArgs(*flags);
  if (!tp.ok()) return tp.status();
  a.tp = *tp;
  auto device = ParseDevice(*flags);
  if (!device.ok()) return device.status();
  a.device = *device;
  a.ignore_eos = flags->Bool("ignore-eos");
  a.chat = flags->Bool("chat");
  a.json = flags->Bool("json");
  return a;
}

std::string IdsJson(const std::vector<int32_t>& ids) { return absl::StrCat("[", absl::StrJoin(ids, ","), "]"); }

// [[[id, logit], ...] per step]; %.9g round-trips a float.
std::string TopLogitsJson(const std::vector<std::vector<std::pair<int32_t, float>>>& steps) {
  std::string out = "[";
  for (size_t s = 0; s < steps.size(); ++s) {
    absl::StrAppend(&out, s ? ",[" : "[");
    for (size_t i = 0; i < steps[s].size(); ++i) {
      absl::StrAppend(&out, i ? "," : "",
                      absl::StrFormat("[%d,%.9g]", steps[s][i].first, steps[s][i].second));
    }
    absl::StrAppend(&out, "]");
  }
  return out + "]";
}

}  // namespace

int RunGenerate(const std::vector<std::string>& raw_args) {
  auto args = ParseArgs(raw_args);
  if (!args.ok()) return Fail(args.status());
  auto loaded = OpenModelForTensorParallel(args->model_path, args->threads,
                                          /*max_batch_tokens=*/128, args->tp,
                                          /*on_group_failure=*/nullptr, args->device);
  if (!loaded.ok()) return Fail(loaded.status());
  const model::Tokenizer& tokenizer = *loaded->tokenizer;

  std::string text = args->prompt;
  if (args->chat) {
    auto rendered = model::ApplyChatTemplate(tokenizer.spec(), {{"user", args->prompt}}, true);
    if (!rendered.ok()) return Fail(rendered.status());
    text = *rendered;
  }
  const std::vector<int32_t> prompt_ids = tokenizer.Encode(text, true, true);
  if (prompt_ids.empty()) return Fail(absl::InvalidArgumentError("--prompt: no tokens"));
  const int64_t context_needed = static_cast<int64_t>(prompt_ids.size()) + args->max_tokens;
  const int32_t context_limit = loaded->model->config().context_length;
  if (context_needed > context_limit) {
    return Fail(absl::InvalidArgumentError(absl::StrFormat(
        "--prompt: %d tokens plus --max-tokens %d exceed the model's context of %d",
        prompt_ids.size(), args->max_tokens, context_limit)));
  }
  auto generator = engine::Generator::Create(*loaded->model, *loaded->backend,
                                             static_cast<int32_t>(context_needed),
                                             loaded->group.get());
  if (!generator.ok()) return Fail(generator.status());

  model::StreamDecoder decoder(tokenizer);
  std::string output;
  engine::GenerateOptions options;
  options.max_tokens = args->max_tokens;
  options.ignore_eos = args->ignore_eos;
  options.sampling = args->sampling;
  options.is_end = [&](int32_t id) { return tokenizer.IsEndOfGeneration(id); };
  options.on_token = [&](int32_t id) {
    if (!args->ignore_eos && tokenizer.IsEndOfGeneration(id)) return true;
    const std::string piece = decoder.Push(id);
    output += piece;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  auto result = (*generator)->Generate(prompt_ids, options, args->top_logits);
  if (!result.ok()) return Fail(result.status());
  const std::string rest = decoder.Flush();
  output += rest;
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);  // the text ends before the stats line on stderr

  const double prefill_tps =
      result->prefill_seconds > 0 ? prompt_ids.size() / result->prefill_seconds : 0;
  const double decode_tps =
      result->decode_seconds > 0 ? result->decode_steps / result->decode_seconds : 0;
  if (args->json) {
    const std::string top =
        args->top_logits > 0 ? ",\"top_logits\":" + TopLogitsJson(result->top_logits) : "";
    std::printf("{\"prompt_ids\":%s,\"ids\":%s,\"text\":%s,\"prefill_tokens_per_s\":%.2f,"
                "\"decode_tokens_per_s\":%.2f%s}\n",
                IdsJson(prompt_ids).c_str(), IdsJson(result->ids).c_str(),
                json::Quote(output).c_str(), prefill_tps, decode_tps, top.c_str());
  } else {
    std::fprintf(stderr, "[%zu prompt tokens at %.1f tok/s, %zu generated at %.1f tok/s]\n",
                 prompt_ids.size(), prefill_tps, result->ids.size(), decode_tps);
  }
  return 0;
}

}  // namespace saola::cli
