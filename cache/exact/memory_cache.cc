#include "cache/exact/memory_cache.h"

#include <utility>

#include "absl/time/time.h"

namespace saola::cache {

MemoryCache::MemoryCache(MemoryCacheOptions options) : options_(std::move(options)) {
  stats_.bytes = 0;
  stats_.entries = 0;
}

void MemoryCache::EraseLocked(EntryList::iterator it) {
  bytes_ -= it->charge;
  index_.erase(std::string_view(it->key));
  lru_.erase(it);
}

std::optional<saola::v1::CachedResponse> MemoryCache::Lookup(
    const RequestFingerprint& fingerprint) {
  std::shared_ptr<const saola::v1::CachedResponse> found;
  {
    absl::MutexLock lock(&mu_);
    auto slot = index_.find(std::string_view(fingerprint.key));
    if (slot == index_.end()) {
      ++stats_.misses;
      return std::nullopt;
    }
    EntryList::iterator it = slot->second;
    if (options_.now() >= it->expires_at) {
      EraseLocked(it);
      ++stats_.misses;
      return std::nullopt;
    }
    // A different request whose key collided: not ours to serve, and not corrupt either, so the
    // entry stays for its owner.
    if (it->response->fingerprint() != fingerprint.canonical ||
        it->response->version() != kCachedResponseVersion) {
      ++stats_.misses;
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it);
    ++stats_.hits;
    found = it->response;
  }
  return *found;  // the copy happens outside the lock
}

void MemoryCache::Store(const RequestFingerprint& fingerprint,
                        saola::v1::CachedResponse response) {
  response.set_version(kCachedResponseVersion);
  response.set_fingerprint(fingerprint.canonical);
  const absl::Time now = options_.now();
  if (response.created_unix_seconds() == 0) response.set_created_unix_seconds(absl::ToUnixSeconds(now));
  const size_t payload = kCachedValueHeaderBytes + response.ByteSizeLong();
  const size_t charge = payload + fingerprint.key.size() + kMemoryEntryOverheadBytes;
  const bool replayable = !response.messages().empty() && response.messages().rbegin()->has_finish();
  auto shared = std::make_shared<const saola::v1::CachedResponse>(std::move(response));

  absl::MutexLock lock(&mu_);
  if (!replayable || payload > options_.max_value_bytes || charge > options_.capacity_bytes) {
    ++stats_.dropped;
    return;
  }
  if (auto slot = index_.find(std::string_view(fingerprint.key)); slot != index_.end()) {
    EraseLocked(slot->second);
  }
  lru_.push_front(Entry{fingerprint.key, std::move(shared), charge, now + options_.ttl});
  index_.emplace(std::string_view(lru_.front().key), lru_.begin());
  bytes_ += charge;
  ++stats_.stores;
  while (bytes_ > options_.capacity_bytes) EraseLocked(std::prev(lru_.end()));
}

ExactCacheStats MemoryCache::stats() const {
  absl::MutexLock lock(&mu_);
  ExactCacheStats s = stats_;
  s.bytes = static_cast<int64_t>(bytes_);
  s.entries = static_cast<int64_t>(lru_.size());
  return s;
}

}  // namespace saola::cache
