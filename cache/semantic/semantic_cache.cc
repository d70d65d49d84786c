#include "cache/semantic/semantic_cache.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cache/semantic/semantic_cache_file.h"
#include "common/check.h"

namespace saola::cache {

absl::StatusOr<std::unique_ptr<SemanticCache>> SemanticCache::Create(
    const Embedder* embedder, SemanticCacheOptions options) {
  if (embedder == nullptr || embedder->dim() <= 0) {
    return absl::InvalidArgumentError("semantic cache: an embedder with dim > 0 is required");
  }
  if (options.max_entries <= 0 || options.ttl <= absl::ZeroDuration() ||
      options.hnsw_min_entries <= 0 || options.hnsw_m < 2 || options.hnsw_ef_search <= 0 ||
      options.num_candidates <= 0 || options.max_tombstone_fraction <= 0 ||
      options.max_tombstone_fraction >= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "semantic cache: options out of range (max_entries ", options.max_entries, ", ttl ",
        absl::FormatDuration(options.ttl), ", hnsw_min_entries ", options.hnsw_min_entries,
        ", hnsw_m ", options.hnsw_m, ", hnsw_ef_search ", options.hnsw_ef_search,
        ", num_candidates ", options.num_candidates, ", max_tombstone_fraction ",
        options.max_tombstone_fraction, ")"));
  }
  return std::unique_ptr<SemanticCache>(new SemanticCache(embedder, std::move(options)));
}

SemanticCache::SemanticCache(const Embedder* embedder, SemanticCacheOptions options)
    : embedder_(embedder),
      dim_(embedder->dim()),
      options_(std::move(options)),
      guard_(options_.guard) {}

SemanticIndexOptions SemanticCache::IndexOptions() const {
  SemanticIndexOptions o;
  o.hnsw_min_entries = options_.hnsw_min_entries;
  o.hnsw_m = options_.hnsw_m;
  o.hnsw_ef_search = options_.hnsw_ef_search;
  o.max_tombstone_fraction = options_.max_tombstone_fraction;
  return o;
}

std::optional<SemanticHit> SemanticCache::Lookup(std::string_view partition,
                                                 std::string_view text, float threshold,
                                                 std::vector<float>* embedding) {
  if (embedding != nullptr) embedding->clear();
  absl::StatusOr<std::vector<float>> vec = embedder_->Embed(text);  // outside the lock
  if (!vec.ok() || static_cast<int>(vec->size()) != dim_) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  // Features are only needed when a candidate clears the threshold; computed lazily, once.
  std::optional<GuardFeatures> features;
  const absl::Time now = Now();
  std::optional<SemanticHit> hit;
  bool vetoed = false;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto part = partitions_.find(absl::string_view(partition.data(), partition.size()));
    if (part != partitions_.end()) {
      for (const SemanticIndex::Neighbor& n :
           part->second.index->Search(vec->data(), options_.num_candidates)) {
        if (n.similarity < threshold) break;  // sorted, most similar first
        auto it = entries_.find(n.id);
        if (it == entries_.end()) continue;
        const Entry& e = it->second;
        if (now - e.created >= options_.ttl) continue;
        if (options_.enable_guard) {
          if (!features) features = FalseHitGuard::Extract(text);
          if (!guard_.Check(*features, e.features, n.similarity).accept) {
            vetoed = true;
            continue;
          }
        }
        hit = SemanticHit{e.response, n.similarity, e.text};
        break;
      }
    }
  }
  if (hit) {
    hits_.fetch_add(1, std::memory_order_relaxed);
  } else {
    misses_.fetch_add(1, std::memory_order_relaxed);
    if (vetoed) guard_rejections_.fetch_add(1, std::memory_order_relaxed);
  }
  if (embedding != nullptr) *embedding = *std::move(vec);
  return hit;
}

void SemanticCache::Insert(std::string_view partition, std::string_view text,
                           std::vector<float> embedding, saola::v1::CachedResponse response) {
  if (embedding.empty()) {
    absl::StatusOr<std::vector<float>> vec = embedder_->Embed(text);
    if (!vec.ok()) return;
    embedding = *std::move(vec);
  }
  if (static_cast<int>(embedding.size()) != dim_) return;
  Entry entry;
  entry.partition = std::string(partition);
  entry.text = std::string(text);
  entry.response = std::move(response);
  entry.features = FalseHitGuard::Extract(text);  // outside the lock too
  absl::MutexLock lock(&mu_);
  entry.created = Now();
  ExpireAndEvict(entry.created, /*room=*/1);
  AddLocked(next_id_++, std::move(entry), std::move(embedding));
}

void SemanticCache::AddLocked(int64_t id, Entry entry, std::vector<float> embedding) {
  Partition& part = partitions_[entry.partition];
  if (part.index == nullptr) part.index = std::make_unique<SemanticIndex>(dim_, IndexOptions());
  part.index->Add(id, std::move(embedding));
  entries_.emplace(id, std::move(entry));
}

void SemanticCache::ExpireAndEvict(absl::Time now, int64_t room) {
  std::vector<int64_t> doomed;
  auto it = entries_.begin();
  // Oldest first: ids grow with insertion time, so expired entries form a prefix (a clock that
  // steps back only delays their removal; Lookup checks the age of every candidate anyway).
  for (; it != entries_.end() && now - it->second.created >= options_.ttl; ++it) {
    doomed.push_back(it->first);
  }
  expired_ += static_cast<int64_t>(doomed.size());
  const int64_t live = static_cast<int64_t>(entries_.size() - doomed.size());
  const int64_t excess = live + room - options_.max_entries;
  for (int64_t i = 0; i < excess && it != entries_.end(); ++i, ++it) doomed.push_back(it->first);
  evicted_ += std::max<int64_t>(0, excess);
  if (!doomed.empty()) RemoveEntries(doomed);
}

void SemanticCache::RemoveEntries(const std::vector<int64_t>& ids) {
  // Group by partition so each index compacts once.
  absl::flat_hash_map<std::string, std::vector<int64_t>> by_partition;
  for (int64_t id : ids) {
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    by_partition[it->second.partition].push_back(id);
    entries_.erase(it);
  }
  for (auto& [name, part_ids] : by_partition) {
    auto part = partitions_.find(name);
    SAOLA_CHECK(part != partitions_.end());
    part->second.index->Remove(part_ids);
    if (part->second.index->size() == 0) {
      rebuilds_of_removed_partitions_ += part->second.index->num_rebuilds();
      partitions_.erase(part);
    }
  }
}

absl::Status SemanticCache::Save(const std::string& path) const {
  SemanticCacheFileHeader header;
  header.dim = static_cast<uint32_t>(dim_);
  header.max_entries = options_.max_entries;
  header.ttl = options_.ttl;
  header.hnsw_min_entries = options_.hnsw_min_entries;
  std::vector<SemanticCacheRecord> records;
  {
    absl::ReaderMutexLock lock(&mu_);
    records.reserve(entries_.size());
    for (const auto& [id, e] : entries_) {
      const std::vector<float>* vec = partitions_.at(e.partition).index->Vector(id);
      SAOLA_CHECK(vec != nullptr);
      records.push_back(SemanticCacheRecord{e.partition, e.text, *vec, e.created,
                                            e.response.SerializeAsString()});
    }
  }
  return WriteFileAtomically(path, EncodeSemanticCacheFile(header, records));
}

absl::Status SemanticCache::Load(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<std::vector<SemanticCacheRecord>> records =
      DecodeSemanticCacheFile(*bytes, static_cast<uint32_t>(dim_));
  if (!records.ok()) return records.status();
  bytes->clear();

  // Build the new contents aside, then swap them in: an error leaves the cache as it was, and
  // lookups are not blocked while HNSW graphs are built.
  const absl::Time now = Now();
  std::stable_sort(records->begin(), records->end(),
                   [](const SemanticCacheRecord& a, const SemanticCacheRecord& b) {
                     return a.created < b.created;
                   });
  std::vector<std::pair<Entry, std::vector<float>>> fresh;
  for (SemanticCacheRecord& r : *records) {
    if (now - r.created >= options_.ttl) continue;
    Entry e;
    if (!e.response.ParseFromString(r.response_bytes)) {
      return absl::DataLossError(absl::StrCat("semantic cache file ", path,
                                              ": an entry's response does not parse"));
    }
    e.partition = std::move(r.partition);
    e.text = std::move(r.text);
    e.created = r.created;
    e.features = FalseHitGuard::Extract(e.text);
    fresh.emplace_back(std::move(e), std::move(r.embedding));
  }
  // Beyond the bound, keep the newest.
  const size_t skip = fresh.size() > static_cast<size_t>(options_.max_entries)
                          ? fresh.size() - static_cast<size_t>(options_.max_entries)
                          : 0;
  std::map<int64_t, Entry> entries;
  absl::flat_hash_map<std::string, Partition> partitions;
  int64_t id = 0;
  for (size_t i = skip; i < fresh.size(); ++i, ++id) {
    Entry& e = fresh[i].first;
    Partition& part = partitions[e.partition];
    if (part.index == nullptr) part.index = std::make_unique<SemanticIndex>(dim_, IndexOptions());
    part.index->Add(id, std::move(fresh[i].second));
    entries.emplace(id, std::move(e));
  }
  absl::MutexLock lock(&mu_);
  entries_ = std::move(entries);
  partitions_ = std::move(partitions);
  next_id_ = id;
  return absl::OkStatus();
}

SemanticCacheStats SemanticCache::stats() const {
  SemanticCacheStats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.guard_rejections = guard_rejections_.load(std::memory_order_relaxed);
  absl::ReaderMutexLock lock(&mu_);
  s.entries = static_cast<int64_t>(entries_.size());
  s.partitions = static_cast<int64_t>(partitions_.size());
  s.expired = expired_;
  s.evicted = evicted_;
  s.index_rebuilds = rebuilds_of_removed_partitions_;
  for (const auto& [name, part] : partitions_) {
    if (part.index->uses_hnsw()) ++s.hnsw_partitions;
    s.index_rebuilds += part.index->num_rebuilds();
  }
  return s;
}

}  // namespace saola::cache
