// Which KV blocks each worker holds, as the router believes it: the data behind prefix-aware
// routing.
//
// Per worker, two kinds of entry:
//
//   cached   Block hashes the worker reported through its KvEvents stream. A snapshot
//            (reset = true) replaces them; `stored` chains add; `removed` deletes. Trusted only
//            while the stream is live: from a snapshot until the stream breaks (MarkEventsLost)
//            or skips a sequence number, after which they are dropped.
//   recent   Block hashes of requests this router sent the worker (RecordRouted), each with an
//            expiry. Their meaning depends on the worker's stream:
//              - stream live: a short-lived "pending" entry (pending_ttl) for blocks the worker
//                will store within one prefill but has not reported yet, so that a second
//                request with the same prefix, arriving before the events, still goes where the
//                first went. A stored or removed event for the hash ends the entry early; hashes
//                already in `cached` are not recorded at all.
//              - no stream (never connected, or lost): routing history (history_ttl), the only
//                source there is. Workers without events behave like an approximate cache-aware
//                router (SGLang's tree of routed prompts), expiring instead of tracking
//                evictions.
//            A new snapshot drops every recent entry: from then on events are the truth.
//
// Query: MatchedBlocks(worker, hashes) is the length of the longest LEADING run of `hashes` the
// worker holds (cached, or recent and not expired). Block hashes are chained (each covers its
// whole prefix, common/block_hash.h), so hash i being held implies the prefix up to i is the
// same; a missing hash ends the reusable prefix even if later hashes are present (a gap: the
// worker would recompute from there). Cost: one hash lookup per matched block, plus one.
//
// Memory: at most max_blocks_per_worker entries per worker, cached and recent together. Recent
// entries are evicted oldest first (they are kept in expiry order) to make room; when only
// cached entries remain, new stored hashes are dropped (and counted) rather than growing without
// bound. A worker's real cache is bounded by its KV pool, so with a sane bound this only guards
// against a misconfigured or misbehaving worker.
//
// Thread safety: every method may be called from any thread. A reader-writer mutex guards the
// worker map, and each worker has its own, so the per-request queries (readers) contend only
// with writes to the same worker.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "saola/v1/worker.pb.h"

namespace saola::routing {

class PrefixIndex {
 public:
  struct Options {
    /// Lifetime of a routing-history entry for a worker without a live event stream.
    absl::Duration history_ttl = absl::Minutes(5);
    /// Lifetime of a pending entry for a worker with a live event stream.
    absl::Duration pending_ttl = absl::Seconds(10);
    /// Most entries (cached + recent) per worker. Must be positive.
    int64_t max_blocks_per_worker = 1 << 20;
  };
  /// Counters for one worker, for tests and metrics.
  struct WorkerStats {
    bool events_live = false;
    int64_t num_cached = 0;          // from events
    int64_t num_recent = 0;          // pending or history entries, expired ones included
    int64_t num_dropped_stored = 0;  // stored hashes refused by the memory bound
  };

  using Clock = std::function<absl::Time()>;

  /// `clock` gives the current time (tests inject one); default absl::Now.
  explicit PrefixIndex(const Options& options, Clock clock = [] { return absl::Now(); });

  PrefixIndex(const PrefixIndex&) = delete;
  PrefixIndex& operator=(const PrefixIndex&) = delete;

  /// Applies one batch from worker_id's KvEvents stream. A snapshot (reset) makes the stream
  /// live; a non-snapshot batch on a stream that is not live is ignored (nothing to apply it
  /// to); a sequence gap on a live stream is treated as MarkEventsLost.
  void ApplyEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch);
  /// The worker's event stream broke: drops its cached entries; routing history takes over.
  void MarkEventsLost(int32_t worker_id);
  /// `hashes` (a request's full-block hashes) were sent to worker_id.
  void RecordRouted(int32_t worker_id, std::span<const uint64_t> hashes);
  /// Forgets the worker.
  void RemoveWorker(int32_t worker_id);

  /// Length of the longest leading run of `hashes` that worker_id holds; 0 for unknown workers.
  int32_t MatchedBlocks(int32_t worker_id, std::span<const uint64_t> hashes) const;

  WorkerStats Stats(int32_t worker_id) const;

 private:
  struct RecentEntry {
    uint64_t hash;
    absl::Time expiry;
  };
  struct Worker {
    mutable absl::Mutex mu;
    bool events_live ABSL_GUARDED_BY(mu) = false;
    uint64_t last_sequence ABSL_GUARDED_BY(mu) = 0;
    absl::flat_hash_set<uint64_t> cached ABSL_GUARDED_BY(mu);
    // hash -> its latest expiry. `order` holds (hash, expiry) in the order recorded, which is
    // expiry order while the TTL in use does not grow; an `order` entry whose expiry differs
    // from recent's is stale (the hash was recorded again, or erased) and is skipped.
    absl::flat_hash_map<uint64_t, absl::Time> recent ABSL_GUARDED_BY(mu);
    std::deque<RecentEntry> order ABSL_GUARDED_BY(mu);
    int64_t num_dropped_stored ABSL_GUARDED_BY(mu) = 0;
  };

  /// Runs fn(worker) with the worker's mutex held (and mu_ held, so that it is not removed
  /// meanwhile). A worker not in the map is created when `create`, else fn is not run.
  void Mutate(int32_t worker_id, bool create, absl::FunctionRef<void(Worker&)> fn)
      ABSL_LOCKS_EXCLUDED(mu_);
  /// The worker's state, or null; valid while the caller holds mu_ (reader or writer).
  Worker* Find(int32_t worker_id) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  void ApplyEventsLocked(Worker& w, const saola::v1::KvEventBatch& batch, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu);
  static void DropEventsLocked(Worker& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu);
  /// Erases expired recent entries from the front of `order`, and compacts `order` when stale
  /// entries dominate it.
  static void ExpireLocked(Worker& w, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu);
  /// Evicts the oldest recent entry; false when there is none.
  static bool EvictOldestRecentLocked(Worker& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu);
  /// Makes room for one more entry; false when the bound is reached with cached entries alone.
  bool MakeRoomLocked(Worker& w) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu);

  const Options options_;
  const Clock clock_;

  // Workers are only erased under the writer lock, so a Worker found under the reader lock stays
  // valid until it is released.
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int32_t, std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace saola::routing
