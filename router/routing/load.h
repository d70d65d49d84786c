// The one number the routing policies compare workers by, defined here and nowhere else.
//
//   load = in_flight + waiting
//
// in_flight is this router's exact count of requests sent and not finished; waiting is the
// worker's own queue from its last Stats reply, which also sees what other router replicas sent
// (this router's own queued requests are counted twice, but equally for every worker, so the
// order is kept). kv_usage breaks ties, coarsely: workers whose usage falls in the same tenth
// are equal, so that a stale, slightly different usage does not pick the same worker for every
// concurrent request, and the policies' rotation spreads the ties instead.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/functional/function_ref.h"
#include "router/routing/routing_policy.h"

namespace saola::routing {

/// The request count a policy compares: in_flight + waiting (negative inputs count as 0).
inline int64_t LoadOf(const WorkerLoad& worker) {
  const int64_t in_flight = worker.in_flight > 0 ? worker.in_flight : 0;
  const int64_t waiting = worker.waiting > 0 ? worker.waiting : 0;
  return in_flight + waiting;
}

/// kv_usage in tenths, clamped to [0, 10]: the tie-breaker after LoadOf.
inline int32_t KvUsageBucket(const WorkerLoad& worker) {
  if (!(worker.kv_usage > 0)) return 0;  // also NaN
  if (worker.kv_usage >= 1) return 10;
  return static_cast<int32_t>(std::floor(worker.kv_usage * 10));
}

/// Negative when `a` is less loaded than `b`, 0 when they tie, positive otherwise.
inline int CompareLoad(const WorkerLoad& a, const WorkerLoad& b) {
  const int64_t la = LoadOf(a), lb = LoadOf(b);
  if (la != lb) return la < lb ? -1 : 1;
  const int32_t ka = KvUsageBucket(a), kb = KvUsageBucket(b);
  if (ka != kb) return ka < kb ? -1 : 1;
  return 0;
}

/// The index in `workers` of the least-loaded worker among those `eligible` accepts; ties (equal
/// CompareLoad) go to the (turn mod #ties)-th of them in `workers` order, so successive turns
/// rotate through the ties instead of always taking the first. Precondition: at least one worker
/// is eligible.
size_t LeastLoadedIndex(std::span<const WorkerLoad> workers, uint64_t turn,
                        absl::FunctionRef<bool(size_t)> eligible);

}  // namespace saola::routing
