// One partition's nearest-neighbour index over unit vectors, by inner product (= cosine).
//
// Two FAISS layouts, chosen by the number of live vectors:
//
//   live < hnsw_min_entries      IndexIDMap2(IndexFlatIP): exact search; removal is
//                                remove_ids (a compaction, O(n), batched by the caller).
//   live >= hnsw_min_entries     IndexHNSWFlat(M, inner product): approximate search,
//                                O(log n) per query. HNSW cannot remove a vertex, so a removed
//                                entry becomes a tombstone: its label stays in the graph (it
//                                still routes searches), a bitmap marks it dead, the search skips
//                                it (FAISS's IDSelector where honoured, and our own filter after).
//
// Tombstones cost memory and recall (dead vertices crowd the candidate list), so when they exceed
// `max_tombstone_fraction` of the graph the partition's index is rebuilt from the live vectors.
// The rebuild picks the layout again, with hysteresis: an HNSW partition goes back to flat only
// below hnsw_min_entries / 2, so a partition hovering at the threshold does not flip-flop.
//
// The index keeps its own copy of every live vector (the source of a rebuild and of
// persistence), so memory is about twice dim * 4 bytes per entry plus the HNSW links
// (2 * M * 4 bytes at level 0). Not thread-safe: SemanticCache serializes writers and lets
// readers share (FAISS searches are const and reentrant).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexHNSW.h"
#include "faiss/IndexIDMap.h"

namespace saola::cache {

struct SemanticIndexOptions {
  /// Live vectors at which a partition moves from the exact flat index to HNSW.
  int64_t hnsw_min_entries = 4096;
  /// HNSW graph degree (links per vertex above level 0; twice that at level 0).
  int hnsw_m = 32;
  /// HNSW candidate-list size at search (raised to k when k is larger).
  int hnsw_ef_search = 64;
  /// HNSW candidate-list size at insertion (FAISS's default is 40).
  int hnsw_ef_construction = 40;
  /// Rebuild an HNSW partition when tombstones exceed this fraction of its vertices.
  double max_tombstone_fraction = 0.25;
};

class SemanticIndex {
 public:
  struct Neighbor {
    int64_t id;
    float similarity;
  };

  SemanticIndex(int dim, SemanticIndexOptions options);
  ~SemanticIndex();
  SemanticIndex(const SemanticIndex&) = delete;
  SemanticIndex& operator=(const SemanticIndex&) = delete;

  /// Adds `vec` (dim floats) under `id`. Precondition: `id` is not live in this index.
  void Add(int64_t id, std::vector<float> vec);
  /// Removes the ids that are live here (others are ignored); one compaction for the batch.
  void Remove(std::span<const int64_t> ids);
  /// Up to `k` live neighbours of `query` (dim floats), most similar first.
  std::vector<Neighbor> Search(const float* query, int k) const;
  /// The stored vector of a live id, or nullptr.
  const std::vector<float>* Vector(int64_t id) const;

  int64_t size() const { return static_cast<int64_t>(vectors_.size()); }
  bool uses_hnsw() const { return hnsw_ != nullptr; }
  int64_t num_tombstones() const { return num_tombstones_; }
  /// How many times the FAISS index was rebuilt (layout switch or tombstone purge).
  int64_t num_rebuilds() const { return num_rebuilds_; }

 private:
  void Rebuild(bool want_hnsw);
  void ResetFlat();

  const int dim_;
  const SemanticIndexOptions options_;
  absl::flat_hash_map<int64_t, std::vector<float>> vectors_;  // live vectors by id

  // Flat layout (exactly one of flat_ / hnsw_ is set).
  std::unique_ptr<faiss::IndexFlatIP> flat_storage_;
  std::unique_ptr<faiss::IndexIDMap2> flat_;

  // HNSW layout: FAISS label (insertion order) -> id, the id -> label map, and a bitmap of the
  // labels that are alive (bit set), in the byte layout of faiss::IDSelectorBitmap.
  std::unique_ptr<faiss::IndexHNSWFlat> hnsw_;
  std::vector<int64_t> label_to_id_;
  absl::flat_hash_map<int64_t, int64_t> id_to_label_;
  std::vector<uint8_t> alive_bitmap_;
  int64_t num_tombstones_ = 0;
  int64_t num_rebuilds_ = 0;
};

}  // namespace saola::cache
