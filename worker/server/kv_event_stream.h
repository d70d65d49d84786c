// The server side of one Worker.KvEvents stream: subscribes to the engine's prefix-cache events
// and writes them in order. The first message is a snapshot (reset). A subscriber that falls
// more than kMaxPending batches behind is cut off with RESOURCE_EXHAUSTED; it reconnects and
// starts again from a fresh snapshot, so its index is never silently wrong.
#pragma once

#include <deque>
#include <memory>
#include <mutex>

#include "grpcpp/grpcpp.h"
#include "saola/v1/worker.pb.h"
#include "worker/engine/engine.h"

namespace saola::server {

class KvEventStream final : public grpc::ServerWriteReactor<saola::v1::KvEventBatch> {
 public:
  static constexpr size_t kMaxPending = 4096;

  explicit KvEventStream(engine::Engine& engine);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  class Sink;
  void Enqueue(engine::KvEventUpdate update);
  void End(grpc::Status status);
  void Pump();

  engine::Engine& engine_;
  std::shared_ptr<Sink> sink_;
  int64_t subscription_ = 0;

  std::mutex mu_;
  std::deque<saola::v1::KvEventBatch> pending_;
  saola::v1::KvEventBatch in_flight_;
  bool writing_ = false;
  bool ended_ = false;
  bool finish_called_ = false;
  grpc::Status final_status_;
};

}  // namespace saola::server
