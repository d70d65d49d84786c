#include "worker/server/llm_service.h"

#include "worker/server/generate_stream.h"

namespace saola::server {

LlmService::LlmService(engine::Engine& engine, ServedModel model, saola::v1::ModelCard card,
                       WorkerMetrics* metrics)
    : engine_(engine),
      model_(std::move(model)),
      card_(std::move(card)),
      metrics_(metrics) {}

grpc::ServerWriteReactor<saola::v1::GenerateResponse>* LlmService::Generate(
    grpc::CallbackServerContext* context, const saola::v1::GenerateRequest* request) {
  return ServeGenerate(engine_, *context, BuildRequestSpec(*request, model_, seeds_.Next()),
                       metrics_);
}

grpc::ServerUnaryReactor* LlmService::ListModels(grpc::CallbackServerContext* context,
                                                 const saola::v1::ListModelsRequest* request,
                                                 saola::v1::ListModelsResponse* response) {
  *response->add_models() = card_;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace saola::server
