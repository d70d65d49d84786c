// The server side of one Generate stream (gRPC callback API). It submits the request to the
// engine and writes the engine's outputs to the client in order, one write in flight at a time.
//
// Lifetimes: gRPC deletes the reactor in OnDone, while the engine may still hold the request's
// sink. The sink is therefore a separate shared object that forwards to the reactor under a
// mutex and drops outputs once the reactor is gone. A client cancel (or its deadline) aborts the
// request in the engine, which frees its KV blocks on its next turn.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "grpcpp/grpcpp.h"
#include "saola/v1/llm.pb.h"
#include "worker/engine/engine.h"

namespace saola::server {

class GenerateStream final : public grpc::ServerWriteReactor<saola::v1::GenerateResponse> {
 public:
  /// Starts the stream: submits `spec`. When the engine refuses it (full queue, draining, bad
  /// request) the call finishes at once with that status and `on_rejected` (if set) runs.
  static GenerateStream* Start(engine::Engine& engine, engine::RequestSpec spec,
                               const std::function<void()>& on_rejected = {});

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  class Sink;
  GenerateStream(engine::Engine& engine, std::string id);
  /// Called by the sink on the engine thread.
  void Enqueue(engine::RequestOutput output);
  /// Starts the next write or the finish; mu_ held.
  void Pump();

  engine::Engine& engine_;
  const std::string id_;
  std::shared_ptr<Sink> sink_;

  std::mutex mu_;
  std::deque<saola::v1::GenerateResponse> pending_;
  saola::v1::GenerateResponse in_flight_;
  bool writing_ = false;
  bool ended_ = false;           // the engine sent its last output
  bool finish_called_ = false;
  grpc::Status final_status_;
};

/// The engine's status as a gRPC status.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace saola::server

namespace saola::server {

/// Finishes a Generate call at once with `status` (a request refused before the engine).
grpc::ServerWriteReactor<saola::v1::GenerateResponse>* RejectGenerate(const grpc::Status& status);

/// The engine deadline for a call: its gRPC deadline, if it has one.
engine::Clock::time_point EngineDeadline(const grpc::CallbackServerContext& context);

}  // namespace saola::server
