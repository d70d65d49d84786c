// The server side of one Generate stream (gRPC callback API): submits the request to the engine
// and writes the engine's outputs to the client in order (OrderedWriter). A client cancel (or its
// deadline) aborts the request in the engine, which frees its KV blocks on its next turn; the
// engine's failure output then finishes the call.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "saola/v1/llm.pb.h"
#include "worker/engine/engine.h"
#include "common/ordered_writer.h"

namespace saola::server {

class GenerateStream final : public OrderedWriter<saola::v1::GenerateResponse> {
 public:
  /// Starts the stream: submits `spec`. When the engine refuses it (full queue, draining, bad
  /// request) the call finishes at once with that status and `on_rejected` (if set) runs.
  static GenerateStream* Start(engine::Engine& engine, engine::RequestSpec spec,
                               const std::function<void()>& on_rejected = {});

  void OnCancel() override;
  void OnDone() override;

 private:
  class Sink;
  GenerateStream(engine::Engine& engine, std::string id);
  /// Called through the sink on the engine thread.
  void Enqueue(engine::RequestOutput output);
  void OnClientGone() override;

  engine::Engine& engine_;
  const std::string id_;
  std::shared_ptr<StreamHandle<GenerateStream>> handle_;
};

/// The engine's status as a gRPC status.
grpc::Status ToGrpcStatus(const absl::Status& status);

class WorkerMetrics;

/// Serves a Generate call: refuses it at once when `spec` is an error, otherwise gives it the
/// call's deadline and starts its stream. Refusals (here or by the engine) count in `metrics`.
grpc::ServerWriteReactor<saola::v1::GenerateResponse>* ServeGenerate(
    engine::Engine& engine, grpc::CallbackServerContext& context,
    absl::StatusOr<engine::RequestSpec> spec, WorkerMetrics* metrics);

}  // namespace saola::server
