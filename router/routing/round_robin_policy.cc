#include "router/routing/round_robin_policy.h"

#include "common/check.h"

namespace saola::routing {

RouteDecision RoundRobinPolicy::Pick(const RouteRequest& request,
                                     std::span<const WorkerLoad> workers) {
  SAOLA_CHECK(!workers.empty());
  const uint64_t turn = turn_.fetch_add(1, std::memory_order_relaxed);
  return {.worker_id = workers[turn % workers.size()].worker_id, .reason = "round_robin"};
}

}  // namespace saola::routing
