#include "router/routing/prefix_aware_policy.h"

#include <algorithm>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "common/check.h"
#include "router/routing/load.h"

namespace saola::routing {

PrefixAwarePolicy::PrefixAwarePolicy(const RoutingOptions& options, PrefixIndex::Clock clock)
    : options_(options),
      index_({.history_ttl = options.history_ttl,
              .pending_ttl = options.pending_ttl,
              .max_blocks_per_worker = options.max_blocks_per_worker},
             std::move(clock)) {}

RouteDecision PrefixAwarePolicy::Pick(const RouteRequest& request,
                                      std::span<const WorkerLoad> workers) {
  SAOLA_CHECK(!workers.empty());
  const uint64_t turn = turn_.fetch_add(1, std::memory_order_relaxed);

  absl::InlinedVector<int32_t, 16> matched(workers.size(), 0);
  int32_t best_match = 0;
  for (size_t i = 0; i < workers.size(); ++i) {
    matched[i] = index_.MatchedBlocks(workers[i].worker_id, request.block_hashes);
    best_match = std::max(best_match, matched[i]);
  }
  const size_t least = LeastLoadedIndex(workers, turn, [](size_t) { return true; });
  if (best_match == 0) {
    return {.worker_id = workers[least].worker_id, .reason = "least_load"};
  }

  const size_t best =
      LeastLoadedIndex(workers, turn, [&](size_t i) { return matched[i] == best_match; });
  const int64_t best_load = LoadOf(workers[best]);
  const int64_t min_load = LoadOf(workers[least]);
  const bool overloaded =
      best_load - min_load > options_.balance_abs_threshold &&
      static_cast<double>(best_load) > options_.balance_rel_threshold * static_cast<double>(min_load);
  if (!overloaded) {
    return {.worker_id = workers[best].worker_id, .reason = "prefix_hit",
            .matched_blocks = best_match};
  }

  // Load wins; among the equally least-loaded workers, keep as much of the prefix as there is.
  auto least_tied = [&](size_t i) { return CompareLoad(workers[i], workers[least]) == 0; };
  int32_t least_match = 0;
  for (size_t i = 0; i < workers.size(); ++i) {
    if (least_tied(i)) least_match = std::max(least_match, matched[i]);
  }
  const size_t target = LeastLoadedIndex(
      workers, turn, [&](size_t i) { return least_tied(i) && matched[i] == least_match; });
  return {.worker_id = workers[target].worker_id, .reason = "load_balance",
          .matched_blocks = matched[target]};
}

void PrefixAwarePolicy::OnKvEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch) {
  index_.ApplyEvents(worker_id, batch);
}

void PrefixAwarePolicy::OnKvEventsLost(int32_t worker_id) { index_.MarkEventsLost(worker_id); }

void PrefixAwarePolicy::OnRouted(int32_t worker_id, const RouteRequest& request) {
  index_.RecordRouted(worker_id, request.block_hashes);
}

void PrefixAwarePolicy::OnWorkerRemoved(int32_t worker_id) { index_.RemoveWorker(worker_id); }

}  // namespace saola::routing
