#include "worker/server/kv_event_stream.h"

namespace saola::server {

// Forwards engine events to the stream while it exists (see GenerateStream::Sink for why the
// mutex is recursive).
class KvEventStream::Sink {
 public:
  explicit Sink(KvEventStream* stream) : stream_(stream) {}
  void Push(engine::KvEventUpdate update) {
    std::lock_guard lock(mu_);
    if (stream_ != nullptr) stream_->Enqueue(std::move(update));
  }
  void Detach() {
    std::lock_guard lock(mu_);
    stream_ = nullptr;
  }

 private:
  std::recursive_mutex mu_;
  KvEventStream* stream_;
};

KvEventStream::KvEventStream(engine::Engine& engine)
    : engine_(engine), sink_(std::make_shared<Sink>(this)) {
  std::shared_ptr<Sink> sink = sink_;
  subscription_ = engine_.SubscribeKvEvents(
      [sink](engine::KvEventUpdate update) { sink->Push(std::move(update)); });
}

void KvEventStream::Enqueue(engine::KvEventUpdate update) {
  {
    std::lock_guard lock(mu_);
    if (ended_) return;
    if (pending_.size() >= kMaxPending) {
      ended_ = true;
      pending_.clear();
      final_status_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "kv events: subscriber too slow; reconnect for a snapshot");
    } else {
      saola::v1::KvEventBatch batch;
      batch.set_reset(update.reset);
      batch.set_sequence(update.sequence);
      for (const auto& [parent, chain] : update.stored) {
        saola::v1::KvBlocksStored* stored = batch.add_stored();
        stored->set_parent_hash(parent);
        for (uint64_t h : chain) stored->add_block_hashes(h);
      }
      for (uint64_t h : update.removed) batch.add_removed(h);
      pending_.push_back(std::move(batch));
    }
  }
  Pump();
}

void KvEventStream::Pump() {
  enum class Action { kNone, kWrite, kFinish } action = Action::kNone;
  grpc::Status status;
  {
    std::lock_guard lock(mu_);
    if (writing_ || finish_called_) return;
    if (!pending_.empty()) {
      in_flight_ = std::move(pending_.front());
      pending_.pop_front();
      writing_ = true;
      action = Action::kWrite;
    } else if (ended_) {
      finish_called_ = true;
      status = final_status_;
      action = Action::kFinish;
    }
  }
  if (action == Action::kWrite) StartWrite(&in_flight_);
  if (action == Action::kFinish) Finish(status);
}

void KvEventStream::End(grpc::Status status) {
  {
    std::lock_guard lock(mu_);
    if (!ended_) {
      ended_ = true;
      final_status_ = std::move(status);
    }
    pending_.clear();
  }
  Pump();
}

void KvEventStream::OnWriteDone(bool ok) {
  {
    std::lock_guard lock(mu_);
    writing_ = false;
  }
  if (!ok) {
    End(grpc::Status(grpc::StatusCode::CANCELLED, "the subscriber went away"));
    return;
  }
  Pump();
}

void KvEventStream::OnCancel() {
  End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the subscriber"));
}

void KvEventStream::OnDone() {
  engine_.UnsubscribeKvEvents(subscription_);
  sink_->Detach();
  delete this;
}

}  // namespace saola::server
