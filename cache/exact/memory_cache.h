// The in-process exact cache: an LRU bounded in bytes, with a time-to-live per entry.
//
// Algorithm: a doubly linked list of entries, most recently used at the front, and a hash map
// from key to list node. Lookup finds the node (O(1)), checks its deadline and fingerprint, and
// splices it to the front (O(1)). Store puts a new node at the front, replacing an entry with the
// same key, then evicts from the back until the charged bytes fit the capacity (O(1) each). An
// expired entry is dropped when a lookup finds it or when it reaches the back; nothing scans.
//
// Knobs (MemoryCacheOptions):
//   capacity_bytes   total charge kept; an entry's charge is its encoded payload size + its key
//                    + kMemoryEntryOverheadBytes (list node, map slot, the message objects), so
//                    the bound tracks real memory within a small factor.
//   ttl              how long an entry may be served after it was stored.
//   max_value_bytes  a larger response is not stored (counted as dropped).
//   now              the clock, injectable so tests control time.
//
// Entries are held as shared_ptr<const CachedResponse>, so a hit copies the message outside the
// lock and a concurrent eviction cannot pull it from under the reader.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cache/exact/cached_response_codec.h"
#include "cache/exact/exact_cache.h"

namespace saola::cache {

/// Bytes charged per entry on top of its key and payload.
inline constexpr size_t kMemoryEntryOverheadBytes = 256;

struct MemoryCacheOptions {
  size_t capacity_bytes = size_t{256} << 20;
  absl::Duration ttl = absl::Hours(1);
  size_t max_value_bytes = kMaxCachedValueBytes;
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

class MemoryCache final : public ExactCache {
 public:
  explicit MemoryCache(MemoryCacheOptions options = {});

  std::optional<saola::v1::CachedResponse> Lookup(const RequestFingerprint& fingerprint) override;
  void Store(const RequestFingerprint& fingerprint, saola::v1::CachedResponse response) override;
  std::string_view backend() const override { return "memory"; }
  ExactCacheStats stats() const override;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const saola::v1::CachedResponse> response;
    size_t charge = 0;
    absl::Time expires_at;
  };
  using EntryList = std::list<Entry>;

  // Unlinks `it` from the list and the index and returns its charge.
  void EraseLocked(EntryList::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const MemoryCacheOptions options_;
  mutable absl::Mutex mu_;
  EntryList lru_ ABSL_GUARDED_BY(mu_);  // front: most recently used
  // Keys are views of Entry::key; list nodes never move, so the views stay valid.
  absl::flat_hash_map<std::string_view, EntryList::iterator> index_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  ExactCacheStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace saola::cache
