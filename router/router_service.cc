#include "router/router_service.h"

#include "router/generate_call.h"

namespace saola::router {

grpc::ServerWriteReactor<saola::v1::GenerateResponse>* RouterService::Generate(
    grpc::CallbackServerContext* context, const saola::v1::GenerateRequest* request) {
  return new RouterGenerateStream(ctx_, context, request);
}

grpc::ServerUnaryReactor* RouterService::ListModels(grpc::CallbackServerContext* context,
                                                    const saola::v1::ListModelsRequest* request,
                                                    saola::v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::StatusOr<std::string> tenant = ctx_.api_keys->Resolve([&] {
        std::multimap<std::string, std::string> metadata;
        for (const auto& [k, v] : context->client_metadata()) {
          metadata.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
        }
        return metadata;
      }());
      !tenant.ok()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                 std::string(tenant.status().message())));
    return reactor;
  }
  std::shared_ptr<const WorkerModel> model = ctx_.pool->model();
  if (model == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no worker is ready yet"));
    return reactor;
  }
  *response->add_models() = model->info.model();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace saola::router
