// The engine's state for one request: its tokens, how many of them have KV in the cache, the KV
// blocks it holds (a lease, so every exit path frees them), and the streaming text pipeline.
//
// Tokens [0, num_computed) have KV in lease's blocks. The prompt part is computed in chunks of at
// least two tokens; tokens after the prompt are computed one per step (decode), also when they
// are recomputed after a preemption. That keeps every KV entry bit-identical to an undisturbed
// run: the kernels add attention up in one order for a one-token step and in another for longer
// ones (kernels/cpu/attention.cc), and each token's KV depends on the order used for it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "worker/engine/block_pool.h"
#include "worker/engine/request.h"
#include "worker/engine/sampler.h"
#include "worker/engine/stop_matcher.h"
#include "worker/model/tokenizer.h"

namespace saola::engine {

class Sequence {
 public:
  enum class State { kWaiting, kRunning, kFinished };

  Sequence(RequestSpec spec, std::shared_ptr<RequestSink> sink, const model::Tokenizer& tokenizer,
           KvBlockPool& pool);

  const RequestSpec& spec() const { return spec_; }
  const std::string& id() const { return spec_.id; }
  State state = State::kWaiting;

  // --- tokens and KV ---
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int32_t num_tokens() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t prompt_len() const { return prompt_len_; }
  int32_t num_output() const { return num_tokens() - prompt_len_; }
  int32_t num_computed = 0;
  BlockLease lease;
  /// Hashes of full blocks [0, hashes.size()), extended as tokens are added.
  const std::vector<uint64_t>& block_hashes();
  /// The tenant's root hash: the parent of block 0.
  uint64_t root_hash() const { return root_hash_; }
  int32_t num_committed_blocks = 0;  // blocks of the lease published to the prefix cache
  bool ever_scheduled = false;       // false until first admitted (cached tokens counted then)
  int32_t cached_prompt_tokens = 0;
  int32_t num_preemptions = 0;

  /// Frees the KV and starts over from token 0 (kept tokens are recomputed, the prefix cache
  /// permitting reuse).
  void Preempt();

  /// Speculative rollback: forgets tokens [num_tokens, num_tokens()) and their KV. A step may run
  /// several tokens of one sequence (the last accepted one and draft tokens) and verify them
  /// afterwards; the rejected ones are rolled back here. Keeps ceil(num_tokens / block_size)
  /// blocks of the lease; the next step writes from position num_computed on, overwriting the
  /// rejected slots (model::SequenceStep::context_len). The block hashes are cut to the full
  /// blocks that remain.
  ///
  /// Committed blocks hold only accepted tokens as long as callers commit after verification:
  /// the rollback must not cut into a block published to the prefix cache (other requests may
  /// share its slots), so num_tokens >= num_committed_blocks * block_size, or it lies on a block
  /// boundary (then the cut-off committed blocks are released and stay cached). The streamed
  /// text, the stop matcher and the sampler's penalty counts are not rewound: roll back only
  /// tokens that were never streamed. Preconditions: prompt_len() <= num_tokens <= num_tokens().
  void RollbackTo(int32_t num_tokens);

  // --- sampling and output ---
  Sampler& sampler() { return sampler_; }
  /// Appends a sampled token, runs the stop checks, and returns the output to stream (its
  /// `finished` set when this token ends the request).
  RequestOutput AppendToken(const SampledToken& token, int32_t context_limit);
  /// Ends the request with an error (cancel, deadline, shutdown) and streams it.
  void Fail(absl::Status error);
  /// Sends an output to the client.
  void Emit(RequestOutput output);

  // --- timing (metrics) ---
  Clock::time_point arrival_time = Clock::now();
  std::optional<Clock::time_point> first_scheduled_time;
  std::optional<Clock::time_point> first_token_time;
  Clock::time_point last_token_time;

 private:
  Usage MakeUsage() const;

  RequestSpec spec_;
  std::shared_ptr<RequestSink> sink_;
  const model::Tokenizer& tokenizer_;
  std::vector<int32_t> tokens_;
  int32_t prompt_len_;
  std::vector<uint64_t> block_hashes_;
  uint64_t root_hash_;
  int32_t block_size_;
  Sampler sampler_;
  model::StreamDecoder decoder_;
  StopMatcher stop_matcher_;
};

}  // namespace saola::engine
