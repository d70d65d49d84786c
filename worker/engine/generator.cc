#include "worker/engine/generator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace saola::engine {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::pair<int32_t, float>> TopLogits(std::span<const float> logits, int k) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  k = std::min<int>(k, static_cast<int>(ids.size()));
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<std::pair<int32_t, float>> top;
  for (int i = 0; i < k; ++i) top.emplace_back(ids[i], logits[ids[i]]);
  return top;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Generator>> Generator::Create(model::LlamaModel& model,
                                                             kernels::Backend& backend,
                                                             int32_t max_context,
                                                             StepRunner* runner) {
  if (max_context <= 0 || max_context > model.config().context_length) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "context of %d tokens is outside the model's 1..%d", max_context,
        model.config().context_length));
  }
  const int32_t blocks = (max_context + kBlockSize - 1) / kBlockSize;
  ASSIGN_OR_RETURN(auto kv, model::KvCacheStorage::Create(backend, model.KvShape(blocks, kBlockSize)));
  return std::unique_ptr<Generator>(new Generator(model, std::move(kv), runner));
}

Generator::Generator(model::LlamaModel& model, std::unique_ptr<model::KvCacheStorage> kv,
                     StepRunner* runner)
    : model_(model),
      local_runner_(model),
      runner_(runner != nullptr ? *runner : local_runner_),
      kv_(std::move(kv)),
      block_table_(kv_->num_blocks()) {
  std::iota(block_table_.begin(), block_table_.end(), 0);
}

absl::StatusOr<GenerateResult> Generator::Generate(const std::vector<int32_t>& prompt,
                                                   const GenerateOptions& options,
                                                   int top_k_logits) {
  const int64_t capacity = int64_t{kv_->num_blocks()} * kBlockSize;
  if (prompt.empty()) return absl::InvalidArgumentError("prompt: no tokens");
  if (options.max_tokens < 0) return absl::InvalidArgumentError("max_tokens: must be >= 0");
  if (static_cast<int64_t>(prompt.size()) + options.max_tokens > capacity) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "prompt: %d tokens plus max_tokens %d exceed the context of %d", prompt.size(),
        options.max_tokens, capacity));
  }
  GenerateResult result;
  if (options.max_tokens == 0) return result;
  Sampler sampler(options.sampling, prompt);

  // Prefill in chunks of at most max_batch_tokens; only the last chunk needs logits.
  const double prefill_start = Now();
  model::StepBatch batch;
  batch.seqs.resize(1);
  model::SequenceStep& seq = batch.seqs[0];
  seq.block_table = block_table_;
  std::span<const float> logits;
  for (size_t begin = 0; begin < prompt.size();) {
    const size_t end = std::min(prompt.size(), begin + model_.max_batch_tokens());
    batch.token_ids.assign(prompt.begin() + begin, prompt.begin() + end);
    seq.num_tokens = static_cast<int32_t>(end - begin);
    seq.context_len = static_cast<int32_t>(end);
    seq.num_logits = end == prompt.size() ? 1 : 0;
    ASSIGN_OR_RETURN(const model::StepOutput out, runner_.Run(batch, *kv_));
    logits = out.logits;
    begin = end;
  }
  result.prefill_seconds = Now() - prefill_start;

  const double decode_start = Now();
  int32_t context = static_cast<int32_t>(prompt.size());
  while (true) {
    if (top_k_logits > 0) result.top_logits.push_back(TopLogits(logits, top_k_logits));
    const int32_t token = sampler.Sample(logits).id;
    sampler.Accept(token);
    result.ids.push_back(token);
    const bool keep_going = !options.on_token || options.on_token(token);
    const bool ended = !options.ignore_eos && options.is_end && options.is_end(token);
    if (!keep_going || ended || static_cast<int32_t>(result.ids.size()) >= options.max_tokens) {
      break;
    }
    batch.token_ids.assign(1, token);
    seq.num_tokens = 1;
    seq.context_len = ++context;
    seq.num_logits = 1;
    ASSIGN_OR_RETURN(const model::StepOutput out, runner_.Run(batch, *kv_));
    logits = out.logits;
    ++result.decode_steps;
  }
  result.decode_seconds = Now() - decode_start;
  return result;
}

}  // namespace saola::engine
