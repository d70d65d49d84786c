// The exact response cache: a finished response stored under the fingerprint of the request that
// produced it, replayed to the next request with the same fingerprint.
//
// The router uses it like this (only for deterministic requests, see IsDeterministic):
//   RequestFingerprint fp = FingerprintRequest(tenant, model, prompt_ids, request);
//   if (auto hit = cache.Lookup(fp)) replay hit->messages();
//   else { generate, collect the stream; on a clean finish: cache.Store(fp, collected); }
//
// Backends: "memory" (an LRU in this process, memory_cache.h) and "redis" (shared by every router
// replica, redis_cache.h). Both are safe to call from many threads at once, and neither ever
// turns a cache problem into a request error: whatever goes wrong is a miss, counted in stats().
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "cache/exact/request_fingerprint.h"
#include "saola/v1/cache.pb.h"

namespace saola::cache {

/// Counters for metrics (saola_exact_cache_*). Monotonic except `bytes` and `entries`.
struct ExactCacheStats {
  uint64_t hits = 0;     ///< Lookups that returned a response.
  uint64_t misses = 0;   ///< Lookups that did not (absent, expired, mismatched, corrupt, errors).
  uint64_t stores = 0;   ///< Responses written.
  uint64_t dropped = 0;  ///< Store calls not written: too large, write queue full, backend down.
  uint64_t errors = 0;   ///< Backend failures: unavailable, timeouts, protocol errors, corrupt
                         ///< values. An operation skipped because the backend is known to be
                         ///< down counts too.
  int64_t bytes = -1;    ///< Bytes held (memory backend); -1 where unknown (Redis is shared).
  int64_t entries = -1;  ///< Entries held (memory backend); -1 where unknown.
};

class ExactCache {
 public:
  virtual ~ExactCache() = default;

  /// The response stored under `fingerprint.key`, when its version is known and its stored
  /// fingerprint equals `fingerprint.canonical` (so a key collision is a miss, never another
  /// request's answer). A corrupt, undecodable or mismatched entry is a miss (Redis also deletes
  /// it). Bounded latency: a slow or dead backend is a miss after at most its timeout.
  virtual std::optional<saola::v1::CachedResponse> Lookup(const RequestFingerprint& fingerprint) = 0;

  /// Stores `response` (its `messages`, ending with the one that carries `finish`) under
  /// `fingerprint`; sets its version and fingerprint (and created_unix_seconds when unset).
  /// Never blocks the caller for long and never fails: a response that cannot be stored is
  /// counted in stats().dropped.
  virtual void Store(const RequestFingerprint& fingerprint, saola::v1::CachedResponse response) = 0;

  /// "memory" or "redis".
  virtual std::string_view backend() const = 0;

  /// A snapshot of the counters.
  virtual ExactCacheStats stats() const = 0;
};

}  // namespace saola::cache
