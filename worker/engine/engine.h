// The serving engine: one thread that owns the scheduler, the KV block pool and the model, and
// runs steps back to back while there is work. Everything else talks to it through thread-safe
// calls that queue work for that thread: Submit, Abort, SubscribeKvEvents, Stats.
//
// Per step: take new requests and aborts from the inbox, fail expired and cancelled requests,
// plan the step (scheduler.h), run the model on it, sample a token for every sequence that
// reached its last token, stream the outputs, publish newly full blocks to the prefix cache, and
// free finished requests' blocks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/engine/block_pool.h"
#include "worker/engine/request.h"
#include "worker/engine/scheduler.h"
#include "worker/engine/sequence.h"
#include "worker/engine/step_runner.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"
#include "worker/model/tokenizer.h"

namespace saola::engine {

struct EngineStats {
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t kv_blocks = 0;
  int32_t kv_blocks_in_use = 0;
  int32_t kv_blocks_cached = 0;
  int32_t kv_blocks_free = 0;
  int64_t kv_slots_allocated = 0;  // slots in blocks held by running requests
  int64_t kv_tokens_stored = 0;    // tokens with KV in those blocks
  uint64_t prefix_queried_tokens = 0;
  uint64_t prefix_hit_tokens = 0;
  uint64_t preemptions = 0;
  uint64_t steps = 0;
  bool accepting = true;
};

/// A change to the prefix cache, for the router's index. The first update a subscriber gets is a
/// snapshot (reset = true) of everything cached.
struct KvEventUpdate {
  bool reset = false;
  std::vector<std::pair<uint64_t, std::vector<uint64_t>>> stored;  // (parent hash, chain)
  std::vector<uint64_t> removed;
  uint64_t sequence = 0;  // per subscriber, from 0
};

/// Hooks for metrics, called on the engine thread. Default: nothing.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnAdmitted(const Sequence& seq, double queue_seconds) {}
  virtual void OnFirstToken(double ttft_seconds) {}
  virtual void OnToken(double inter_token_seconds) {}
  virtual void OnFinished(const Sequence& seq, FinishReason reason, const absl::Status& error,
                          double e2e_seconds) {}
  virtual void OnPreempted() {}
  virtual void OnStep(const EngineStats& stats) {}
};

class Engine {
 public:
  struct Options {
    int32_t max_batch_tokens = 128;  // must not exceed the model's
    int32_t max_running = 64;
    int32_t max_waiting = 256;
    int32_t num_kv_blocks = 1024;
    int32_t block_size = 16;
    bool prefix_cache = true;
    /// Runs each step; null: the model on this process. Must outlive the engine.
    StepRunner* step_runner = nullptr;
    /// Called once, on the engine thread, when the runner breaks (IsRunnerBroken), just before
    /// every live request fails with UNAVAILABLE; Submit answers UNAVAILABLE from then on.
    std::function<void(const absl::Status&)> on_runner_broken = nullptr;
  };

  /// Allocates the KV cache and starts the engine thread. The model, backend and tokenizer must
  /// outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(model::LlamaModel& model,
                                                        kernels::Backend& backend,
                                                        const model::Tokenizer& tokenizer,
                                                        const Options& options,
                                                        EngineObserver* observer = nullptr);
  ~Engine();  // Shutdown()

  /// Most tokens (prompt plus output) one request may use.
  int32_t context_limit() const { return context_limit_; }
  const Options& options() const { return options_; }

  /// Queues a request; its outputs go to `sink`. INVALID_ARGUMENT for a request the engine can
  /// never run (empty prompt, tokens outside the vocabulary, prompt + max_tokens over the
  /// context), RESOURCE_EXHAUSTED when max_waiting requests are queued, UNAVAILABLE while
  /// draining, ALREADY_EXISTS for a live id. On error nothing is queued and the sink is unused.
  absl::Status Submit(RequestSpec spec, std::shared_ptr<RequestSink> sink);

  /// Ends a live request with CANCELLED (its blocks freed on the engine thread's next turn).
  /// False if no live request has this id.
  bool Abort(const std::string& id, absl::Status reason = absl::CancelledError("cancelled"));

  /// Stops accepting requests (Submit answers UNAVAILABLE); running ones go on.
  void StopAccepting();
  /// Waits until no request is live or `deadline` passes; true when idle.
  bool WaitIdle(Clock::time_point deadline);
  /// Fails every live request with UNAVAILABLE and stops the thread. Idempotent.
  void Shutdown();

  /// OK, or why the step runner broke (a shard-group rank died or hangs).
  absl::Status RunnerFailure() const;

  /// A recent snapshot (updated every step).
  EngineStats Stats() const;

  /// Subscribes to prefix-cache events; `sink` is called on the engine thread. Returns an id
  /// for Unsubscribe.
  int64_t SubscribeKvEvents(std::function<void(KvEventUpdate)> sink);
  void UnsubscribeKvEvents(int64_t id);

 private:
  Engine(model::LlamaModel& model, const model::Tokenizer& tokenizer,
         std::unique_ptr<model::KvCacheStorage> kv, const Options& options,
         EngineObserver* observer);
  void Loop();
  bool HasWork() const;
  void TakeInbox();
  void ExpireAndAbort();
  void RunStep();
  void FailAll(const absl::Status& status, bool observe);
  // Advances the chunk's sequence; `token` is its next token when the chunk sampled one.
  void ApplyChunk(const ScheduledChunk& chunk, std::optional<SampledToken> token);
  void CommitFullBlocks(Sequence& seq);
  void Finish(Sequence* seq, const RequestOutput& last);
  void Release(Sequence* seq);
  void PublishKvEvents();
  void UpdateStats();
  /// Why the engine can never run `spec`, or empty.
  static std::string CheckSpec(const RequestSpec& spec, int32_t vocab, int32_t context_limit);

  model::LlamaModel& model_;
  LocalStepRunner local_runner_;
  StepRunner& runner_;
  const model::Tokenizer& tokenizer_;
  std::unique_ptr<model::KvCacheStorage> kv_;
  Options options_;
  EngineObserver* observer_;
  int32_t context_limit_;

  // Engine-thread state.
  KvBlockPool pool_;
  Scheduler scheduler_;
  std::unordered_map<std::string, std::unique_ptr<Sequence>> live_;
  uint64_t preemptions_ = 0;
  uint64_t steps_ = 0;
  KvEventUpdate pending_events_;
  struct Subscriber {
    std::function<void(KvEventUpdate)> sink;
    uint64_t next_sequence = 0;
    bool snapshot_sent = false;
  };
  std::unordered_map<int64_t, Subscriber> subscribers_;  // engine thread's copy
  model::StepBatch batch_;

  // Shared with other threads, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;        // work for the engine thread
  std::condition_variable idle_cv_;   // live_count_ reached 0
  std::vector<std::unique_ptr<Sequence>> inbox_;
  std::vector<std::pair<std::string, absl::Status>> aborts_;
  std::vector<std::pair<int64_t, std::function<void(KvEventUpdate)>>> new_subscribers_;
  std::vector<int64_t> gone_subscribers_;
  int64_t next_subscriber_id_ = 1;
  absl::flat_hash_set<std::string> live_ids_;  // ids submitted and not yet finished
  int32_t num_queued_ = 0;                          // inbox plus waiting
  bool accepting_ = true;
  bool stop_ = false;
  absl::Status runner_failure_;  // set once when the runner breaks
  EngineStats stats_;

  std::thread thread_;
};

}  // namespace saola::engine
