// The router's public saola.v1.Llm service: the same API as a worker's, answered through the
// caches and the worker pool (generate_call.h).
#pragma once

#include "router/router_context.h"
#include "saola/v1/llm.grpc.pb.h"

namespace saola::router {

class RouterService final : public saola::v1::Llm::CallbackService {
 public:
  explicit RouterService(RouterContext& ctx) : ctx_(ctx) {}

  grpc::ServerWriteReactor<saola::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const saola::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const saola::v1::ListModelsRequest* request,
                                       saola::v1::ListModelsResponse* response) override;

 private:
  RouterContext& ctx_;
};

}  // namespace saola::router
