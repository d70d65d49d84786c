// How the router picks a worker for a request. One interface, one file per policy
// (prefix_aware_policy, least_load_policy, round_robin_policy). The router's worker pool calls
// Pick on every request that no response cache answered, and feeds the optional hooks; policies
// that do not need a hook leave it a no-op.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "saola/v1/worker.pb.h"

namespace saola::routing {

/// One worker as the pool sees it when a request arrives. Only healthy, routable workers are
/// passed to Pick.
struct WorkerLoad {
  int32_t worker_id = 0;       // stable for the worker's lifetime in the pool
  int32_t in_flight = 0;       // requests this router has sent it that have not finished
  int32_t waiting = 0;         // its queue, from its last Stats reply (may be a second old)
  double kv_usage = 0;         // its KV pool usage in [0, 1], from its last Stats reply
};

/// The request, as routing needs it.
struct RouteRequest {
  std::string_view tenant;
  /// Hashes of the prompt's full KV blocks, chained from the tenant's root hash exactly as the
  /// workers compute them (common/block_hash.h, common::FullBlockHashes).
  std::span<const uint64_t> block_hashes;
};

struct RouteDecision {
  int32_t worker_id = 0;
  /// Why this worker, for the saola_router_routing_decisions_total{reason} metric: one of
  /// "prefix_hit", "load_balance" (a prefix existed but load won), "least_load", "round_robin".
  std::string reason;
  /// Leading block_hashes the chosen worker is believed to hold.
  int32_t matched_blocks = 0;
};

class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;
  /// Picks one of `workers` (non-empty). Called concurrently from many threads.
  virtual RouteDecision Pick(const RouteRequest& request, std::span<const WorkerLoad> workers) = 0;
  /// A batch from worker `worker_id`'s KvEvents stream (the first one after (re)connecting has
  /// reset=true and is a full snapshot).
  virtual void OnKvEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch) {}
  /// The worker's event stream broke; what was learnt from it can no longer be trusted.
  virtual void OnKvEventsLost(int32_t worker_id) {}
  /// The request was sent to worker_id (after Pick, or after a retry elsewhere).
  virtual void OnRouted(int32_t worker_id, const RouteRequest& request) {}
  /// The worker left the pool (ejected or removed by discovery).
  virtual void OnWorkerRemoved(int32_t worker_id) {}
};

struct RoutingOptions {
  /// prefix-aware: the prefix winner is overruled when its load exceeds the least-loaded
  /// worker's by more than this many requests.
  int32_t balance_abs_threshold = 4;
  /// ... and by more than this factor (both must hold).
  double balance_rel_threshold = 1.5;
  /// How long a routing-history entry stands for a worker that sends no KV events.
  absl::Duration history_ttl = absl::Minutes(5);
  /// prefix-aware, for a worker whose KV events are live: how long a request's blocks count as
  /// held by the worker it was routed to before its events confirm them (they usually do within
  /// one prefill; this covers the queue too).
  absl::Duration pending_ttl = absl::Seconds(10);
  /// Most block hashes remembered per worker (events and history together).
  int64_t max_blocks_per_worker = 1 << 20;
};

/// "prefix-aware" (default), "least-load" or "round-robin"; INVALID_ARGUMENT naming --policy
/// otherwise.
absl::StatusOr<std::unique_ptr<RoutingPolicy>> MakeRoutingPolicy(std::string_view name,
                                                                const RoutingOptions& options);

}  // namespace saola::routing
