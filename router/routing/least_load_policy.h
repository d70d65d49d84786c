// least-load: the worker with the lowest load (router/routing/load.h: in_flight + waiting, then
// kv_usage in tenths). Ties rotate: the k-th call among n tied workers takes the (k mod n)-th,
// so a burst of requests that all see the same loads (the pool counts a request in_flight only
// after Pick returns) spreads over the tied workers instead of landing on the first one.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "router/routing/routing_policy.h"

namespace saola::routing {

class LeastLoadPolicy final : public RoutingPolicy {
 public:
  /// The least-loaded worker; reason "least_load". Lock-free.
  RouteDecision Pick(const RouteRequest& request, std::span<const WorkerLoad> workers) override;

 private:
  std::atomic<uint64_t> turn_{0};
};

}  // namespace saola::routing
