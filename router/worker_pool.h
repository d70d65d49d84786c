// The router's workers: discovery (fixed addresses and DNS names resolved every
// `dns_refresh`), one WorkerEndpoint per address, and the choice of a worker per request
// through the routing policy. All workers must serve the same model: the first to answer GetInfo
// fixes it, and a worker that reports another model is never routed to (and logged).
//
// A request holds a WorkerLease while its call runs: it counts in the worker's in_flight (the
// load the policies balance) and reports its outcome to the worker's circuit breaker.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "router/routing/routing_policy.h"
#include "router/worker_discovery.h"
#include "router/worker_endpoint.h"

namespace saola::router {

struct WorkerPoolOptions {
  std::vector<WorkerTarget> targets;
  absl::Duration dns_refresh = absl::Seconds(5);
  WorkerEndpointOptions endpoint;
};

class WorkerPool;

/// A request's hold on a worker. Destroying it ends the request's share of the worker's load.
class WorkerLease {
 public:
  ~WorkerLease();
  WorkerLease(const WorkerLease&) = delete;
  WorkerLease& operator=(const WorkerLease&) = delete;

  WorkerEndpoint& endpoint() { return *endpoint_; }
  const routing::RouteDecision& decision() const { return decision_; }
  /// The worker answered (whatever the request's own outcome): closes its breaker.
  void Succeeded();
  /// The worker could not be reached or dropped the call: counts toward opening its breaker.
  void Failed();

 private:
  friend class WorkerPool;
  WorkerLease(std::shared_ptr<WorkerEndpoint> endpoint, routing::RouteDecision decision);
  std::shared_ptr<WorkerEndpoint> endpoint_;
  routing::RouteDecision decision_;
};

/// What the router reports about each worker (metrics, logs).
struct WorkerStatus {
  std::string address;
  bool up = false;  // routable now
  int32_t in_flight = 0;
};

class WorkerPool final : public WorkerEndpoint::Listener {
 public:
  WorkerPool(WorkerPoolOptions options, routing::RoutingPolicy* policy);
  ~WorkerPool() override;  // Stop()

  /// Resolves the targets, starts the endpoints and the refresh loop.
  void Start();
  void Stop();

  /// The served model, once a worker has described it; null before.
  std::shared_ptr<const WorkerModel> model() const;

  /// Picks a routable worker for `request`, skipping `exclude` (workers this request already
  /// failed on). UNAVAILABLE when none is routable.
  absl::StatusOr<std::unique_ptr<WorkerLease>> Acquire(const routing::RouteRequest& request,
                                                       const absl::flat_hash_set<int32_t>& exclude);

  std::vector<WorkerStatus> Status() const;

  // WorkerEndpoint::Listener
  void OnKvEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch) override;
  void OnKvEventsLost(int32_t worker_id) override;

 private:
  void RefreshLoop();
  /// Adds endpoints for new addresses and removes those gone.
  void Reconcile(const std::vector<std::string>& addresses);
  /// True when `endpoint` serves the pool's model (fixing it on first sight).
  bool ServesPoolModel(const WorkerEndpoint& endpoint) const;

  const WorkerPoolOptions options_;
  routing::RoutingPolicy* const policy_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<WorkerEndpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
  mutable std::shared_ptr<const WorkerModel> model_ ABSL_GUARDED_BY(mu_);
  mutable absl::flat_hash_set<int32_t> warned_mismatch_ ABSL_GUARDED_BY(mu_);
  int32_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresh_thread_;
};

}  // namespace saola::router
