#include "worker/engine/scheduler.h"

#include <algorithm>

#include "common/check.h"

namespace saola::engine {

Scheduler::Scheduler(const Options& options, KvBlockPool& pool) : options_(options), pool_(pool) {
  SAOLA_CHECK(options_.max_batch_tokens >= 3);
  SAOLA_CHECK(options_.max_running >= 1);
}

void Scheduler::Add(Sequence* seq) {
  seq->state = Sequence::State::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::Remove(Sequence* seq) {
  std::erase(running_, seq);
  std::erase(waiting_, seq);
}

int32_t Scheduler::TokensToRun(const Sequence& seq, int32_t budget) const {
  if (budget <= 0) return 0;
  if (seq.num_computed >= seq.prompt_len()) return 1;  // decode, or replay of an output token
  const int32_t remaining = seq.prompt_len() - seq.num_computed;
  int32_t n = std::min(remaining, budget);
  // Never leave a one-token remainder, never run a one-token chunk of a longer prompt.
  if (n < remaining && remaining - n == 1) --n;
  if (n == 1 && remaining >= 2) n = 0;
  return n;
}

bool Scheduler::EnsureBlocks(Sequence& seq, int32_t n) {
  const int32_t bs = pool_.block_size();
  const int32_t needed = (seq.num_computed + n + bs - 1) / bs - seq.lease.size();
  return needed <= 0 || pool_.Allocate(needed, seq.lease);
}

void Scheduler::MatchPrefix(Sequence& seq) {
  SAOLA_CHECK(seq.lease.size() == 0 && seq.num_computed == 0);
  const int32_t bs = pool_.block_size();
  int32_t matched = 0;
  if (options_.prefix_cache) {
    // The last token always runs (its logits are needed); a match ending inside the prompt
    // leaves at least two prompt tokens to run.
    const int32_t prompt = seq.prompt_len();
    int32_t max_blocks = (seq.num_tokens() - 1) / bs;
    if (max_blocks * bs < prompt) max_blocks = std::min(max_blocks, std::max(0, prompt - 2) / bs);
    const std::vector<uint64_t>& hashes = seq.block_hashes();
    matched = pool_.MatchPrefix(hashes, seq.tokens(), max_blocks, seq.lease);
    // A preempted request may match past its prompt (no cut above), but its later blocks may
    // have been evicted: a match ending one token short of the prompt's end gives its last
    // block back.
    if (matched > 0 && matched * bs == prompt - 1) seq.lease.Truncate(--matched);
  }
  seq.num_computed = matched * bs;
  seq.num_committed_blocks = matched;
  if (!seq.ever_scheduled) {
    seq.cached_prompt_tokens = std::min(seq.num_computed, seq.prompt_len());
  }
}

void Scheduler::AddChunk(Sequence* seq, int32_t n, int32_t& budget, StepPlan& plan) {
  plan.chunks.push_back(
      {.seq = seq, .num_tokens = n, .sample = seq->num_computed + n == seq->num_tokens()});
  plan.num_tokens += n;
  budget -= n;
}

void Scheduler::Preempt(Sequence* seq, int32_t& budget, StepPlan& plan) {
  // A decode already planned this step is taken back out of the plan.
  std::erase_if(plan.chunks, [&](const ScheduledChunk& c) {
    if (c.seq != seq) return false;
    plan.num_tokens -= c.num_tokens;
    budget += c.num_tokens;
    return true;
  });
  std::erase(running_, seq);
  seq->Preempt();
  waiting_.push_front(seq);
  plan.preempted.push_back(seq);
}

void Scheduler::ScheduleRunning(bool decode_phase, int32_t& budget, StepPlan& plan) {
  // Iterates by index: preemption removes sequences from the back of running_.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* seq = running_[i];
    if ((seq->num_computed >= seq->prompt_len()) != decode_phase) continue;
    const int32_t n = TokensToRun(*seq, budget);
    if (n == 0) {
      // A running prompt left out for lack of budget: admitting newer requests into the rest
      // could starve it, so admission waits for the next step.
      if (!decode_phase) prefill_left_out_ = true;
      continue;
    }
    bool preempted_self = false;
    while (!EnsureBlocks(*seq, n)) {
      Sequence* victim = running_.back();
      Preempt(victim, budget, plan);
      if (victim == seq) {
        preempted_self = true;
        break;
      }
    }
    if (preempted_self) break;  // it was the newest: nothing after it is running
    AddChunk(seq, n, budget, plan);
  }
}

void Scheduler::Admit(int32_t& budget, StepPlan& plan) {
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < options_.max_running) {
    Sequence* seq = waiting_.front();
    if (seq->lease.size() == 0) MatchPrefix(*seq);
    const int32_t n = TokensToRun(*seq, budget);
    if (n == 0 || !EnsureBlocks(*seq, n)) {
      // Give the pinned prefix back: the head waits for room, and nobody overtakes it.
      seq->lease.Reset();
      seq->num_computed = 0;
      seq->num_committed_blocks = 0;
      return;
    }
    if (!seq->ever_scheduled) {
      seq->ever_scheduled = true;
      prefix_stats_.queried_tokens += seq->prompt_len();
      prefix_stats_.hit_tokens += seq->cached_prompt_tokens;
    }
    waiting_.pop_front();
    seq->state = Sequence::State::kRunning;
    running_.push_back(seq);
    plan.admitted.push_back(seq);
    AddChunk(seq, n, budget, plan);
  }
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  int32_t budget = options_.max_batch_tokens;
  prefill_left_out_ = false;
  ScheduleRunning(/*decode_phase=*/true, budget, plan);
  ScheduleRunning(/*decode_phase=*/false, budget, plan);
  if (plan.preempted.empty() && !prefill_left_out_) Admit(budget, plan);
  return plan;
}

}  // namespace saola::engine
