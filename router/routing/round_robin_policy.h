// round-robin: the next worker in turn, whatever its load or cache. A baseline for comparisons,
// and a fair choice when every request is alike and no prefix repeats.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "router/routing/routing_policy.h"

namespace saola::routing {

class RoundRobinPolicy final : public RoutingPolicy {
 public:
  /// workers[turn mod size], one turn per call; reason "round_robin". Lock-free.
  RouteDecision Pick(const RouteRequest& request, std::span<const WorkerLoad> workers) override;

 private:
  std::atomic<uint64_t> turn_{0};
};

}  // namespace saola::routing
