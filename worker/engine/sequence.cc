#include "worker/engine/sequence.h"

#include <algorithm>

#include "common/block_hash.h"
#include "common/check.h"

namespace saola::engine {

Sequence::Sequence(RequestSpec spec, std::shared_ptr<RequestSink> sink,
                   const model::Tokenizer& tokenizer, KvBlockPool& pool)
    : spec_(std::move(spec)),
      sink_(std::move(sink)),
      tokenizer_(tokenizer),
      tokens_(spec_.prompt),
      prompt_len_(static_cast<int32_t>(spec_.prompt.size())),
      root_hash_(TenantRootHash(spec_.tenant)),
      block_size_(pool.block_size()),
      sampler_(spec_.sampling, spec_.prompt),
      decoder_(tokenizer),
      stop_matcher_(spec_.stop) {}

const std::vector<uint64_t>& Sequence::block_hashes() {
  const size_t full = tokens_.size() / block_size_;
  while (block_hashes_.size() < full) {
    const size_t i = block_hashes_.size();
    const uint64_t parent = i == 0 ? root_hash_ : block_hashes_[i - 1];
    block_hashes_.push_back(ChainBlockHash(
        parent, std::span<const int32_t>(tokens_).subspan(i * block_size_, block_size_)));
  }
  return block_hashes_;
}

void Sequence::Preempt() {
  lease.Reset();
  num_computed = 0;
  num_committed_blocks = 0;
  ++num_preemptions;
  state = State::kWaiting;
}

void Sequence::RollbackTo(int32_t num_tokens) {
  SAOLA_CHECK(num_tokens >= prompt_len_ && num_tokens <= this->num_tokens());
  SAOLA_CHECK(num_tokens % block_size_ == 0 ||
              num_tokens / block_size_ >= num_committed_blocks);
  tokens_.resize(num_tokens);
  const size_t full = static_cast<size_t>(num_tokens / block_size_);
  if (block_hashes_.size() > full) block_hashes_.resize(full);
  num_computed = std::min(num_computed, num_tokens);
  lease.Truncate((num_tokens + block_size_ - 1) / block_size_);
  num_committed_blocks = std::min(num_committed_blocks, num_tokens / block_size_);
}

Usage Sequence::MakeUsage() const {
  return Usage{.prompt_tokens = prompt_len_,
               .completion_tokens = num_output(),
               .cached_prompt_tokens = cached_prompt_tokens};
}

RequestOutput Sequence::AppendToken(const SampledToken& token, int32_t context_limit) {
  RequestOutput out;
  tokens_.push_back(token.id);
  sampler_.Accept(token.id);
  out.token_ids.push_back(token.id);
  if (spec_.sampling.logprobs || spec_.sampling.top_logprobs > 0) out.logprobs.push_back(token);

  const bool eos = !spec_.ignore_eos && tokenizer_.IsEndOfGeneration(token.id);
  const bool stop_token = std::find(spec_.stop_token_ids.begin(), spec_.stop_token_ids.end(),
                                    token.id) != spec_.stop_token_ids.end();
  if (!eos) {
    StopMatcher::Output piece = stop_matcher_.Push(decoder_.Push(token.id));
    out.text = std::move(piece.text);
    if (piece.stopped) {
      out.finished = true;
      out.reason = FinishReason::kStop;
      out.matched_stop = std::move(piece.matched);
    }
  }
  if (!out.finished) {
    if (eos || stop_token) {
      out.finished = true;
      out.reason = FinishReason::kStop;
    } else if (num_output() >= spec_.max_tokens || num_tokens() >= context_limit) {
      out.finished = true;
      out.reason = FinishReason::kLength;
    }
    if (out.finished) {
      // Whatever the decoder and the stop matcher held back is final text now.
      out.text += stop_matcher_.Push(decoder_.Flush()).text;
      out.text += stop_matcher_.Flush();
    }
  }
  if (out.finished) {
    out.usage = MakeUsage();
    state = State::kFinished;
  }
  return out;
}

void Sequence::Fail(absl::Status error) {
  RequestOutput out;
  out.error = std::move(error);
  out.usage = MakeUsage();
  state = State::kFinished;
  lease.Reset();
  Emit(std::move(out));
}

void Sequence::Emit(RequestOutput output) { sink_->Push(std::move(output)); }

}  // namespace saola::engine
