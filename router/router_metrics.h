// The router's Prometheus metrics (prometheus-cpp), served as text on --metrics-port at /metrics.
// Base units, `_total` on counters, low-cardinality labels only.
//
//   saola_router_requests_total{cache_source,code}   finished requests by who answered
//                                                    (exact, semantic, none) and gRPC code
//   saola_router_routing_decisions_total{reason}     prefix_hit, load_balance, least_load,
//                                                    round_robin
//   saola_router_retries_total                       requests retried on another worker
//   saola_router_cache_lookup_seconds{cache}         histogram, exact / semantic lookup time
//   saola_router_semantic_similarity                 histogram, cosine of semantic hits
//   saola_router_time_to_first_token_seconds         histogram, as the router sees it
//   saola_router_inter_token_latency_seconds         histogram, between streamed messages
//   saola_router_request_latency_seconds{cache_source}  histogram, arrival to the last message
//   saola_router_workers{state}                      gauge, workers up / down
//   saola_router_in_flight_requests                  gauge, requests streaming from workers
//   saola_router_exact_cache_errors_total{backend}   lookups/stores the backend failed (Redis down)
//   saola_router_exact_cache_entries, _bytes          gauges (memory backend)
//   saola_router_semantic_cache_entries              gauge
//   saola_router_semantic_guard_rejections_total     near neighbours the false-hit guard refused
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace saola::router {

class RouterMetrics {
 public:
  RouterMetrics();

  /// Serves /metrics on host:port (0: any free port). Call once.
  absl::Status Serve(const std::string& host, int port);
  int port() const;

  /// cache_source: "exact", "semantic" or "none"; code: a gRPC code name such as "OK".
  void OnRequestDone(const std::string& cache_source, const std::string& code,
                     double e2e_seconds);
  void OnRouted(const std::string& reason);
  void OnRetry();
  void OnCacheLookup(const std::string& cache, double seconds);
  void OnSemanticHit(double similarity);
  void OnFirstToken(double seconds);
  void OnInterToken(double seconds);
  void SetWorkers(int up, int down);
  void SetInFlight(int n);
  /// Totals read from the caches' own counters (set, not added: the caches own the counts).
  void SetExactCacheStats(const std::string& backend, double errors, double entries, double bytes);
  void SetSemanticCacheStats(double entries, double guard_rejections);

  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Counter& retries_;
  prometheus::Family<prometheus::Histogram>& lookup_;
  prometheus::Histogram& similarity_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& itl_;
  prometheus::Family<prometheus::Histogram>& e2e_;
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Gauge& in_flight_;
  prometheus::Family<prometheus::Counter>& exact_errors_;
  prometheus::Gauge& exact_entries_;
  prometheus::Gauge& exact_bytes_;
  prometheus::Gauge& semantic_entries_;
  prometheus::Counter& guard_rejections_;
  // The caches keep running totals; the counters above advance by the difference.
  absl::Mutex mu_;
  double last_exact_errors_ ABSL_GUARDED_BY(mu_) = 0;
  double last_guard_rejections_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace saola::router
