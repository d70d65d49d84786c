// The worker's Prometheus metrics (prometheus-cpp), served as text on --metrics-port at /metrics.
// Names follow the Prometheus naming guide: base units (seconds, tokens, ratios), `_total` on
// counters, and only low-cardinality labels (a request's finish reason).
//
//   saola_requests_total{reason}                 finished requests: stop, length, cancelled,
//                                                deadline, error, rejected
//   saola_time_to_first_token_seconds            histogram, arrival to first token
//   saola_inter_token_latency_seconds            histogram, between a request's tokens
//   saola_request_latency_seconds                histogram, arrival to the last token
//   saola_request_queue_time_seconds             histogram, arrival to first scheduled
//   saola_requests_running / _waiting            gauges
//   saola_kv_cache_usage_ratio                   gauge, blocks held by requests / all blocks
//   saola_kv_cache_waste_ratio                   gauge, empty slots in held blocks / held slots
//   saola_prompt_tokens_total, saola_generation_tokens_total
//   saola_prefix_cache_queried_tokens_total, saola_prefix_cache_hit_tokens_total
//   saola_preemptions_total
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "worker/engine/engine.h"

namespace saola::server {

class WorkerMetrics final : public engine::EngineObserver {
 public:
  WorkerMetrics();

  /// Serves /metrics on host:port (port 0: any free port). Call once.
  absl::Status Serve(const std::string& host, int port);
  /// The port /metrics is served on (0 before Serve).
  int port() const;

  /// A request refused before it reached the engine (bad argument, full queue, draining).
  void OnRejected();

  void OnAdmitted(const engine::Sequence& seq, double queue_seconds) override;
  void OnFirstToken(double ttft_seconds) override;
  void OnToken(double inter_token_seconds) override;
  void OnFinished(const engine::Sequence& seq, engine::FinishReason reason,
                  const absl::Status& error, double e2e_seconds) override;
  void OnPreempted() override;
  void OnStep(const engine::EngineStats& stats) override;

  prometheus::Registry& registry() { return *registry_; }

 private:
  prometheus::Counter& Requests(const std::string& reason);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& itl_;
  prometheus::Histogram& e2e_;
  prometheus::Histogram& queue_;
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& kv_usage_;
  prometheus::Gauge& kv_waste_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Counter& prefix_queried_;
  prometheus::Counter& prefix_hit_;
  prometheus::Counter& preemptions_;
};

}  // namespace saola::server
