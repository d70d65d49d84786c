// The radix tree of the prefix cache: which KV blocks hold which full blocks of tokens, how they
// chain, and which of them may be evicted next.
//
// Every node is one full KV block, keyed by its chained block hash (common/block_hash.h), so a
// node's hash already names its whole prefix and the tree needs no per-token edges: a child is
// found by its hash, not by walking its parent's children. The roots are the tenants' root hashes;
// they are not blocks and are represented by kRoot. A node is stored in an arena indexed by its
// block id, so the tree costs a few words per block and no allocation per insert.
//
//          root(tenant A)          root(tenant B)
//            /        \                  |
//        [b3: h0]   [b7: h0']        [b1: g0]
//            |                           |
//        [b5: h1]                    [b2: g1]
//
// A node is pinned while some lease holds its block (the pool's refcount > 0). An unpinned node
// with no children is an evictable leaf; leaves are kept in an ordered set by (tick, block), where
// the tick is the pool's logical clock at the node's last use, so the least recently used leaf
// comes first. Evicting a leaf can make its parent a leaf, which then competes with its own tick:
// parents are never evicted before their children, and chains shrink from the tail.
//
// The tree does not own blocks or refcounts: KvBlockPool tells it when a node is pinned or
// unpinned and takes the evicted block back. All operations are O(1) expected or O(log n).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace saola::engine {

class PrefixCache {
 public:
  /// The parent of a tenant's first block.
  static constexpr int32_t kRoot = -1;
  /// "No block" from Find.
  static constexpr int32_t kNone = -2;

  struct Evicted {
    int32_t block;
    uint64_t hash;
  };

  PrefixCache(int32_t num_blocks, int32_t block_size);

  /// The cached block with `hash`, or kNone.
  int32_t Find(uint64_t hash) const;
  bool IsCached(int32_t block) const { return nodes_[block].cached; }
  /// Preconditions for the accessors below: IsCached(block).
  uint64_t hash(int32_t block) const { return nodes_[block].hash; }
  uint64_t parent_hash(int32_t block) const { return nodes_[block].parent_hash; }
  /// The parent block, or kRoot.
  int32_t parent(int32_t block) const { return nodes_[block].parent; }
  /// Whether the block stores exactly `tokens` (block_size of them).
  bool TokensEqual(int32_t block, std::span<const int32_t> tokens) const;

  /// Adds `block` (not cached, pinned by its owner) under `parent` (kRoot or a cached block).
  /// Preconditions: `hash` not cached; tokens.size() == block_size.
  void Insert(int32_t block, int32_t parent, uint64_t parent_hash, uint64_t hash,
              std::span<const int32_t> tokens);
  /// The block's refcount went from 0 to 1: it cannot be evicted while pinned.
  void Pin(int32_t block);
  /// The block's refcount went to 0 at logical time `tick`: evictable once it has no children.
  void Unpin(int32_t block, uint64_t tick);
  /// Records a use at `tick` (the block is pinned, so only its age changes).
  void Touch(int32_t block, uint64_t tick);
  /// Removes the least recently used evictable leaf, or nullopt when there is none.
  std::optional<Evicted> EvictLeastRecentlyUsed();

  int32_t num_cached() const { return static_cast<int32_t>(block_of_hash_.size()); }
  /// Cached blocks that no lease holds (all of them can be evicted, leaves first).
  int32_t num_unpinned() const { return num_unpinned_; }
  /// Evictable leaves, least recently used first (for tests).
  std::vector<int32_t> EvictionOrderOfLeaves() const;
  /// (parent_hash, hash) of every cached block, parents before children.
  std::vector<std::pair<uint64_t, uint64_t>> Snapshot() const;
  /// Checks the tree's own invariants (hash index, child counts, depths, leaf set); returns the
  /// first violation or an empty string. `ref_counts[block]` is the owner's refcount: a cached
  /// node is pinned exactly when it is positive.
  std::string CheckInvariants(const std::vector<int32_t>& ref_counts) const;

 private:
  struct Node {
    bool cached = false;
    bool pinned = false;
    int32_t parent = kRoot;
    int32_t num_children = 0;
    int32_t depth = 0;  // 1 for a tenant's first block
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    uint64_t tick = 0;  // logical time of the last use
  };

  bool IsEvictableLeaf(const Node& node) const {
    return node.cached && !node.pinned && node.num_children == 0;
  }

  int32_t block_size_;
  std::vector<Node> nodes_;      // indexed by block id
  std::vector<int32_t> tokens_;  // block b's tokens at [b * block_size, (b+1) * block_size)
  absl::flat_hash_map<uint64_t, int32_t> block_of_hash_;
  std::set<std::pair<uint64_t, int32_t>> leaves_;  // evictable leaves by (tick, block)
  int32_t num_unpinned_ = 0;
};

}  // namespace saola::engine
