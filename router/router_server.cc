#include "router/router_server.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cache/semantic/minilm_embedder.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace saola::router {

absl::StatusOr<std::unique_ptr<RouterServer>> RouterServer::Start(const RouterOptions& options) {
  std::unique_ptr<RouterServer> s(new RouterServer());
  s->options_ = options;
  if (!options.api_keys_file.empty()) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::Load(options.api_keys_file);
    if (!keys.ok()) return keys.status();
    s->api_keys_ = *std::move(keys);
  }
  absl::StatusOr<std::vector<WorkerTarget>> targets = ParseWorkerTargets(options.workers);
  if (!targets.ok()) return targets.status();
  absl::StatusOr<std::unique_ptr<routing::RoutingPolicy>> policy =
      routing::MakeRoutingPolicy(options.policy, options.routing);
  if (!policy.ok()) return policy.status();
  s->policy_ = *std::move(policy);

  if (options.exact_cache) {
    cache::ExactCacheOptions cache_options;
    cache_options.memory.capacity_bytes = static_cast<size_t>(options.exact_cache_mb) << 20;
    cache_options.memory.ttl = options.cache_ttl;
    cache_options.redis.ttl = options.cache_ttl;
    absl::StatusOr<std::unique_ptr<cache::ExactCache>> exact =
        cache::MakeExactCache(options.redis_url, cache_options);
    if (!exact.ok()) return exact.status();
    s->exact_ = *std::move(exact);
  }
  if (options.semantic_cache) {
    absl::StatusOr<std::unique_ptr<cache::MiniLmEmbedder>> embedder =
        cache::MiniLmEmbedder::Load(options.semantic_model_dir);
    if (!embedder.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--semantic-model-dir: ", embedder.status().message(),
          " (scripts/fetch-models installs all-MiniLM-L6-v2)"));
    }
    s->embedder_ = *std::move(embedder);
    cache::SemanticCacheOptions semantic_options;
    semantic_options.ttl = options.cache_ttl;
    semantic_options.max_entries = options.semantic_max_entries;
    absl::StatusOr<std::unique_ptr<cache::SemanticCache>> semantic =
        cache::SemanticCache::Create(s->embedder_.get(), semantic_options);
    if (!semantic.ok()) return semantic.status();
    s->semantic_ = *std::move(semantic);
    if (!options.semantic_cache_file.empty() &&
        std::filesystem::exists(options.semantic_cache_file)) {
      if (absl::Status loaded = s->semantic_->Load(options.semantic_cache_file); !loaded.ok()) {
        // A bad file must not keep the router down: start empty and say why.
        std::fprintf(stderr, "saola-router: --semantic-cache-file %s not loaded: %s\n",
                     options.semantic_cache_file.c_str(), std::string(loaded.message()).c_str());
      }
    }
  }

  WorkerPoolOptions pool_options;
  pool_options.targets = *std::move(targets);
  pool_options.dns_refresh = options.dns_refresh;
  s->pool_ = std::make_unique<WorkerPool>(std::move(pool_options), s->policy_.get());
  s->executor_ = std::make_unique<Executor>(options.cache_threads);

  s->context_.pool = s->pool_.get();
  s->context_.exact = s->exact_.get();
  s->context_.semantic = s->semantic_.get();
  s->context_.api_keys = &s->api_keys_;
  s->context_.executor = s->executor_.get();
  s->context_.metrics = &s->metrics_;
  s->context_.semantic_threshold = options.semantic_threshold;
  s->context_.max_attempts = options.max_attempts;
  s->service_ = std::make_unique<RouterService>(s->context_);

  if (options.metrics_port >= 0) {
    if (absl::Status st = s->metrics_.Serve(options.host, options.metrics_port); !st.ok()) {
      return st;
    }
  }
  s->pool_->Start();

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.port),
                           grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("--port: cannot listen on ", options.host, ":", options.port));
  }
  s->server_->GetHealthCheckService()->SetServingStatus(false);
  s->RefreshStatus();
  s->status_thread_ = std::thread([p = s.get()] { p->StatusLoop(); });
  return s;
}

RouterServer::~RouterServer() { Shutdown(absl::ZeroDuration()); }

void RouterServer::StatusLoop() {
  absl::Time last_save = absl::Now();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(500));
      if (stopping_) return;
    }
    RefreshStatus();
    // Saved now and then too, so a crash loses minutes of semantic entries, not all of them.
    if (semantic_ != nullptr && !options_.semantic_cache_file.empty() &&
        absl::Now() - last_save >= options_.semantic_save_interval) {
      last_save = absl::Now();
      if (absl::Status saved = semantic_->Save(options_.semantic_cache_file); !saved.ok()) {
        std::fprintf(stderr, "saola-router: semantic cache not saved: %s\n",
                     std::string(saved.message()).c_str());
      }
    }
  }
}

void RouterServer::RefreshStatus() {
  int up = 0, down = 0, in_flight = 0;
  for (const WorkerStatus& w : pool_->Status()) {
    (w.up ? up : down) += 1;
    in_flight += w.in_flight;
  }
  metrics_.SetWorkers(up, down);
  metrics_.SetInFlight(in_flight);
  if (exact_ != nullptr) {
    const cache::ExactCacheStats st = exact_->stats();
    metrics_.SetExactCacheStats(std::string(exact_->backend()), static_cast<double>(st.errors),
                                static_cast<double>(std::max<int64_t>(st.entries, 0)),
                                static_cast<double>(std::max<int64_t>(st.bytes, 0)));
  }
  if (semantic_ != nullptr) {
    const cache::SemanticCacheStats st = semantic_->stats();
    metrics_.SetSemanticCacheStats(static_cast<double>(st.entries),
                                   static_cast<double>(st.guard_rejections));
  }
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
  }
  if (!stopping) server_->GetHealthCheckService()->SetServingStatus(up > 0);
}

void RouterServer::Shutdown(absl::Duration drain) {
  if (shut_down_) return;
  shut_down_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (status_thread_.joinable()) status_thread_.join();
  if (server_) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    // In-flight streams get `drain` to finish; then gRPC cancels them, which cancels their
    // worker calls.
    server_->Shutdown(absl::ToChronoTime(absl::Now() + drain));
    server_->Wait();
  }
  // Worker calls cancelled above end on gRPC's threads and may still post to the executor.
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (context_.live_calls.load() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  executor_.reset();  // runs the queued cache writes
  if (pool_) pool_->Stop();
  if (semantic_ != nullptr && !options_.semantic_cache_file.empty()) {
    if (absl::Status saved = semantic_->Save(options_.semantic_cache_file); !saved.ok()) {
      std::fprintf(stderr, "saola-router: semantic cache not saved: %s\n",
                   std::string(saved.message()).c_str());
    }
  }
}

}  // namespace saola::router
