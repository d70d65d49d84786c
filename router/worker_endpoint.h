// One worker as the router sees it: a gRPC channel and three background loops that keep what the
// router knows about the worker current.
//
//   info/stats loop  GetInfo until it answers (model card, KV block size, tokenizer), then Stats
//                    every `stats_interval` (queue length and KV usage feed the load balance)
//   health loop      grpc.health.v1.Health/Watch; the worker is routable only while SERVING.
//                    A broken watch counts as NOT_SERVING and is re-opened with backoff, so a
//                    failed worker is ejected at once and re-admitted when it answers again
//   KV-event loop    Worker/KvEvents, forwarded to the listener (the routing policy's prefix
//                    index); a broken stream or a sequence gap is reported as lost and re-opened
//
// Loops sleep with exponential backoff between reconnects and stop promptly: Stop() cancels
// their calls.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "router/circuit_breaker.h"
#include "saola/v1/worker.grpc.pb.h"
#include "worker/model/tokenizer.h"

namespace saola::router {

struct WorkerEndpointOptions {
  absl::Duration stats_interval = absl::Milliseconds(200);
  absl::Duration rpc_timeout = absl::Seconds(5);   // GetInfo and Stats
  absl::Duration reconnect_min = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(5);
  CircuitBreakerOptions breaker;
};

/// What a worker serves, as GetInfo described it.
struct WorkerModel {
  saola::v1::WorkerInfo info;  // tokenizer tables cleared once `tokenizer` is built
  std::unique_ptr<model::Tokenizer> tokenizer;
};

class WorkerEndpoint {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnKvEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch) = 0;
    virtual void OnKvEventsLost(int32_t worker_id) = 0;
  };

  WorkerEndpoint(int32_t id, std::string address, Listener* listener,
                 WorkerEndpointOptions options);
  ~WorkerEndpoint();  // Stop()
  WorkerEndpoint(const WorkerEndpoint&) = delete;
  WorkerEndpoint& operator=(const WorkerEndpoint&) = delete;

  void Start();
  /// Cancels the loops' calls and joins them. Idempotent.
  void Stop();

  int32_t id() const { return id_; }
  const std::string& address() const { return address_; }
  saola::v1::Worker::Stub& stub() { return *stub_; }

  /// Null until GetInfo has answered.
  std::shared_ptr<const WorkerModel> model() const;
  /// Health says SERVING.
  bool healthy() const;
  /// Model known, healthy, and the circuit breaker lets requests through.
  bool Routable(absl::Time now) const;
  saola::v1::WorkerStats stats() const;
  CircuitBreaker& breaker() { return breaker_; }

  /// Requests this router has sent the worker that have not finished.
  std::atomic<int32_t> in_flight{0};

 private:
  void InfoAndStatsLoop();
  void HealthLoop();
  void KvEventsLoop();
  /// Sleeps `d` unless stopping; false when stopping.
  bool SleepUnlessStopping(absl::Duration d);
  /// Registers the context of a long call so Stop() can cancel it; false when stopping.
  bool Track(grpc::ClientContext* context);
  void Untrack(grpc::ClientContext* context);

  const int32_t id_;
  const std::string address_;
  Listener* const listener_;
  const WorkerEndpointOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<saola::v1::Worker::Stub> stub_;
  CircuitBreaker breaker_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool healthy_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const WorkerModel> model_ ABSL_GUARDED_BY(mu_);
  saola::v1::WorkerStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::ClientContext*> live_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace saola::router
