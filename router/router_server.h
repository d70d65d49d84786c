// The router process's parts wired together: routing policy, worker pool, response caches,
// executor, metrics, and the gRPC server (saola.v1.Llm, grpc.health.v1.Health, reflection) on
// one port.
//
// Health: SERVING while at least one worker is routable, so a Kubernetes readiness probe keeps
// traffic away from a router with no workers. A status loop refreshes health and the gauges
// every 500 ms.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cache/exact/exact_cache_factory.h"
#include "cache/semantic/semantic_cache.h"
#include "grpcpp/grpcpp.h"
#include "router/router_context.h"
#include "router/router_service.h"

namespace saola::router {

struct RouterOptions {
  std::string host = "0.0.0.0";
  int port = 0;
  int metrics_port = -1;               // -1: no /metrics; 0: any free port
  std::string workers;                 // --workers
  absl::Duration dns_refresh = absl::Seconds(5);
  std::string policy = "prefix-aware";
  routing::RoutingOptions routing;
  bool exact_cache = true;
  std::string redis_url;               // empty: in-memory exact cache
  int64_t exact_cache_mb = 256;        // memory backend bound
  absl::Duration cache_ttl = absl::Hours(1);
  bool semantic_cache = false;
  float semantic_threshold = 0.85f;
  std::string semantic_model_dir = "models/all-MiniLM-L6-v2";
  std::string semantic_cache_file;     // loaded at start, saved periodically and at shutdown
  absl::Duration semantic_save_interval = absl::Minutes(5);
  int64_t semantic_max_entries = 100000;
  std::string api_keys_file;           // empty: one default tenant
  int cache_threads = 4;
  int max_attempts = 3;
};

class RouterServer {
 public:
  /// Builds every part and starts serving; INVALID_ARGUMENT naming the flag on bad options.
  static absl::StatusOr<std::unique_ptr<RouterServer>> Start(const RouterOptions& options);
  ~RouterServer();  // Shutdown(0)

  int port() const { return port_; }
  int metrics_port() const { return metrics_.port(); }

  /// NOT_SERVING, then waits up to `drain` for calls in flight, then stops; saves the semantic
  /// cache when a file was given.
  void Shutdown(absl::Duration drain);

 private:
  RouterServer() = default;
  void StatusLoop();
  void RefreshStatus();

  RouterOptions options_;
  RouterMetrics metrics_;
  ApiKeys api_keys_;
  std::unique_ptr<routing::RoutingPolicy> policy_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<cache::ExactCache> exact_;
  std::unique_ptr<cache::Embedder> embedder_;
  std::unique_ptr<cache::SemanticCache> semantic_;
  std::unique_ptr<Executor> executor_;
  RouterContext context_;
  std::unique_ptr<RouterService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ = false;
  std::thread status_thread_;
};

}  // namespace saola::router
