// The router's semantic response cache: a finished response is stored under the embedding of
// its prompt, and a later prompt whose embedding is close enough (cosine >= the caller's
// threshold) and that the false-hit guard accepts is answered from it.
//
// Partitions: the router passes opaque bytes that encode everything besides the last user
// message that changes the answer (tenant, model, sampling parameters, stop strings, max_tokens,
// the conversation so far). Each partition has its own index (semantic_index.h), so an entry can
// never answer a request of another partition or tenant.
//
// Lookup: embed outside the lock (the slow part, ~ms), then under a reader lock search the
// partition's top `kCandidates` neighbours and return the most similar one that is above the
// threshold, not expired and accepted by the guard. Several candidates, not one: an expired or
// vetoed nearest neighbour must not hide a valid second one.
//
// Expiry and size: entries older than `ttl` are not served and are removed by the next Insert;
// beyond `max_entries` the oldest entries are evicted first (ids grow with insertion, so the
// oldest is the smallest id of an ordered map). Removal from FAISS: see semantic_index.h (flat:
// remove_ids; HNSW: tombstones, rebuild past a fraction).
//
// Persistence: Save/Load with semantic_cache_file.h (versioned, checksummed, every length
// bounds-checked, FAISS indexes rebuilt from the vectors rather than deserialized).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cache/semantic/embedder.h"
#include "cache/semantic/false_hit_guard.h"
#include "cache/semantic/semantic_index.h"
#include "saola/v1/cache.pb.h"

namespace saola::cache {

struct SemanticCacheOptions {
  /// Entries across all partitions; the oldest are evicted beyond it.
  int64_t max_entries = 100000;
  /// An entry older than this is never served.
  absl::Duration ttl = absl::Hours(1);
  /// Per partition: exact IndexFlatIP below this many entries, IndexHNSWFlat at or above.
  int64_t hnsw_min_entries = 4096;
  int hnsw_m = 32;
  int hnsw_ef_search = 64;
  /// Rebuild an HNSW partition when its tombstones exceed this fraction.
  double max_tombstone_fraction = 0.25;
  /// Neighbours examined per lookup.
  int num_candidates = 4;
  /// The false-hit guard; disable only to measure what it prevents.
  bool enable_guard = true;
  GuardOptions guard;
  /// The clock (tests inject one); absl::Now when empty.
  std::function<absl::Time()> clock;
};

struct SemanticHit {
  saola::v1::CachedResponse response;
  float similarity = 0;
  /// The stored prompt that answered.
  std::string cached_text;
};

struct SemanticCacheStats {
  int64_t entries = 0;
  int64_t partitions = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  /// Lookups where a candidate was above the threshold but every such one was vetoed.
  int64_t guard_rejections = 0;
  int64_t expired = 0;  // removed by TTL
  int64_t evicted = 0;  // removed by the size bound
  int64_t hnsw_partitions = 0;
  int64_t index_rebuilds = 0;
};

class SemanticCache {
 public:
  /// `embedder` must outlive the cache. Fails on options out of range.
  static absl::StatusOr<std::unique_ptr<SemanticCache>> Create(const Embedder* embedder,
                                                               SemanticCacheOptions options);

  /// Embeds `text` (returned through *embedding when non-null, for a later Insert), searches
  /// `partition`, and returns the most similar live entry with cosine >= `threshold` that the
  /// guard accepts. An embedding failure is a miss (and leaves *embedding empty).
  std::optional<SemanticHit> Lookup(std::string_view partition, std::string_view text,
                                    float threshold, std::vector<float>* embedding);

  /// Stores `response` for `text` in `partition`. `embedding` is Lookup's (or empty: it is then
  /// computed here). Ignored (with no error) if the embedding fails or has the wrong size.
  void Insert(std::string_view partition, std::string_view text, std::vector<float> embedding,
              saola::v1::CachedResponse response);

  /// Writes every live entry to `path` (a temporary file renamed into place).
  absl::Status Save(const std::string& path) const;
  /// Replaces the contents with the file's entries (expired ones dropped). On any error the
  /// cache is left unchanged.
  absl::Status Load(const std::string& path);

  SemanticCacheStats stats() const;
  int dim() const { return dim_; }

 private:
  struct Entry {
    std::string partition;
    std::string text;
    absl::Time created;
    saola::v1::CachedResponse response;
    GuardFeatures features;
  };
  struct Partition {
    std::unique_ptr<SemanticIndex> index;
  };

  SemanticCache(const Embedder* embedder, SemanticCacheOptions options);
  absl::Time Now() const { return options_.clock ? options_.clock() : absl::Now(); }
  SemanticIndexOptions IndexOptions() const;
  // Removes expired entries, then the oldest beyond `max_entries - room`.
  void ExpireAndEvict(absl::Time now, int64_t room) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveEntries(const std::vector<int64_t>& ids) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddLocked(int64_t id, Entry entry, std::vector<float> embedding)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Embedder* const embedder_;
  const int dim_;
  const SemanticCacheOptions options_;
  const FalseHitGuard guard_;

  mutable absl::Mutex mu_;
  std::map<int64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);  // by id = insertion order
  absl::flat_hash_map<std::string, Partition> partitions_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t expired_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rebuilds_of_removed_partitions_ ABSL_GUARDED_BY(mu_) = 0;

  // Lookups run under a reader lock, so their counters are atomics.
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
  std::atomic<int64_t> guard_rejections_{0};
};

}  // namespace saola::cache
