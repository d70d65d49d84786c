// Iteration-level (continuous) batching: which tokens of which requests the next model step runs.
//
// Each step fills a token budget (max_batch_tokens):
//   1. every running request past its prompt gets one token (decode, or the replay of an output
//      token after a preemption), oldest first;
//   2. running requests still in their prompt get the next chunk (chunked prefill), oldest first;
//   3. waiting requests are admitted first come, first served while the budget, the running cap
//      and the block pool allow. The queue's head blocks everyone behind it, so nobody starves.
// A request's prefix already in the prefix cache is reused at admission (its blocks pinned).
// When the pool cannot give a running request the block it needs, the newest running request is
// preempted: its blocks are released (full ones stay cached, so its recompute mostly hits the
// prefix cache) and it goes back to the head of the queue. No request is admitted in a step that
// preempted, or that left a running prompt without a chunk (so new requests cannot starve it).
//
// Prompt chunks are at least two tokens long (unless the prompt is one token), and the prefix
// cache hit is cut so that at least two prompt tokens are recomputed: see sequence.h for why.
// Hence max_batch_tokens >= 3: with 2, a prompt with 3 tokens left could never run.
//
// Plan, then apply: Schedule() returns the step's plan; the engine runs it and then advances
// the sequences (num_computed) itself. Not thread-safe; the engine thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "worker/engine/block_pool.h"
#include "worker/engine/sequence.h"

namespace saola::engine {

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t num_tokens = 0;  // tokens [seq->num_computed, +num_tokens) run this step
  bool sample = false;     // the chunk reaches the sequence's last token: sample the next one
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> preempted;  // preempted while planning this step
  std::vector<Sequence*> admitted;   // moved from waiting to running this step
  int32_t num_tokens = 0;
  bool empty() const { return chunks.empty(); }
};

struct PrefixStats {
  uint64_t queried_tokens = 0;  // prompt tokens looked up, once per request
  uint64_t hit_tokens = 0;      // of those, found in the cache
};

class Scheduler {
 public:
  struct Options {
    int32_t max_batch_tokens = 128;
    int32_t max_running = 64;
    bool prefix_cache = true;
  };

  Scheduler(const Options& options, KvBlockPool& pool);

  /// Queues a new request at the tail.
  void Add(Sequence* seq);
  /// Forgets a request (finished, cancelled); its lease is the caller's to release.
  void Remove(Sequence* seq);

  StepPlan Schedule();

  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  const std::vector<Sequence*>& running() const { return running_; }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const PrefixStats& prefix_stats() const { return prefix_stats_; }
  const Options& options() const { return options_; }

 private:
  /// Tokens `seq` may run within `budget`: a prompt chunk, or 1 past the prompt; 0 for none.
  int32_t TokensToRun(const Sequence& seq, int32_t budget) const;
  /// Grows the lease to cover num_computed + n tokens; false (nothing allocated) if no room.
  bool EnsureBlocks(Sequence& seq, int32_t n);
  /// Reuses cached blocks for a sequence that holds none.
  void MatchPrefix(Sequence& seq);
  void Preempt(Sequence* seq, int32_t& budget, StepPlan& plan);
  void ScheduleRunning(bool decode_phase, int32_t& budget, StepPlan& plan);
  void Admit(int32_t& budget, StepPlan& plan);
  static void AddChunk(Sequence* seq, int32_t n, int32_t& budget, StepPlan& plan);

  Options options_;
  KvBlockPool& pool_;
  std::vector<Sequence*> running_;  // in admission order: the back is the newest
  std::deque<Sequence*> waiting_;   // FCFS; preempted requests return to the front
  PrefixStats prefix_stats_;
  bool prefill_left_out_ = false;  // this step, a running prompt got no chunk
};

}  // namespace saola::engine
