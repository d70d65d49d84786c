#include "worker/engine/engine.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace saola::engine {
namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(model::LlamaModel& model,
                                                       kernels::Backend& backend,
                                                       const model::Tokenizer& tokenizer,
                                                       const Options& options,
                                                       EngineObserver* observer) {
  // At least 3: with a budget of 2, a prompt with 3 tokens left could never be scheduled (2
  // would leave one, and one-token chunks are not allowed, see scheduler.h).
  if (options.max_batch_tokens < 3 || options.max_batch_tokens > model.max_batch_tokens()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "max_batch_tokens: %d is outside 3..%d", options.max_batch_tokens,
        model.max_batch_tokens()));
  }
  if (options.max_running < 1 || options.max_waiting < 0 || options.num_kv_blocks < 1 ||
      options.block_size < 1) {
    return absl::InvalidArgumentError(
        "max_running, max_waiting, num_kv_blocks and block_size must be positive");
  }
  ASSIGN_OR_RETURN(auto kv, model::KvCacheStorage::Create(
                                backend, model.KvShape(options.num_kv_blocks, options.block_size)));
  return std::unique_ptr<Engine>(new Engine(model, tokenizer, std::move(kv), options, observer));
}

Engine::Engine(model::LlamaModel& model, const model::Tokenizer& tokenizer,
               std::unique_ptr<model::KvCacheStorage> kv, const Options& options,
               EngineObserver* observer)
    : model_(model),
      local_runner_(model),
      runner_(options.step_runner != nullptr ? *options.step_runner : local_runner_),
      tokenizer_(tokenizer),
      kv_(std::move(kv)),
      options_(options),
      observer_(observer),
      context_limit_(std::min(model.config().context_length,
                              options.num_kv_blocks * options.block_size)),
      pool_(options.num_kv_blocks, options.block_size),
      scheduler_({.max_batch_tokens = options.max_batch_tokens,
                  .max_running = options.max_running,
                  .prefix_cache = options.prefix_cache},
                 pool_) {
  pool_.SetEventListener([this](const KvEvent& event) {
    if (event.kind == KvEvent::Kind::kStored) {
      pending_events_.stored.emplace_back(event.parent_hash, event.block_hashes);
    } else {
      pending_events_.removed.insert(pending_events_.removed.end(), event.block_hashes.begin(),
                                     event.block_hashes.end());
    }
  });
  UpdateStats();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

std::string Engine::CheckSpec(const RequestSpec& spec, int32_t vocab, int32_t context_limit) {
  if (spec.prompt.empty()) return "prompt: no tokens";
  for (int32_t id : spec.prompt) {
    if (id < 0 || id >= vocab) {
      return absl::StrFormat("prompt: token id %d is outside the vocabulary (0..%d)", id,
                             vocab - 1);
    }
  }
  if (spec.max_tokens < 1) return "max_tokens: must be at least 1";
  const int64_t total = static_cast<int64_t>(spec.prompt.size()) + spec.max_tokens;
  if (total > context_limit) {
    return absl::StrFormat("max_tokens: prompt (%d tokens) plus max_tokens (%d) exceeds the "
                           "context of %d tokens",
                           spec.prompt.size(), spec.max_tokens, context_limit);
  }
  return "";
}

absl::Status Engine::Submit(RequestSpec spec, std::shared_ptr<RequestSink> sink) {
  if (std::string error = CheckSpec(spec, tokenizer_.vocab_size(), context_limit_);
      !error.empty()) {
    return absl::InvalidArgumentError(error);
  }
  auto seq = std::make_unique<Sequence>(std::move(spec), std::move(sink), tokenizer_, pool_);
  {
    std::lock_guard lock(mu_);
    if (!runner_failure_.ok()) return runner_failure_;
    if (!accepting_ || stop_) return absl::UnavailableError("the worker is draining");
    if (num_queued_ >= options_.max_waiting) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "queue: %d requests are already waiting (--max-waiting)", num_queued_));
    }
    if (!live_ids_.insert(seq->id()).second) {
      return absl::AlreadyExistsError(absl::StrFormat("request_id: '%s' is already live",
                                                      seq->id()));
    }
    ++num_queued_;
    inbox_.push_back(std::move(seq));
  }
  cv_.notify_one();
  return absl::OkStatus();
}

bool Engine::Abort(const std::string& id, absl::Status reason) {
  {
    std::lock_guard lock(mu_);
    if (!live_ids_.contains(id)) return false;
    aborts_.emplace_back(id, std::move(reason));
  }
  cv_.notify_one();
  return true;
}

void Engine::StopAccepting() {
  std::lock_guard lock(mu_);
  accepting_ = false;
  stats_.accepting = false;
}

bool Engine::WaitIdle(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_until(lock, deadline, [&] { return live_ids_.empty(); });
}

void Engine::Shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    accepting_ = false;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

absl::Status Engine::RunnerFailure() const {
  std::lock_guard lock(mu_);
  return runner_failure_;
}

EngineStats Engine::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

int64_t Engine::SubscribeKvEvents(std::function<void(KvEventUpdate)> sink) {
  int64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_subscriber_id_++;
    new_subscribers_.emplace_back(id, std::move(sink));
  }
  cv_.notify_one();
  return id;
}

void Engine::UnsubscribeKvEvents(int64_t id) {
  {
    std::lock_guard lock(mu_);
    gone_subscribers_.push_back(id);
  }
  cv_.notify_one();
}

bool Engine::HasWork() const {
  return scheduler_.num_running() > 0 || scheduler_.num_waiting() > 0;
}

void Engine::TakeInbox() {
  std::vector<std::unique_ptr<Sequence>> inbox;
  std::vector<std::pair<int64_t, std::function<void(KvEventUpdate)>>> subscribers;
  std::vector<int64_t> gone;
  {
    std::lock_guard lock(mu_);
    inbox.swap(inbox_);
    subscribers.swap(new_subscribers_);
    gone.swap(gone_subscribers_);
  }
  for (auto& seq : inbox) {
    Sequence* raw = seq.get();
    live_.emplace(raw->id(), std::move(seq));
    scheduler_.Add(raw);
  }
  for (int64_t id : gone) subscribers_.erase(id);
  for (auto& [id, sink] : subscribers) {
    if (std::find(gone.begin(), gone.end(), id) != gone.end()) continue;
    // A new subscriber starts from a snapshot of the whole cache.
    KvEventUpdate snapshot;
    snapshot.reset = true;
    for (const auto& [parent, hash] : pool_.SnapshotCached()) {
      snapshot.stored.push_back({parent, {hash}});
    }
    Subscriber sub{.sink = std::move(sink), .next_sequence = 1, .snapshot_sent = true};
    sub.sink(std::move(snapshot));
    subscribers_.emplace(id, std::move(sub));
  }
}

void Engine::ExpireAndAbort() {
  std::vector<std::pair<std::string, absl::Status>> aborts;
  {
    std::lock_guard lock(mu_);
    aborts.swap(aborts_);
  }
  for (auto& [id, status] : aborts) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    Sequence* seq = it->second.get();
    seq->Fail(status);
    if (observer_) observer_->OnFinished(*seq, FinishReason::kNone, status,
                                         Seconds(Clock::now() - seq->arrival_time));
    Release(seq);
  }
  const Clock::time_point now = Clock::now();
  std::vector<Sequence*> expired;
  for (auto& [id, seq] : live_) {
    if (seq->spec().deadline <= now) expired.push_back(seq.get());
  }
  for (Sequence* seq : expired) {
    const absl::Status status = absl::DeadlineExceededError("deadline exceeded");
    seq->Fail(status);
    if (observer_) observer_->OnFinished(*seq, FinishReason::kNone, status,
                                         Seconds(now - seq->arrival_time));
    Release(seq);
  }
}

void Engine::Loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || HasWork() || !inbox_.empty() || !aborts_.empty() ||
               !new_subscribers_.empty() || !gone_subscribers_.empty();
      });
      if (stop_) break;
    }
    TakeInbox();
    ExpireAndAbort();
    if (HasWork()) RunStep();
    PublishKvEvents();
    UpdateStats();
  }
  // Shutdown: every live request fails; the sinks learn it at once.
  TakeInbox();
  FailAll(absl::UnavailableError("the worker is shutting down"), /*observe=*/false);
  UpdateStats();
}

void Engine::FailAll(const absl::Status& status, bool observe) {
  std::vector<Sequence*> all;
  for (auto& [id, seq] : live_) all.push_back(seq.get());
  for (Sequence* seq : all) {
    seq->Fail(status);
    if (observe && observer_) {
      observer_->OnFinished(*seq, FinishReason::kNone, status,
                            Seconds(Clock::now() - seq->arrival_time));
    }
    Release(seq);
  }
}

void Engine::RunStep() {
  StepPlan plan = scheduler_.Schedule();
  preemptions_ += plan.preempted.size();
  if (observer_) {
    for (size_t i = 0; i < plan.preempted.size(); ++i) observer_->OnPreempted();
  }
  const Clock::time_point now = Clock::now();
  for (Sequence* seq : plan.admitted) {
    if (seq->first_scheduled_time) continue;
    seq->first_scheduled_time = now;
    if (observer_) observer_->OnAdmitted(*seq, Seconds(now - seq->arrival_time));
  }
  {
    std::lock_guard lock(mu_);
    num_queued_ = static_cast<int32_t>(inbox_.size()) + scheduler_.num_waiting();
  }
  if (plan.empty()) {
    // Work exists but none fits this step (cannot happen with a sane pool); do not spin.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  ++steps_;

  batch_.token_ids.clear();
  batch_.seqs.clear();
  // Where the backend samples (a GPU), the requests that need nothing but the token are sampled
  // there and only their ids come back; the rest bring their logits row to the host sampler.
  const bool backend_samples = runner_.SamplesOnBackend();
  for (const ScheduledChunk& chunk : plan.chunks) {
    Sequence& seq = *chunk.seq;
    const auto begin = seq.tokens().begin() + seq.num_computed;
    batch_.token_ids.insert(batch_.token_ids.end(), begin, begin + chunk.num_tokens);
    batch_.seqs.push_back({.num_tokens = chunk.num_tokens,
                           .context_len = seq.num_computed + chunk.num_tokens,
                           .block_table = seq.lease.blocks(),
                           .num_logits = chunk.sample ? 1 : 0});
    if (chunk.sample && backend_samples && seq.sampler().SamplesOnBackend()) {
      batch_.seqs.back().backend_sampling = seq.sampler().NextRowSampling();
    }
  }
  absl::StatusOr<model::StepOutput> logits = runner_.Run(batch_, *kv_);
  if (!logits.ok() && IsRunnerBroken(logits.status())) {
    // A shard-group rank died or hangs: no step can run again. Everything fails at once, with
    // the runner's message (it names the rank), and the owner is told so it can exit.
    const absl::Status failure = absl::UnavailableError(logits.status().message());
    {
      std::lock_guard lock(mu_);
      runner_failure_ = failure;
      accepting_ = false;
    }
    // The owner hears first, so that health is NOT_SERVING before any client sees the failure.
    if (options_.on_runner_broken) options_.on_runner_broken(failure);
    TakeInbox();
    FailAll(failure, /*observe=*/true);
    return;
  }
  if (!logits.ok()) {
    // A bug, not bad input: every request was checked at Submit. Fail the step's requests.
    for (const ScheduledChunk& chunk : plan.chunks) {
      chunk.seq->Fail(absl::InternalError(logits.status().message()));
      Release(chunk.seq);
    }
    return;
  }
  const int32_t vocab = model_.config().vocab_size;
  size_t host_row = 0;
  size_t backend_row = 0;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& chunk = plan.chunks[i];
    std::optional<SampledToken> token;
    if (batch_.seqs[i].backend_sampling) {
      token = SampledToken{.id = logits->sampled[backend_row++]};
    } else if (chunk.sample) {
      token = chunk.seq->sampler().Sample(logits->logits.subspan(host_row++ * vocab, vocab));
    }
    ApplyChunk(chunk, std::move(token));
  }
}

void Engine::ApplyChunk(const ScheduledChunk& chunk, std::optional<SampledToken> token) {
  Sequence* seq = chunk.seq;
  seq->num_computed += chunk.num_tokens;
  CommitFullBlocks(*seq);
  if (!token) return;
  RequestOutput out = seq->AppendToken(*token, context_limit_);
  const Clock::time_point now = Clock::now();
  if (!seq->first_token_time) {
    seq->first_token_time = now;
    if (observer_) observer_->OnFirstToken(Seconds(now - seq->arrival_time));
  } else if (observer_) {
    observer_->OnToken(Seconds(now - seq->last_token_time));
  }
  seq->last_token_time = now;
  if (out.finished) {
    Finish(seq, out);
    seq->Emit(std::move(out));
    Release(seq);
  } else {
    seq->Emit(std::move(out));
  }
}

void Engine::CommitFullBlocks(Sequence& seq) {
  if (!options_.prefix_cache) return;
  const int32_t bs = options_.block_size;
  const int32_t full = seq.num_computed / bs;
  if (seq.num_committed_blocks >= full) return;
  const std::vector<uint64_t>& hashes = seq.block_hashes();
  for (int32_t b = seq.num_committed_blocks; b < full; ++b) {
    const uint64_t parent = b == 0 ? seq.root_hash() : hashes[b - 1];
    pool_.Commit(seq.lease, b, parent, hashes[b],
                 std::span<const int32_t>(seq.tokens()).subspan(b * bs, bs));
  }
  seq.num_committed_blocks = full;
}

void Engine::Finish(Sequence* seq, const RequestOutput& last) {
  if (observer_) {
    observer_->OnFinished(*seq, last.reason, absl::OkStatus(),
                          Seconds(Clock::now() - seq->arrival_time));
  }
}

void Engine::Release(Sequence* seq) {
  scheduler_.Remove(seq);
  seq->lease.Reset();
  const std::string id = seq->id();
  live_.erase(id);  // destroys seq
  std::lock_guard lock(mu_);
  live_ids_.erase(id);
  num_queued_ = static_cast<int32_t>(inbox_.size()) + scheduler_.num_waiting();
  if (live_ids_.empty()) idle_cv_.notify_all();
}

void Engine::PublishKvEvents() {
  if (pending_events_.stored.empty() && pending_events_.removed.empty()) return;
  for (auto& [id, sub] : subscribers_) {
    KvEventUpdate update = pending_events_;
    update.sequence = sub.next_sequence++;
    sub.sink(std::move(update));
  }
  pending_events_ = KvEventUpdate{};
}

void Engine::UpdateStats() {
  EngineStats s;
  s.running = scheduler_.num_running();
  s.waiting = scheduler_.num_waiting();
  s.kv_blocks = pool_.num_blocks();
  s.kv_blocks_in_use = pool_.num_in_use();
  s.kv_blocks_cached = pool_.num_cached();
  s.kv_blocks_free = pool_.num_free();
  for (const Sequence* seq : scheduler_.running()) {
    s.kv_slots_allocated += int64_t{seq->lease.size()} * options_.block_size;
    s.kv_tokens_stored += seq->num_computed;
  }
  s.prefix_queried_tokens = scheduler_.prefix_stats().queried_tokens;
  s.prefix_hit_tokens = scheduler_.prefix_stats().hit_tokens;
  s.preemptions = preemptions_;
  s.steps = steps_;
  if (observer_) observer_->OnStep(s);
  std::lock_guard lock(mu_);
  s.waiting += static_cast<int32_t>(inbox_.size());
  s.accepting = accepting_;
  stats_ = s;
}

}  // namespace saola::engine
