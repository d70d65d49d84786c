// `saola-worker bench`: prompt processing and token generation speed, measured as llama-bench
// does (pp: N random prompt tokens in batches from an empty cache; tg: N single-token steps from an
// empty cache), after one warm-up pass, averaged over repetitions.
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/cli/commands.h"
#include "common/flags.h"
#include "worker/cli/loaded_model.h"

namespace saola::cli {
namespace {

constexpr int32_t kBlockSize = 16;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class SpeedRun {
 public:
  SpeedRun(model::LlamaModel& model, model::KvCacheStorage& kv) : model_(model), kv_(kv) {
    table_.resize(kv.num_blocks());
    std::iota(table_.begin(), table_.end(), 0);
  }

  // Seconds to process `tokens` from an empty cache, `step` tokens per model step.
  absl::StatusOr<double> Time(const std::vector<int32_t>& tokens, int32_t step) {
    model::StepBatch batch;
    batch.seqs.resize(1);
    batch.seqs[0].block_table = table_;
    const double start = Now();
    for (size_t begin = 0; begin < tokens.size(); begin += step) {
      const size_t end = std::min(tokens.size(), begin + step);
      batch.token_ids.assign(tokens.begin() + begin, tokens.begin() + end);
      batch.seqs[0].num_tokens = static_cast<int32_t>(end - begin);
      batch.seqs[0].context_len = static_cast<int32_t>(end);
      batch.seqs[0].num_logits = 1;
      RETURN_IF_ERROR(model_.Forward(batch, kv_).status());
    }
    return Now() - start;
  }

 private:
  model::LlamaModel& model_;
  model::KvCacheStorage& kv_;
  std::vector<int32_t> table_;
};

// Mean tokens/s over `reps` runs (after one warm-up run).
absl::StatusOr<double> MeanRate(SpeedRun& run, const std::vector<int32_t>& tokens, int32_t step,
                                int reps) {
  if (tokens.empty()) return 0.0;
  RETURN_IF_ERROR(run.Time(tokens, step).status());
  double sum = 0;
  for (int r = 0; r < reps; ++r) {
    ASSIGN_OR_RETURN(double seconds, run.Time(tokens, step));
    sum += tokens.size() / seconds;
  }
  return sum / reps;
}

}  // namespace

int RunBench(const std::vector<std::string>& raw_args) {
  auto flags = Flags::Parse(raw_args,
                            {"model", "prompt-tokens", "gen-tokens", "repetitions", "threads",
                             "batch-tokens", "device"},
                            {"json"});
  if (!flags.ok()) return Fail(flags.status());
  auto path = flags->String("model");
  auto prompt_tokens = flags->Int("prompt-tokens", 512, 0, 1 << 20);
  auto gen_tokens = flags->Int("gen-tokens", 128, 0, 1 << 20);
  auto reps = flags->Int("repetitions", 3, 1, 1000);
  auto threads = flags->Int("threads", DefaultThreads(), 1, 1024);
  auto batch_tokens = flags->Int("batch-tokens", 512, 1, 1 << 16);
  auto device = ParseDevice(*flags);
  for (const absl::Status& s : {path.status(), prompt_tokens.status(), gen_tokens.status(),
                                reps.status(), threads.status(), batch_tokens.status(),
                                device.status()}) {
    if (!s.ok()) return Fail(s);
  }
  auto loaded = OpenModel(*path, true, static_cast<int>(*threads), static_cast<int>(*batch_tokens),
                          {}, nullptr, *device);
  if (!loaded.ok()) return Fail(loaded.status());
  model::LlamaModel& model = *loaded->model;
  const int64_t context = std::max(*prompt_tokens, *gen_tokens);
  if (context > model.config().context_length) {
    return Fail(absl::InvalidArgumentError(absl::StrFormat(
        "--prompt-tokens/--gen-tokens %d exceed the model's context of %d", context,
        model.config().context_length)));
  }
  const int32_t blocks = static_cast<int32_t>(std::max<int64_t>(1, (context + kBlockSize - 1) / kBlockSize));
  auto kv = model::KvCacheStorage::Create(*loaded->backend, model.KvShape(blocks, kBlockSize));
  if (!kv.ok()) return Fail(kv.status());

  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> pick(0, model.config().vocab_size - 1);
  std::vector<int32_t> prompt(*prompt_tokens), gen(*gen_tokens);
  for (auto& t : prompt) t = pick(rng);
  for (auto& t : gen) t = pick(rng);

  SpeedRun run(model, **kv);
  auto pp = MeanRate(run, prompt, static_cast<int32_t>(*batch_tokens), static_cast<int>(*reps));
  if (!pp.ok()) return Fail(pp.status());
  auto tg = MeanRate(run, gen, 1, static_cast<int>(*reps));
  if (!tg.ok()) return Fail(tg.status());
  if (flags->Bool("json")) {
    std::printf("{\"prefill_tokens_per_s\":%.2f,\"decode_tokens_per_s\":%.2f}\n", *pp, *tg);
  } else {
    std::printf("pp%lld: %.2f tok/s\ntg%lld: %.2f tok/s\n", static_cast<long long>(*prompt_tokens),
                *pp, static_cast<long long>(*gen_tokens), *tg);
  }
  return 0;
}

}  // namespace saola::cli
