#include "cache/semantic/semantic_index.h"

#include <omp.h>

#include <algorithm>
#include <utility>

#include "common/check.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexHNSW.h"
#include "faiss/IndexIDMap.h"
#include "faiss/impl/HNSW.h"
#include "faiss/impl/IDSelector.h"

namespace saola::cache {

using FaissId = faiss::Index::idx_t;

SemanticIndex::SemanticIndex(int dim, SemanticIndexOptions options)
    : dim_(dim), options_(options) {
  SAOLA_CHECK(dim_ > 0);
  ResetFlat();
}

SemanticIndex::~SemanticIndex() = default;

void SemanticIndex::ResetFlat() {
  hnsw_.reset();
  label_to_id_.clear();
  id_to_label_.clear();
  alive_bitmap_.clear();
  num_tombstones_ = 0;
  flat_.reset();
  flat_storage_ = std::make_unique<faiss::IndexFlatIP>(dim_);
  flat_ = std::make_unique<faiss::IndexIDMap2>(flat_storage_.get());
}

void SemanticIndex::Add(int64_t id, std::vector<float> vec) {
  SAOLA_CHECK(static_cast<int>(vec.size()) == dim_);
  auto [it, inserted] = vectors_.emplace(id, std::move(vec));
  SAOLA_CHECK(inserted);
  const float* data = it->second.data();
  if (hnsw_ != nullptr) {
    const int64_t label = static_cast<int64_t>(label_to_id_.size());
    hnsw_->add(1, data);
    label_to_id_.push_back(id);
    id_to_label_[id] = label;
    if (alive_bitmap_.size() * 8 <= static_cast<size_t>(label)) alive_bitmap_.push_back(0);
    alive_bitmap_[label >> 3] |= static_cast<uint8_t>(1u << (label & 7));
    return;
  }
  const FaissId fid = id;
  flat_->add_with_ids(1, data, &fid);
  if (size() >= options_.hnsw_min_entries) Rebuild(/*want_hnsw=*/true);
}

void SemanticIndex::Remove(std::span<const int64_t> ids) {
  std::vector<FaissId> removed;
  for (int64_t id : ids) {
    if (vectors_.erase(id) == 0) continue;
    removed.push_back(id);
  }
  if (removed.empty()) return;
  if (hnsw_ == nullptr) {
    faiss::IDSelectorBatch sel(removed.size(), removed.data());
    flat_->remove_ids(sel);
    return;
  }
  for (FaissId id : removed) {
    auto it = id_to_label_.find(id);
    SAOLA_CHECK(it != id_to_label_.end());
    const int64_t label = it->second;
    alive_bitmap_[label >> 3] &= static_cast<uint8_t>(~(1u << (label & 7)));
    id_to_label_.erase(it);
    ++num_tombstones_;
  }
  const double vertices = static_cast<double>(label_to_id_.size());
  if (num_tombstones_ > options_.max_tombstone_fraction * vertices) {
    Rebuild(/*want_hnsw=*/size() >= options_.hnsw_min_entries / 2);
  }
}

void SemanticIndex::Rebuild(bool want_hnsw) {
  ++num_rebuilds_;
  // Insert in id order (= insertion order in SemanticCache) so a rebuild is deterministic.
  std::vector<int64_t> ids;
  ids.reserve(vectors_.size());
  for (const auto& [id, vec] : vectors_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<float> data(ids.size() * dim_);
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::vector<float>& v = vectors_.at(ids[i]);
    std::copy(v.begin(), v.end(), data.begin() + i * dim_);
  }
  ResetFlat();
  if (!want_hnsw) {
    std::vector<FaissId> fids(ids.begin(), ids.end());
    if (!ids.empty()) flat_->add_with_ids(ids.size(), data.data(), fids.data());
    return;
  }
  flat_.reset();
  flat_storage_.reset();
  hnsw_ = std::make_unique<faiss::IndexHNSWFlat>(dim_, options_.hnsw_m,
                                                 faiss::METRIC_INNER_PRODUCT);
  hnsw_->hnsw.efConstruction = options_.hnsw_ef_construction;
  hnsw_->hnsw.efSearch = options_.hnsw_ef_search;
  if (!ids.empty()) hnsw_->add(ids.size(), data.data());
  label_to_id_ = ids;
  alive_bitmap_.assign((ids.size() + 7) / 8, 0);
  for (size_t label = 0; label < ids.size(); ++label) {
    id_to_label_[ids[label]] = static_cast<int64_t>(label);
    alive_bitmap_[label >> 3] |= static_cast<uint8_t>(1u << (label & 7));
  }
}

std::vector<SemanticIndex::Neighbor> SemanticIndex::Search(const float* query, int k) const {
  std::vector<Neighbor> out;
  if (k <= 0 || vectors_.empty()) return out;
  const int64_t ntotal = hnsw_ != nullptr ? static_cast<int64_t>(label_to_id_.size())
                                          : static_cast<int64_t>(vectors_.size());
  // Over-fetch so tombstones cannot push live neighbours out of the top k, even where FAISS
  // ignores the selector. Bounded: a rebuild keeps tombstones below a fraction of the graph.
  const int64_t want =
      std::min<int64_t>(ntotal, hnsw_ != nullptr ? k + std::min<int64_t>(num_tombstones_, 4 * k)
                                                 : k);
  // One query: FAISS's OpenMP regions would only add a team wake-up (measured ~12 ms on a
  // loaded 2-core host, more than the search), so this thread searches alone.
  const int omp_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  struct RestoreOmp {
    int n;
    ~RestoreOmp() { omp_set_num_threads(n); }
  } restore{omp_threads};
  std::vector<float> distances(want);
  std::vector<FaissId> labels(want, -1);
  if (hnsw_ == nullptr) {
    flat_->search(1, query, want, distances.data(), labels.data());
    for (int64_t i = 0; i < want && static_cast<int>(out.size()) < k; ++i) {
      if (labels[i] < 0) continue;
      out.push_back({labels[i], distances[i]});
    }
    return out;
  }
  faiss::IDSelectorBitmap alive(alive_bitmap_.size(), alive_bitmap_.data());
  faiss::SearchParametersHNSW params;
  params.efSearch = std::max<int>(options_.hnsw_ef_search, static_cast<int>(want));
  params.sel = num_tombstones_ > 0 ? &alive : nullptr;
  hnsw_->search(1, query, want, distances.data(), labels.data(), &params);
  for (int64_t i = 0; i < want && static_cast<int>(out.size()) < k; ++i) {
    const FaissId label = labels[i];
    if (label < 0 || label >= ntotal) continue;
    if ((alive_bitmap_[label >> 3] & (1u << (label & 7))) == 0) continue;
    out.push_back({label_to_id_[label], distances[i]});
  }
  return out;
}

const std::vector<float>* SemanticIndex::Vector(int64_t id) const {
  auto it = vectors_.find(id);
  return it == vectors_.end() ? nullptr : &it->second;
}

}  // namespace saola::cache
