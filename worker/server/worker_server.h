// The worker's gRPC server: saola.v1.Llm, saola.v1.Worker, grpc.health.v1.Health and server
// reflection (so grpcurl works without the .proto files), on one port.
//
// Draining (SIGTERM): health turns NOT_SERVING, new requests get UNAVAILABLE, requests in flight
// finish within the drain time, then whatever is left fails with UNAVAILABLE and the server
// stops.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "worker/engine/engine.h"
#include "worker/model/gguf.h"
#include "worker/model/model_config.h"
#include "worker/model/tokenizer.h"
#include "worker/server/llm_service.h"
#include "worker/server/metrics.h"
#include "worker/server/worker_service.h"

namespace saola::server {

struct WorkerServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;             // 0: any free port (see port())
};

/// The served model's description, for ListModels and GetInfo.
saola::v1::ModelCard MakeModelCard(const std::string& name, const model::GgufFile& file,
                                   const model::ModelConfig& config, int32_t context_limit);

class WorkerServer {
 public:
  /// Builds and starts the server. `tokenizer_spec` is the spec as read from the file (GetInfo
  /// sends it to routers). Everything passed in must outlive the server.
  static absl::StatusOr<std::unique_ptr<WorkerServer>> Start(
      const WorkerServerOptions& options, engine::Engine& engine,
      const model::Tokenizer& tokenizer, const model::TokenizerSpec& tokenizer_spec,
      const saola::v1::ModelCard& card, WorkerMetrics* metrics);
  ~WorkerServer();

  int port() const { return port_; }

  /// Health turns NOT_SERVING (for good); everything else goes on. Thread-safe. For a worker
  /// that can no longer run steps (its shard group broke) and is about to exit.
  void SetNotServing();

  /// Drains: NOT_SERVING, no new requests, waits up to `drain` for requests in flight, fails the
  /// rest, and shuts the server down.
  void Drain(std::chrono::milliseconds drain);

 private:
  WorkerServer(engine::Engine& engine, std::unique_ptr<LlmService> llm,
               std::unique_ptr<WorkerService> worker);

  engine::Engine& engine_;
  std::unique_ptr<LlmService> llm_;
  std::unique_ptr<WorkerService> worker_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool drained_ = false;
};

}  // namespace saola::server
