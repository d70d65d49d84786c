// saola.v1.Llm on a worker: the public API served straight from this worker's engine (the
// router serves the same service in front of many workers). Response caches are the router's:
// a worker always answers with cache_source NONE.
#pragma once

#include "saola/v1/llm.grpc.pb.h"
#include "worker/engine/engine.h"
#include "worker/server/metrics.h"
#include "worker/server/request_builder.h"
#include "worker/server/seed_source.h"

namespace saola::server {

class LlmService final : public saola::v1::Llm::CallbackService {
 public:
  LlmService(engine::Engine& engine, ServedModel model, saola::v1::ModelCard card,
             WorkerMetrics* metrics);

  grpc::ServerWriteReactor<saola::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const saola::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const saola::v1::ListModelsRequest* request,
                                       saola::v1::ListModelsResponse* response) override;

 private:
  engine::Engine& engine_;
  ServedModel model_;
  saola::v1::ModelCard card_;
  WorkerMetrics* metrics_;
  SeedSource seeds_;
};

}  // namespace saola::server
