#include "worker/server/kv_event_stream.h"

namespace saola::server {

KvEventStream::KvEventStream(engine::Engine& engine)
    : engine_(engine), handle_(std::make_shared<StreamHandle<KvEventStream>>(this)) {
  subscription_ = engine_.SubscribeKvEvents(
      [handle = handle_](engine::KvEventUpdate update) {
        handle->With([&](KvEventStream& stream) { stream.Enqueue(update); });
      });
}

void KvEventStream::Enqueue(const engine::KvEventUpdate& update) {
  saola::v1::KvEventBatch batch;
  batch.set_reset(update.reset);
  batch.set_sequence(update.sequence);
  for (const auto& [parent, chain] : update.stored) {
    saola::v1::KvBlocksStored* stored = batch.add_stored();
    stored->set_parent_hash(parent);
    for (uint64_t h : chain) stored->add_block_hashes(h);
  }
  for (uint64_t h : update.removed) batch.add_removed(h);
  if (!Write(std::move(batch), /*last=*/false, kMaxPending)) {
    End(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "kv events: subscriber too slow; reconnect for a snapshot"));
  }
}

void KvEventStream::OnCancel() {
  End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the subscriber"));
}

void KvEventStream::OnDone() {
  engine_.UnsubscribeKvEvents(subscription_);
  handle_->Detach();
  delete this;
}

}  // namespace saola::server
