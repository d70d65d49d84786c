// Rank 0 of a tensor-parallel shard group on one machine: it starts ranks 1..N-1 as child
// processes (its own binary again, with the hidden `tp-rank` command), meets them in the host
// collectives, and is the engine's StepRunner: each step it broadcasts the batch (step_codec.h)
// and runs its own shard, whose logits are the step's (the output projection is replicated, so
// every rank computes the full logits; rank 0's are used).
//
//   rank 0 (engine thread)                       rank r > 0 (shard_rank.h loop)
//   Run(batch): Broadcast(header) ───────────▶   Broadcast(header)
//               Broadcast(payload) ──────────▶   Broadcast(payload), decode
//               model.Step ◀──── all-reduce ───▶ model.Step (logits dropped)
//
// Failure: a rank that dies or hangs must not hang the group. The collectives fail within the
// timeout (at once when a peer process is gone); Run then answers UNAVAILABLE naming the rank,
// and so does every later call. A watcher thread also reaps the children every 50 ms, so a rank
// that exits while the group is idle is noticed at once, not at the next step: it calls
// `on_failure`. Children get PR_SET_PDEATHSIG (common/child_process.h), so they die with rank 0.
//
// Keep-alive: the other ranks wait for the next step inside a collective, which times out like
// any other; while no step runs, the watcher broadcasts a keep-alive message every timeout / 4 so
// an idle group stays up (and a hung rank is noticed while idle too).
//
// Setup message: a group whose ranks need something from rank 0 before their first step (on GPUs,
// the NCCL unique id their device collectives are made from) gets it as `setup_message`, sent
// once right after every rank has attached, before the watcher starts: so it can never meet a
// keep-alive. The ranks receive it with ReceiveShardGroupSetup (shard_group_rank.h); a group
// without one sends nothing, and its ranks must not call that.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/child_process.h"
#include "worker/engine/step_runner.h"
#include "worker/parallel/collectives.h"
#include "worker/parallel/step_codec.h"

namespace saola::parallel {

struct ShardGroupOptions {
  int32_t world_size = 2;
  /// The command that starts one other rank, e.g. {"/proc/self/exe", "tp-rank", "--model", P};
  /// the group appends --tp-rank R --tp-size N --tp-group NAME --tp-timeout-seconds S.
  std::vector<std::string> rank_argv;
  /// Bounds every collective wait (and the ranks' attach).
  absl::Duration timeout = absl::Seconds(30);
  /// Called once, on the watcher thread, when the group breaks while no step runs (a rank
  /// exited, or a keep-alive failed). A failure inside Run is reported by Run's status instead.
  std::function<void(const absl::Status&)> on_failure;
  /// When non-empty, broadcast to the other ranks once they have attached (see the file comment).
  std::string setup_message;
};

class ShardGroup : public engine::StepRunner {
 public:
  /// Starts ranks 1..N-1 and attaches rank 0's collectives, waiting (up to the timeout) until every
  /// rank has attached. Must be called from a thread that outlives the group (the children's
  /// PR_SET_PDEATHSIG fires when the thread that started them exits).
  static absl::StatusOr<std::unique_ptr<ShardGroup>> Start(ShardGroupOptions options);
  /// Stop().
  ~ShardGroup() override;

  int32_t world_size() const { return options_.world_size; }
  /// Rank 0's collectives: the communicator of rank 0's model.
  Collectives& collectives() { return *collectives_; }
  /// The model Run steps on; call once, before the first Run.
  void AttachModel(model::LlamaModel& model) { model_ = &model; }

  /// Broadcasts `batch` and the KV shape to every rank, then runs rank 0's shard. UNAVAILABLE
  /// naming the rank once the group is broken.
  /// backend_sampling stays on rank 0 (the other ranks drop their logits anyway).
  absl::StatusOr<model::StepOutput> Run(const model::StepBatch& batch,
                                        model::KvCacheStorage& kv) override;
  bool SamplesOnBackend() const override {
    return model_ != nullptr && model_->SamplesOnBackend();
  }

  /// OK, or why the group broke.
  absl::Status failure() const;

  /// Tells the other ranks to exit and waits up to the timeout for them (SIGKILL after), or kills
  /// them at once when the group is broken. Idempotent.
  void Stop() { Stop(nullptr); }
  /// Stop, calling `after_stop_sent` (on the first Stop only) once the stop message is out (or the
  /// group found broken) and before waiting for the ranks: rank 0 releases its device
  /// communicator there, while the other ranks release theirs on their way out.
  void Stop(const std::function<void()>& after_stop_sent);

 private:
  explicit ShardGroup(ShardGroupOptions options) : options_(std::move(options)) {}
  void Watch();
  // Sends one message (header, then payload) to every rank. Requires step_mu_.
  absl::Status SendLocked(StepMessageKind kind, std::span<const uint8_t> payload);
  // Records the first failure; returns the status every later call gets. Describes an exited
  // child by its exit status when one is found.
  absl::Status Break(const absl::Status& cause);
  // The first child that has exited, described, or OK. Requires children_mu_.
  absl::Status ReapLocked();

  ShardGroupOptions options_;
  std::string group_name_;
  std::unique_ptr<Collectives> collectives_;
  model::LlamaModel* model_ = nullptr;

  std::mutex step_mu_;  // one message at a time: a step, a keep-alive or the stop
  std::vector<uint8_t> payload_;
  std::atomic<int64_t> last_send_ns_{0};

  mutable std::mutex children_mu_;
  std::vector<std::unique_ptr<ChildProcess>> children_;  // rank r is children_[r - 1]
  absl::Status failure_;                                 // under children_mu_
  bool stopping_ = false;                                // under children_mu_
  std::condition_variable stop_cv_;

  std::thread watcher_;
};

}  // namespace saola::parallel
