#include "router/router_metrics.h"

#include "common/metrics_server.h"

namespace saola::router {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Latency buckets in seconds: 0.1 ms (cache hits) to 60 s (long generations).
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,     1,      2.5,   5,      10,    20,   30,    60};
  return buckets;
}

}  // namespace

RouterMetrics::RouterMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("saola_router_requests_total")
                    .Help("Requests finished, by the cache that answered and gRPC status code")
                    .Register(*registry_)),
      decisions_(BuildCounter()
                     .Name("saola_router_routing_decisions_total")
                     .Help("Worker choices, by reason")
                     .Register(*registry_)),
      retries_(BuildCounter()
                   .Name("saola_router_retries_total")
                   .Help("Requests retried on another worker before their first token")
                   .Register(*registry_)
                   .Add({})),
      lookup_(BuildHistogram()
                  .Name("saola_router_cache_lookup_seconds")
                  .Help("Response cache lookup time, by cache")
                  .Register(*registry_)),
      similarity_(BuildHistogram()
                      .Name("saola_router_semantic_similarity")
                      .Help("Cosine similarity of semantic cache hits")
                      .Register(*registry_)
                      .Add({}, prometheus::Histogram::BucketBoundaries{
                                   0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 1.0})),
      ttft_(BuildHistogram()
                .Name("saola_router_time_to_first_token_seconds")
                .Help("Time from a request's arrival at the router to its first token")
                .Register(*registry_)
                .Add({}, LatencyBuckets())),
      itl_(BuildHistogram()
               .Name("saola_router_inter_token_latency_seconds")
               .Help("Time between two streamed messages of a request")
               .Register(*registry_)
               .Add({}, LatencyBuckets())),
      e2e_(BuildHistogram()
               .Name("saola_router_request_latency_seconds")
               .Help("Time from a request's arrival to its last message, by cache source")
               .Register(*registry_)),
      workers_(BuildGauge()
                   .Name("saola_router_workers")
                   .Help("Workers known to the router, by state (up: routable)")
                   .Register(*registry_)),
      in_flight_(BuildGauge()
                     .Name("saola_router_in_flight_requests")
                     .Help("Requests streaming from workers now")
                     .Register(*registry_)
                     .Add({})),
      exact_errors_(BuildCounter()
                        .Name("saola_router_exact_cache_errors_total")
                        .Help("Exact cache operations the backend failed (served as misses)")
                        .Register(*registry_)),
      exact_entries_(BuildGauge()
                         .Name("saola_router_exact_cache_entries")
                         .Help("Entries in the in-memory exact cache")
                         .Register(*registry_)
                         .Add({})),
      exact_bytes_(BuildGauge()
                       .Name("saola_router_exact_cache_bytes")
                       .Help("Bytes held by the in-memory exact cache")
                       .Register(*registry_)
                       .Add({})),
      semantic_entries_(BuildGauge()
                            .Name("saola_router_semantic_cache_entries")
                            .Help("Entries in the semantic cache")
                            .Register(*registry_)
                            .Add({})),
      guard_rejections_(BuildCounter()
                            .Name("saola_router_semantic_guard_rejections_total")
                            .Help("Semantic neighbours above the threshold that the false-hit "
                                  "guard refused")
                            .Register(*registry_)
                            .Add({})) {
  // Series that dashboards query exist from the start, at zero.
  for (const char* source : {"exact", "semantic", "none"}) {
    requests_.Add({{"cache_source", source}, {"code", "OK"}});
    e2e_.Add({{"cache_source", source}}, LatencyBuckets());
  }
  for (const char* reason : {"prefix_hit", "load_balance", "least_load", "round_robin"}) {
    decisions_.Add({{"reason", reason}});
  }
  for (const char* cache : {"exact", "semantic"}) lookup_.Add({{"cache", cache}}, LatencyBuckets());
  workers_.Add({{"state", "up"}});
  workers_.Add({{"state", "down"}});
}

absl::Status RouterMetrics::Serve(const std::string& host, int port) {
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
      ServeMetrics("--metrics-port", host, port, registry_);
  if (!exposer.ok()) return exposer.status();
  exposer_ = *std::move(exposer);
  return absl::OkStatus();
}

int RouterMetrics::port() const { return ListeningPort(exposer_.get()); }

void RouterMetrics::OnRequestDone(const std::string& cache_source, const std::string& code,
                                  double e2e_seconds) {
  requests_.Add({{"cache_source", cache_source}, {"code", code}}).Increment();
  if (code == "OK") e2e_.Add({{"cache_source", cache_source}}, LatencyBuckets()).Observe(e2e_seconds);
}

void RouterMetrics::OnRouted(const std::string& reason) {
  decisions_.Add({{"reason", reason}}).Increment();
}

void RouterMetrics::OnRetry() { retries_.Increment(); }

void RouterMetrics::OnCacheLookup(const std::string& cache, double seconds) {
  lookup_.Add({{"cache", cache}}, LatencyBuckets()).Observe(seconds);
}

void RouterMetrics::OnSemanticHit(double similarity) { similarity_.Observe(similarity); }
void RouterMetrics::OnFirstToken(double seconds) { ttft_.Observe(seconds); }
void RouterMetrics::OnInterToken(double seconds) { itl_.Observe(seconds); }

void RouterMetrics::SetWorkers(int up, int down) {
  workers_.Add({{"state", "up"}}).Set(up);
  workers_.Add({{"state", "down"}}).Set(down);
}

void RouterMetrics::SetInFlight(int n) { in_flight_.Set(n); }

void RouterMetrics::SetExactCacheStats(const std::string& backend, double errors, double entries,
                                       double bytes) {
  {
    absl::MutexLock lock(&mu_);
    if (errors > last_exact_errors_) {
      exact_errors_.Add({{"backend", backend}}).Increment(errors - last_exact_errors_);
    } else {
      exact_errors_.Add({{"backend", backend}});  // the series exists from the start
    }
    last_exact_errors_ = std::max(last_exact_errors_, errors);
  }
  exact_entries_.Set(entries);
  exact_bytes_.Set(bytes);
}

void RouterMetrics::SetSemanticCacheStats(double entries, double guard_rejections) {
  semantic_entries_.Set(entries);
  absl::MutexLock lock(&mu_);
  if (guard_rejections > last_guard_rejections_) {
    guard_rejections_.Increment(guard_rejections - last_guard_rejections_);
    last_guard_rejections_ = guard_rejections;
  }
}

}  // namespace saola::router
