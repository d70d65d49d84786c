#include "worker/server/metrics.h"

#include "common/metrics_server.h"

namespace saola::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Latency buckets in seconds: 1 ms to 60 s, roughly x2 apart (CPU steps are slow, GPU ones fast).
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60};
  return buckets;
}

prometheus::Histogram& MakeHistogram(prometheus::Registry& registry, const std::string& name,
                                     const std::string& help) {
  return BuildHistogram().Name(name).Help(help).Register(registry).Add({}, LatencyBuckets());
}

std::string ReasonLabel(engine::FinishReason reason, const absl::Status& error) {
  if (!error.ok()) {
    switch (error.code()) {
      case absl::StatusCode::kCancelled:
        return "cancelled";
      case absl::StatusCode::kDeadlineExceeded:
        return "deadline";
      default:
        return "error";
    }
  }
  return reason == engine::FinishReason::kLength ? "length" : "stop";
}

}  // namespace

WorkerMetrics::WorkerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("saola_requests_total")
                    .Help("Requests finished, by reason")
                    .Register(*registry_)),
      ttft_(MakeHistogram(*registry_, "saola_time_to_first_token_seconds",
                          "Time from a request's arrival to its first token")),
      itl_(MakeHistogram(*registry_, "saola_inter_token_latency_seconds",
                         "Time between two tokens of a request")),
      e2e_(MakeHistogram(*registry_, "saola_request_latency_seconds",
                         "Time from a request's arrival to its end")),
      queue_(MakeHistogram(*registry_, "saola_request_queue_time_seconds",
                           "Time from a request's arrival to its first scheduled step")),
      running_(BuildGauge().Name("saola_requests_running").Help("Requests in the running batch")
                   .Register(*registry_).Add({})),
      waiting_(BuildGauge().Name("saola_requests_waiting").Help("Requests queued")
                   .Register(*registry_).Add({})),
      kv_usage_(BuildGauge().Name("saola_kv_cache_usage_ratio")
                    .Help("Share of KV blocks held by requests")
                    .Register(*registry_).Add({})),
      kv_waste_(BuildGauge().Name("saola_kv_cache_waste_ratio")
                    .Help("Share of token slots in held KV blocks that hold no token")
                    .Register(*registry_).Add({})),
      prompt_tokens_(BuildCounter().Name("saola_prompt_tokens_total")
                         .Help("Prompt tokens of admitted requests")
                         .Register(*registry_).Add({})),
      generation_tokens_(BuildCounter().Name("saola_generation_tokens_total")
                             .Help("Tokens generated")
                             .Register(*registry_).Add({})),
      prefix_queried_(BuildCounter().Name("saola_prefix_cache_queried_tokens_total")
                          .Help("Prompt tokens looked up in the prefix cache")
                          .Register(*registry_).Add({})),
      prefix_hit_(BuildCounter().Name("saola_prefix_cache_hit_tokens_total")
                      .Help("Prompt tokens found in the prefix cache")
                      .Register(*registry_).Add({})),
      preemptions_(BuildCounter().Name("saola_preemptions_total")
                       .Help("Requests preempted (KV freed, recomputed later)")
                       .Register(*registry_).Add({})) {
  // Every reason exists from the start, so dashboards see zeros rather than no series.
  for (const char* reason : {"stop", "length", "cancelled", "deadline", "error", "rejected"}) {
    Requests(reason);
  }
}

absl::Status WorkerMetrics::Serve(const std::string& host, int port) {
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
      ServeMetrics("metrics-port", host, port, registry_);
  if (!exposer.ok()) return exposer.status();
  exposer_ = *std::move(exposer);
  return absl::OkStatus();
}

int WorkerMetrics::port() const { return ListeningPort(exposer_.get()); }

prometheus::Counter& WorkerMetrics::Requests(const std::string& reason) {
  return requests_.Add({{"reason", reason}});
}

void WorkerMetrics::OnRejected() { Requests("rejected").Increment(); }

void WorkerMetrics::OnAdmitted(const engine::Sequence& seq, double queue_seconds) {
  queue_.Observe(queue_seconds);
  prompt_tokens_.Increment(seq.prompt_len());
  prefix_queried_.Increment(seq.prompt_len());
  prefix_hit_.Increment(seq.cached_prompt_tokens);
}

void WorkerMetrics::OnFirstToken(double ttft_seconds) {
  ttft_.Observe(ttft_seconds);
  generation_tokens_.Increment();
}

void WorkerMetrics::OnToken(double inter_token_seconds) {
  itl_.Observe(inter_token_seconds);
  generation_tokens_.Increment();
}

void WorkerMetrics::OnFinished(const engine::Sequence& seq, engine::FinishReason reason,
                               const absl::Status& error, double e2e_seconds) {
  Requests(ReasonLabel(reason, error)).Increment();
  if (error.ok()) e2e_.Observe(e2e_seconds);
}

void WorkerMetrics::OnPreempted() { preemptions_.Increment(); }

void WorkerMetrics::OnStep(const engine::EngineStats& stats) {
  running_.Set(stats.running);
  waiting_.Set(stats.waiting);
  kv_usage_.Set(stats.kv_blocks > 0 ? double(stats.kv_blocks_in_use) / stats.kv_blocks : 0.0);
  kv_waste_.Set(stats.kv_slots_allocated > 0
                    ? 1.0 - double(stats.kv_tokens_stored) / double(stats.kv_slots_allocated)
                    : 0.0);
}

}  // namespace saola::server
