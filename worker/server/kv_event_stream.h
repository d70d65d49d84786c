// The server side of one Worker.KvEvents stream: subscribes to the engine's prefix-cache events
// and writes them in order (OrderedWriter). The first message is a snapshot (reset). A
// subscriber that falls more than kMaxPending batches behind is cut off with RESOURCE_EXHAUSTED;
// it reconnects and starts again from a fresh snapshot, so its index is never silently wrong.
#pragma once

#include <memory>

#include "grpcpp/grpcpp.h"
#include "saola/v1/worker.pb.h"
#include "worker/engine/engine.h"
#include "common/ordered_writer.h"

namespace saola::server {

class KvEventStream final : public OrderedWriter<saola::v1::KvEventBatch> {
 public:
  static constexpr size_t kMaxPending = 4096;

  explicit KvEventStream(engine::Engine& engine);

  void OnCancel() override;
  void OnDone() override;

 private:
  /// Called through the handle on the engine thread.
  void Enqueue(const engine::KvEventUpdate& update);

  engine::Engine& engine_;
  std::shared_ptr<StreamHandle<KvEventStream>> handle_;
  int64_t subscription_ = 0;
};

}  // namespace saola::server
