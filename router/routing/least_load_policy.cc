#include "router/routing/least_load_policy.h"

#include "common/check.h"
#include "router/routing/load.h"

namespace saola::routing {

RouteDecision LeastLoadPolicy::Pick(const RouteRequest& request,
                                    std::span<const WorkerLoad> workers) {
  SAOLA_CHECK(!workers.empty());
  const uint64_t turn = turn_.fetch_add(1, std::memory_order_relaxed);
  const size_t i = LeastLoadedIndex(workers, turn, [](size_t) { return true; });
  return {.worker_id = workers[i].worker_id, .reason = "least_load"};
}

}  // namespace saola::routing
