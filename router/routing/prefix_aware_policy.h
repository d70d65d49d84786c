// prefix-aware (the default): send a request where the longest prefix of its prompt is already
// in the KV cache, unless that worker is too busy compared to the least-loaded one.
//
// What a worker holds comes from a PrefixIndex (prefix_index.h): the worker's own KvEvents when
// its stream is live, plus short "pending" entries for requests just routed there; the router's
// routing history (with a TTL) for workers whose stream is down. The hashes compared are the
// chained full-block hashes of common/block_hash.h, so a tenant's prompt only ever matches that
// tenant's blocks.
//
// Pick(request, workers):
//
//   1. matched[w] = longest leading run of the request's block hashes that w holds.
//   2. If no worker matches a block: the least-loaded worker.              reason "least_load"
//   3. Else best = among the workers with the longest match, the least-loaded (ties rotate).
//   4. min = the lowest load among all workers. best is overloaded when BOTH
//          load(best) - min > balance_abs_threshold   and   load(best) > balance_rel_threshold * min
//      If overloaded: the least-loaded worker (among equally least-loaded ones, the one with the
//      longest match, then rotation).                                     reason "load_balance"
//      Else: best.                                                        reason "prefix_hit"
//
// Load is in_flight + waiting, kv_usage in tenths as a tie-breaker (load.h). "Ties rotate": the
// k-th tied decision takes the (k mod n)-th of n tied workers (an atomic counter), never always
// the first.
//
// After the pool sends the request it calls OnRouted, and the policy records the request's block
// hashes for that worker: as routing history when the worker sends no events, and as pending
// entries (pending_ttl) when it does. Why pending: a worker reports blocks only once it has
// computed them, a prefill later; without them a second request with the same new prefix that
// arrives in between (the next turn of a fast agent, a retry, a burst of the same prompt) would
// find no match and go elsewhere, and the prefix would then be computed twice. The worker's
// stored event confirms the entry (it becomes a cached entry), a removed event or the TTL ends
// it, so a wrong guess costs at most one pending_ttl.
//
// Knobs (RoutingOptions):
//   balance_abs_threshold  Extra requests the prefix winner may carry over the least-loaded
//                          worker before load wins. Low: even load, fewer cache hits. High: more
//                          hits, longer queues on hot workers. Default 4.
//   balance_rel_threshold  ... and the factor it may carry (both must be exceeded, so a small
//                          absolute gap at low load and a small relative gap at high load both
//                          keep the cache hit). Default 1.5.
//   history_ttl            How long routing history counts for a worker without events. It
//                          stands in for the worker's eviction, which the router cannot see:
//                          about the time a block survives in the worker's cache. Default 5 min.
//   pending_ttl            How long a just-routed request's blocks count before the worker's
//                          events confirm them: its queueing plus prefill time. Default 10 s.
//   max_blocks_per_worker  Memory bound on the index, per worker (about 16-32 bytes a block).
//
// Why it cannot pile up. The failure mode reported against SGLang's cache-aware router: when the
// load a cache-aware policy compares is stale or not tracked, every request that shares a hot
// prefix goes to the one worker holding it. Here:
//   - every decision is bounded: the worker chosen has load(best) <= max(min + abs, rel * min),
//     where min is the lowest load passed to that Pick, so no worker gets further ahead of the
//     least-loaded one than the thresholds allow (plus requests routed concurrently before the
//     pool counts them in_flight);
//   - the load compared includes in_flight, which this router updates at every routing, not only
//     the workers' periodic Stats;
//   - a prefix that several workers hold (a shared system prompt, once spread) is a tie in match
//     length, and ties go to the lower load and then rotate, so it spreads like least-load;
//   - a load_balance decision records the request on the least-loaded worker too, which then
//     holds the hot prefix as well and competes for it.
//
// Cost per Pick: one hash lookup per matched block per worker (plus one), under per-worker
// reader locks; no allocation for up to 16 workers.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "router/routing/prefix_index.h"
#include "router/routing/routing_policy.h"

namespace saola::routing {

class PrefixAwarePolicy final : public RoutingPolicy {
 public:
  /// `clock` as in PrefixIndex (tests inject one).
  explicit PrefixAwarePolicy(const RoutingOptions& options,
                             PrefixIndex::Clock clock = [] { return absl::Now(); });

  RouteDecision Pick(const RouteRequest& request, std::span<const WorkerLoad> workers) override;
  void OnKvEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch) override;
  void OnKvEventsLost(int32_t worker_id) override;
  void OnRouted(int32_t worker_id, const RouteRequest& request) override;
  void OnWorkerRemoved(int32_t worker_id) override;

  /// The index behind the decisions, for tests and metrics.
  const PrefixIndex& index() const { return index_; }

 private:
  const RoutingOptions options_;
  PrefixIndex index_;
  std::atomic<uint64_t> turn_{0};
};

}  // namespace saola::routing
