#include "worker/server/worker_server.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace saola::server {

saola::v1::ModelCard MakeModelCard(const std::string& name, const model::GgufFile& file,
                                   const model::ModelConfig& config, int32_t context_limit) {
  saola::v1::ModelCard card;
  card.set_id(name);
  card.set_architecture(config.architecture);
  card.set_context_length(static_cast<uint32_t>(context_limit));
  card.set_vocab_size(static_cast<uint32_t>(config.vocab_size));
  // The quantization is the type holding most of the weights' elements.
  std::map<std::string, int64_t> elements_by_type;
  uint64_t parameters = 0;
  for (const model::GgufTensor& t : file.tensors()) {
    parameters += static_cast<uint64_t>(t.num_elements);
    elements_by_type[std::string(kernels::GetDTypeInfo(t.type).name)] += t.num_elements;
  }
  card.set_parameters(parameters);
  int64_t best = -1;
  for (const auto& [type, count] : elements_by_type) {
    if (count > best) {
      best = count;
      card.set_quantization(type);
    }
  }
  return card;
}

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Start(
    const WorkerServerOptions& options, engine::Engine& engine,
    const model::Tokenizer& tokenizer, const model::TokenizerSpec& tokenizer_spec,
    const saola::v1::ModelCard& card, WorkerMetrics* metrics) {
  ServedModel served{.name = card.id(),
                     .context_limit = engine.context_limit(),
                     .tokenizer = &tokenizer};
  saola::v1::WorkerInfo info;
  *info.mutable_model() = card;
  info.set_kv_block_size(engine.options().block_size);
  info.set_kv_num_blocks(engine.options().num_kv_blocks);
  info.set_max_running(engine.options().max_running);
  info.set_max_waiting(engine.options().max_waiting);
  *info.mutable_tokenizer() = TokenizerToProto(tokenizer_spec);
  info.set_block_hash_scheme("fnv1a64-splitmix64-v1");

  auto llm = std::make_unique<LlmService>(engine, served, card, metrics);
  auto worker = std::make_unique<WorkerService>(engine, served, std::move(info), metrics);
  std::unique_ptr<WorkerServer> server(new WorkerServer(engine, std::move(llm), std::move(worker)));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.port),
                           grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->llm_.get());
  builder.RegisterService(server->worker_.get());
  // The tokenizer in GetInfo is a few MiB; allow it (and long prompts) both ways.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("port: cannot listen on ", options.host, ":", options.port));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

WorkerServer::WorkerServer(engine::Engine& engine, std::unique_ptr<LlmService> llm,
                           std::unique_ptr<WorkerService> worker)
    : engine_(engine), llm_(std::move(llm)), worker_(std::move(worker)) {}

WorkerServer::~WorkerServer() { Drain(std::chrono::milliseconds(0)); }

void WorkerServer::SetNotServing() { server_->GetHealthCheckService()->SetServingStatus(false); }

void WorkerServer::Drain(std::chrono::milliseconds drain) {
  if (drained_ || !server_) return;
  drained_ = true;
  server_->GetHealthCheckService()->SetServingStatus(false);
  engine_.StopAccepting();
  engine_.WaitIdle(engine::Clock::now() + drain);
  // Whatever is still running fails with UNAVAILABLE; its streams end with that status.
  engine_.Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
}

}  // namespace saola::server
