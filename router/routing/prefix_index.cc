#include "router/routing/prefix_index.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/check.h"

namespace saola::routing {

PrefixIndex::PrefixIndex(const Options& options, Clock clock)
    : options_(options), clock_(std::move(clock)) {
  SAOLA_CHECK(options_.max_blocks_per_worker > 0);
}

void PrefixIndex::ApplyEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch) {
  const absl::Time now = clock_();
  // Only a snapshot may create a worker's state: other batches mean nothing without one.
  Mutate(worker_id, /*create=*/batch.reset(),
         [&](Worker& w) ABSL_NO_THREAD_SAFETY_ANALYSIS { ApplyEventsLocked(w, batch, now); });
}

void PrefixIndex::MarkEventsLost(int32_t worker_id) {
  Mutate(worker_id, /*create=*/false,
         [](Worker& w) ABSL_NO_THREAD_SAFETY_ANALYSIS { DropEventsLocked(w); });
}

void PrefixIndex::RecordRouted(int32_t worker_id, std::span<const uint64_t> hashes) {
  if (hashes.empty()) return;
  const absl::Time now = clock_();
  Mutate(worker_id, /*create=*/true, [&](Worker& w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    ExpireLocked(w, now);
    const absl::Time expiry =
        now + (w.events_live ? options_.pending_ttl : options_.history_ttl);
    // Record at most as many hashes as fit beside the cached ones: the leading ones, since a
    // suffix without its prefix matches nothing. This also keeps MakeRoomLocked from evicting
    // this request's own entries (they are the newest).
    const int64_t room =
        options_.max_blocks_per_worker - static_cast<int64_t>(w.cached.size());
    const size_t limit = static_cast<size_t>(std::max<int64_t>(room, 0));
    size_t num_recorded = 0;
    for (const uint64_t h : hashes) {
      if (w.events_live && w.cached.contains(h)) continue;  // already confirmed
      if (num_recorded++ == limit) break;
      auto it = w.recent.find(h);
      if (it != w.recent.end()) {
        it->second = expiry;
      } else {
        if (!MakeRoomLocked(w)) break;
        w.recent.emplace(h, expiry);
      }
      w.order.push_back({h, expiry});
    }
  });
}

void PrefixIndex::RemoveWorker(int32_t worker_id) {
  std::unique_ptr<Worker> gone;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker_id);
    if (it == workers_.end()) return;
    gone = std::move(it->second);
    workers_.erase(it);
  }
  // `gone` is destroyed here, outside mu_: freeing a large set does not stall every query.
}

int32_t PrefixIndex::MatchedBlocks(int32_t worker_id, std::span<const uint64_t> hashes) const {
  if (hashes.empty()) return 0;
  const absl::Time now = clock_();
  absl::ReaderMutexLock lock(&mu_);
  const Worker* w = Find(worker_id);
  if (w == nullptr) return 0;
  absl::ReaderMutexLock worker_lock(&w->mu);
  int32_t matched = 0;
  for (uint64_t h : hashes) {
    if (!w->cached.contains(h)) {
      auto it = w->recent.find(h);
      if (it == w->recent.end() || it->second <= now) break;
    }
    ++matched;
  }
  return matched;
}

PrefixIndex::WorkerStats PrefixIndex::Stats(int32_t worker_id) const {
  absl::ReaderMutexLock lock(&mu_);
  const Worker* w = Find(worker_id);
  if (w == nullptr) return {};
  absl::ReaderMutexLock worker_lock(&w->mu);
  return {.events_live = w->events_live,
          .num_cached = static_cast<int64_t>(w->cached.size()),
          .num_recent = static_cast<int64_t>(w->recent.size()),
          .num_dropped_stored = w->num_dropped_stored};
}

void PrefixIndex::Mutate(int32_t worker_id, bool create, absl::FunctionRef<void(Worker&)> fn) {
  {
    absl::ReaderMutexLock lock(&mu_);
    if (Worker* w = Find(worker_id)) {
      absl::MutexLock worker_lock(&w->mu);
      fn(*w);
      return;
    }
  }
  if (!create) return;
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Worker>& slot = workers_[worker_id];
  if (slot == nullptr) slot = std::make_unique<Worker>();
  absl::MutexLock worker_lock(&slot->mu);
  fn(*slot);
}

PrefixIndex::Worker* PrefixIndex::Find(int32_t worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : it->second.get();
}

void PrefixIndex::ApplyEventsLocked(Worker& w, const saola::v1::KvEventBatch& batch,
                                    absl::Time now) {
  if (batch.reset()) {
    // The snapshot is the whole truth: forget earlier events and every routing-history entry.
    w.cached.clear();
    w.recent.clear();
    w.order.clear();
    w.events_live = true;
  } else {
    if (!w.events_live) return;  // waiting for a snapshot
    if (batch.sequence() != w.last_sequence + 1) {
      // Events were lost in between; what we hold may be wrong in either direction.
      DropEventsLocked(w);
      return;
    }
    ExpireLocked(w, now);
  }
  w.last_sequence = batch.sequence();
  for (const saola::v1::KvBlocksStored& chain : batch.stored()) {
    for (uint64_t h : chain.block_hashes()) {
      w.recent.erase(h);  // a pending entry confirmed; its `order` entry is now stale
      if (w.cached.contains(h)) continue;
      if (!MakeRoomLocked(w)) {
        ++w.num_dropped_stored;
        continue;
      }
      w.cached.insert(h);
    }
  }
  for (uint64_t h : batch.removed()) {
    w.cached.erase(h);
    w.recent.erase(h);  // evicted before it was confirmed: no longer pending either
  }
}

void PrefixIndex::DropEventsLocked(Worker& w) {
  w.cached.clear();
  w.events_live = false;
  // Pending entries stay, with their short expiry, as routing history; new ones get history_ttl.
}

void PrefixIndex::ExpireLocked(Worker& w, absl::Time now) {
  while (!w.order.empty() && w.order.front().expiry <= now) {
    const RecentEntry e = w.order.front();
    w.order.pop_front();
    auto it = w.recent.find(e.hash);
    if (it != w.recent.end() && it->second == e.expiry) w.recent.erase(it);
  }
  // Re-recorded and erased hashes leave stale `order` entries; rebuild when they dominate.
  if (w.order.size() > 2 * w.recent.size() + 64) {
    std::vector<RecentEntry> live;
    live.reserve(w.recent.size());
    for (const auto& [hash, expiry] : w.recent) live.push_back({hash, expiry});
    std::sort(live.begin(), live.end(), [](const RecentEntry& a, const RecentEntry& b) {
      return a.expiry < b.expiry;
    });
    w.order.assign(live.begin(), live.end());
  }
}

bool PrefixIndex::EvictOldestRecentLocked(Worker& w) {
  while (!w.order.empty()) {
    const RecentEntry e = w.order.front();
    w.order.pop_front();
    auto it = w.recent.find(e.hash);
    if (it != w.recent.end() && it->second == e.expiry) {
      w.recent.erase(it);
      return true;
    }
  }
  return false;
}

bool PrefixIndex::MakeRoomLocked(Worker& w) const {
  while (static_cast<int64_t>(w.cached.size() + w.recent.size()) >=
         options_.max_blocks_per_worker) {
    if (!EvictOldestRecentLocked(w)) return false;
  }
  return true;
}

}  // namespace saola::routing
