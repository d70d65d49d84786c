#include "worker/server/worker_service.h"

#include "worker/server/generate_stream.h"
#include "worker/server/kv_event_stream.h"

namespace saola::server {
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

saola::v1::Tokenizer TokenizerToProto(const model::TokenizerSpec& spec) {
  saola::v1::Tokenizer t;
  t.set_model(spec.model);
  t.set_pre(spec.pre);
  for (std::string_view token : spec.tokens) t.add_tokens(std::string(token));
  for (int32_t type : spec.token_types) t.add_token_types(type);
  for (std::string_view merge : spec.merges) t.add_merges(std::string(merge));
  t.set_bos_id(spec.bos_id);
  t.set_eos_id(spec.eos_id);
  t.set_eot_id(spec.eot_id);
  t.set_add_bos(spec.add_bos);
  t.set_add_eos(spec.add_eos);
  t.set_chat_template(spec.chat_template);
  return t;
}

WorkerService::WorkerService(engine::Engine& engine, ServedModel model,
                             saola::v1::WorkerInfo info, WorkerMetrics* metrics)
    : engine_(engine),
      model_(std::move(model)),
      info_(std::move(info)),
      metrics_(metrics) {}

grpc::ServerWriteReactor<saola::v1::GenerateResponse>* WorkerService::Generate(
    grpc::CallbackServerContext* context, const saola::v1::WorkerGenerateRequest* request) {
  return ServeGenerate(engine_, *context, BuildRequestSpec(*request, model_, seeds_.Next()),
                       metrics_);
}

grpc::ServerUnaryReactor* WorkerService::GetInfo(grpc::CallbackServerContext* context,
                                                 const saola::v1::GetInfoRequest* request,
                                                 saola::v1::WorkerInfo* response) {
  *response = info_;
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WorkerService::Stats(grpc::CallbackServerContext* context,
                                               const saola::v1::StatsRequest* request,
                                               saola::v1::WorkerStats* response) {
  const engine::EngineStats s = engine_.Stats();
  response->set_running(s.running);
  response->set_waiting(s.waiting);
  response->set_kv_usage(s.kv_blocks > 0 ? float(s.kv_blocks_in_use) / s.kv_blocks : 0.0f);
  response->set_kv_blocks_in_use(s.kv_blocks_in_use);
  response->set_kv_blocks_cached(s.kv_blocks_cached);
  response->set_kv_blocks_free(s.kv_blocks_free);
  response->set_kv_slots_allocated(s.kv_slots_allocated);
  response->set_kv_tokens_stored(s.kv_tokens_stored);
  response->set_prefix_queried_tokens(s.prefix_queried_tokens);
  response->set_prefix_hit_tokens(s.prefix_hit_tokens);
  response->set_serving(s.accepting);
  return Done(context, grpc::Status::OK);
}

grpc::ServerWriteReactor<saola::v1::KvEventBatch>* WorkerService::KvEvents(
    grpc::CallbackServerContext* context, const saola::v1::KvEventsRequest* request) {
  return new KvEventStream(engine_);
}

grpc::ServerUnaryReactor* WorkerService::Abort(grpc::CallbackServerContext* context,
                                               const saola::v1::AbortRequest* request,
                                               saola::v1::AbortResponse* response) {
  if (request->request_id().empty()) {
    return Done(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      "request_id: empty"));
  }
  response->set_found(
      engine_.Abort(request->request_id(), absl::CancelledError("aborted by the router")));
  return Done(context, grpc::Status::OK);
}

}  // namespace saola::server
