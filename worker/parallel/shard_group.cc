#include "worker/parallel/shard_group.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/parallel/host_collectives.h"

namespace saola::parallel {
namespace {

constexpr auto kWatchInterval = std::chrono::milliseconds(50);

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Unique on the machine: our pid, a counter, and the clock (pids are reused).
std::string NewGroupName() {
  static std::atomic<int> counter{0};
  return absl::StrFormat("tp-%d-%d-%x", getpid(), counter++, NowNs() & 0xffffff);
}

// The setup message: its length (8 bytes, little-endian), then its bytes.
absl::Status SendSetup(Collectives& collectives, const std::string& message) {
  std::array<uint8_t, 8> length;
  for (size_t i = 0; i < length.size(); ++i) {
    length[i] = static_cast<uint8_t>(uint64_t{message.size()} >> (8 * i));
  }
  RETURN_IF_ERROR(collectives.Broadcast(length.data(), length.size(), /*root=*/0));
  // Broadcast does not write the root's buffer.
  return collectives.Broadcast(const_cast<char*>(message.data()), message.size(), /*root=*/0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardGroup>> ShardGroup::Start(ShardGroupOptions options) {
  if (options.world_size < 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--tp-size: a shard group needs 2 or more ranks, not %d",
                        options.world_size));
  }
  if (options.rank_argv.empty()) return absl::InvalidArgumentError("shard group: no command");
  std::unique_ptr<ShardGroup> group(new ShardGroup(std::move(options)));
  const ShardGroupOptions& o = group->options_;
  group->group_name_ = NewGroupName();
  const int64_t timeout_s = std::max<int64_t>(1, absl::ToInt64Seconds(o.timeout));
  for (int32_t rank = 1; rank < o.world_size; ++rank) {
    std::vector<std::string> argv = o.rank_argv;
    argv.insert(argv.end(), {"--tp-rank", std::to_string(rank), "--tp-size",
                             std::to_string(o.world_size), "--tp-group", group->group_name_,
                             "--tp-timeout-seconds", std::to_string(timeout_s)});
    ASSIGN_OR_RETURN(auto child,
                     ChildProcess::Start(absl::StrCat("tensor-parallel rank ", rank), argv));
    child->ForwardStdoutToStderr();  // the ranks print nothing there; never block them
    group->children_.push_back(std::move(child));
  }
  auto collectives = CreateHostCollectives({.group_name = group->group_name_,
                                            .rank = 0,
                                            .world_size = o.world_size,
                                            .timeout = o.timeout});
  if (!collectives.ok()) {
    // A rank that could not start (bad flags, a model it cannot load) exits before attaching:
    // its exit status says more than the attach timeout does.
    std::lock_guard lock(group->children_mu_);
    if (absl::Status exited = group->ReapLocked(); !exited.ok()) return exited;
    return absl::UnavailableError(absl::StrCat("tensor-parallel shard group: ",
                                               collectives.status().message()));
  }
  group->collectives_ = std::move(*collectives);
  if (!o.setup_message.empty()) {
    // Before the watcher: no keep-alive can interleave with it.
    if (absl::Status sent = SendSetup(*group->collectives_, o.setup_message); !sent.ok()) {
      // Broken: Stop (when `group` goes) kills the ranks instead of asking them to stop.
      return group->Break(absl::Status(sent.code(), absl::StrCat("setup: ", sent.message())));
    }
  }
  group->last_send_ns_ = NowNs();
  group->watcher_ = std::thread([g = group.get()] { g->Watch(); });
  return group;
}

ShardGroup::~ShardGroup() { Stop(); }

absl::StatusOr<model::StepOutput> ShardGroup::Run(const model::StepBatch& batch,
                                                  model::KvCacheStorage& kv) {
  if (model_ == nullptr) return absl::FailedPreconditionError("shard group: no model attached");
  // The other ranks never see backend_sampling, so a batch rank 0 would refuse for it alone must
  // be refused before it is sent, or rank 0 would leave the others waiting in a collective.
  for (const model::SequenceStep& s : batch.seqs) {
    if (s.backend_sampling && (s.num_logits != 1 || !model_->SamplesOnBackend())) {
      return absl::InvalidArgumentError("batch: backend_sampling needs one logit row and a "
                                        "backend that samples");
    }
  }
  std::lock_guard lock(step_mu_);
  if (absl::Status broken = failure(); !broken.ok()) return broken;
  EncodeStep(batch, kv.num_blocks(), kv.block_size(), &payload_);
  if (absl::Status sent = SendLocked(StepMessageKind::kStep, payload_); !sent.ok()) {
    return Break(sent);
  }
  absl::StatusOr<model::StepOutput> out = model_->Step(batch, kv);
  // INVALID_ARGUMENT is the batch's own fault, found before any collective ran; every rank
  // rejects the same batch the same way, so the group is still in step.
  if (!out.ok() && out.status().code() != absl::StatusCode::kInvalidArgument) {
    return Break(out.status());
  }
  return out;
}

absl::Status ShardGroup::failure() const {
  std::lock_guard lock(children_mu_);
  return failure_;
}

void ShardGroup::Stop(const std::function<void()>& after_stop_sent) {
  {
    std::lock_guard lock(children_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  bool clean = collectives_ != nullptr && failure().ok();
  if (clean) {
    std::lock_guard lock(step_mu_);
    clean = SendLocked(StepMessageKind::kStop, {}).ok();
  }
  if (after_stop_sent) after_stop_sent();
  std::lock_guard lock(children_mu_);
  for (auto& child : children_) {
    // A rank told to stop exits at once; one that does not within the timeout is killed.
    if (!clean || !child->Wait(options_.timeout).has_value()) child->Signal(SIGKILL);
  }
  children_.clear();  // reaps them (SIGKILL first if still running)
  collectives_.reset();
}

void ShardGroup::Watch() {
  const int64_t keep_alive_ns = absl::ToInt64Nanoseconds(options_.timeout) / 4;
  while (true) {
    absl::Status exited;
    {
      std::unique_lock lock(children_mu_);
      stop_cv_.wait_for(lock, kWatchInterval, [&] { return stopping_; });
      if (stopping_ || !failure_.ok()) return;  // Run reports its own failures
      exited = ReapLocked();
      if (!exited.ok()) failure_ = exited;
    }
    if (exited.ok() && NowNs() - last_send_ns_.load() > keep_alive_ns) {
      std::unique_lock step(step_mu_, std::try_to_lock);  // held: a step is running anyway
      if (step.owns_lock() && failure().ok()) {
        if (absl::Status sent = SendLocked(StepMessageKind::kKeepAlive, {}); !sent.ok()) {
          exited = Break(sent);
        }
      }
    }
    if (!exited.ok()) {
      if (options_.on_failure) options_.on_failure(exited);
      return;
    }
  }
}

absl::Status ShardGroup::SendLocked(StepMessageKind kind, std::span<const uint8_t> payload) {
  auto header = EncodeStepHeader({.kind = kind, .payload_bytes = payload.size()});
  RETURN_IF_ERROR(collectives_->Broadcast(header.data(), header.size(), /*root=*/0));
  if (!payload.empty()) {
    // Broadcast does not write the root's buffer.
    RETURN_IF_ERROR(collectives_->Broadcast(const_cast<uint8_t*>(payload.data()), payload.size(),
                                            /*root=*/0));
  }
  last_send_ns_ = NowNs();
  return absl::OkStatus();
}

absl::Status ShardGroup::Break(const absl::Status& cause) {
  std::lock_guard lock(children_mu_);
  if (!failure_.ok()) return failure_;
  // The collectives notice a dead peer within milliseconds, possibly before the watcher reaps it:
  // reap here so the message carries the rank's exit status.
  absl::Status exited = ReapLocked();
  failure_ = !exited.ok() ? exited
                          : absl::UnavailableError(absl::StrCat("tensor-parallel shard group: ",
                                                                cause.message()));
  return failure_;
}

absl::Status ShardGroup::ReapLocked() {
  for (size_t i = 0; i < children_.size(); ++i) {
    ChildProcess& child = *children_[i];
    if (std::optional<int> status = child.Poll()) {
      return absl::UnavailableError(absl::StrFormat(
          "tensor-parallel rank %d (pid %d) exited unexpectedly: %s", i + 1, child.pid(),
          ChildProcess::DescribeStatus(*status)));
    }
  }
  return absl::OkStatus();
}

}  // namespace saola::parallel
