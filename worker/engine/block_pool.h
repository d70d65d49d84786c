// The KV block pool of one worker engine: hands out the block ids of model::KvCacheStorage to
// requests, and keeps finished requests' full blocks as a prefix cache that later requests reuse.
//
// Every block is in exactly one of three states:
//   in use       refcount > 0: held by one or more BlockLeases (more than one only when cached);
//   free         refcount 0, not cached: on the free list, handed out first (oldest freed first);
//   evictable    refcount 0, cached: still in the prefix tree, reusable by MatchPrefix until
//                Allocate evicts it (least recently used leaf first, see prefix_cache.h).
// num_free() counts the last two: every evictable block can be reclaimed because a held cached
// block's parent is always held too (a lease holds a cached chain from its root; Commit only
// links a block under the lease's previous block).
//
// A request's life: MatchPrefix (reuse the cached prefix, pinned in its lease), Allocate (fresh
// blocks for the rest and for decoding), Commit each block once it is full and its KV computed,
// and finally drop or Reset the lease. Preemption and speculative rollback use Truncate. Blocks
// released by one lease call are released tail first, so that of one request's chain the deepest
// blocks are the oldest and go first.
//
// The pool publishes kStored/kRemoved events for the router's prefix index, synchronously. It is
// not thread-safe: the engine thread owns it, and every lease must be destroyed on that thread.
// Leases still alive when the pool is destroyed are detached (left empty) so that their
// destructors do nothing.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "worker/engine/prefix_cache.h"

namespace saola::engine {

/// A change of the cached set, for the router's prefix index.
struct KvEvent {
  enum class Kind { kStored, kRemoved };
  Kind kind;
  /// kStored: the hash of the parent block (the tenant root hash for a first block).
  uint64_t parent_hash = 0;
  /// kStored: a chain, each the child of the previous; kRemoved: any set of hashes.
  std::vector<uint64_t> block_hashes;
};

struct PrefixCacheStats {
  uint64_t queried_tokens = 0;  // tokens passed to MatchPrefix
  uint64_t hit_tokens = 0;      // tokens of the blocks it matched
  uint64_t evicted_blocks = 0;
  uint64_t stored_blocks = 0;  // effective Commits
};

class KvBlockPool;

/// The blocks one request holds, in block-table order; returns them to the pool when destroyed.
/// Move-only. A default-constructed lease binds to the first pool that fills it.
class BlockLease {
 public:
  BlockLease() = default;
  explicit BlockLease(KvBlockPool* pool);
  ~BlockLease();
  BlockLease(BlockLease&& other) noexcept;
  BlockLease& operator=(BlockLease&& other) noexcept;
  BlockLease(const BlockLease&) = delete;
  BlockLease& operator=(const BlockLease&) = delete;

  std::span<const int32_t> blocks() const { return blocks_; }
  int32_t size() const { return static_cast<int32_t>(blocks_.size()); }
  KvBlockPool* pool() const { return pool_; }

  /// Releases the blocks past the first `num_blocks` (last first); no-op if it holds no more.
  void Truncate(int32_t num_blocks);
  /// Releases every block (last first). The lease stays bound to its pool.
  void Reset() { Truncate(0); }

 private:
  friend class KvBlockPool;
  KvBlockPool* pool_ = nullptr;
  std::vector<int32_t> blocks_;
};

class KvBlockPool {
 public:
  /// Preconditions: num_blocks >= 0, block_size > 0.
  explicit KvBlockPool(int32_t num_blocks, int32_t block_size = 16);
  ~KvBlockPool();
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t block_size() const { return block_size_; }
  /// Blocks Allocate can hand out now: free ones plus evictable cached ones.
  int32_t num_free() const { return static_cast<int32_t>(free_.size()) + tree_.num_unpinned(); }
  /// Blocks with refcount > 0.
  int32_t num_in_use() const { return num_in_use_; }
  /// Blocks in the prefix tree, held or not.
  int32_t num_cached() const { return tree_.num_cached(); }

  /// Longest cached prefix of a request: walks hashes[0..] while a cached block has that hash,
  /// is the child of the previously matched block (a tenant root child for the first), and
  /// stores exactly the corresponding block of `tokens` (so a hash collision never matches).
  /// Stops after `max_blocks` blocks or at the last full block of `tokens`. Each matched block is
  /// retained (pinned) and appended to `lease`, and counts as used now for LRU. Adds
  /// tokens.size() to the queried and matched blocks * block_size to the hit tokens of stats().
  /// Returns the number of blocks matched. `lease` is normally empty.
  int32_t MatchPrefix(std::span<const uint64_t> hashes, std::span<const int32_t> tokens,
                      int32_t max_blocks, BlockLease& lease);

  /// Appends `n` fresh blocks (refcount 1) to `lease`; returns false and changes nothing when
  /// num_free() < n. Free blocks go first, then evictable cached blocks, least recently used leaf
  /// first; evictions are published as one kRemoved event.
  bool Allocate(int32_t n, BlockLease& lease);

  /// Publishes lease block `index` (full, its KV computed) to the prefix tree under `hash`, with
  /// `tokens` (block_size of them) stored for collision checks. `parent_hash` is the tenant root
  /// hash for index 0, otherwise the hash of lease block index - 1. Emits kStored. No-op (the
  /// block stays private and goes straight to the free list when released) when `hash` is
  /// already cached, or when index > 0 and block index - 1 of the lease is not cached under
  /// `parent_hash`; so commit a request's blocks in order. Committing a block that is already
  /// cached under `hash` (e.g. one MatchPrefix returned) is a no-op too.
  void Commit(BlockLease& lease, int32_t index, uint64_t parent_hash, uint64_t hash,
              std::span<const int32_t> tokens);

  /// Receives every event synchronously, from inside the call that caused it.
  void SetEventListener(std::function<void(const KvEvent&)> listener) {
    listener_ = std::move(listener);
  }

  /// (parent_hash, hash) of every cached block, parents before children: a new subscriber's
  /// snapshot, after which the events keep it current.
  std::vector<std::pair<uint64_t, uint64_t>> SnapshotCached() const { return tree_.Snapshot(); }

  const PrefixCacheStats& stats() const { return stats_; }

  /// Test hook, O(num_blocks + leased blocks): checks that refcounts equal the references of all
  /// live leases, that each block is in exactly one of {in use, free, evictable}, and the tree's
  /// invariants (prefix_cache.h). Returns the first violation, or an empty string.
  std::string CheckInvariants() const;

 private:
  friend class BlockLease;

  void Bind(BlockLease& lease);
  void Retain(int32_t block);
  void Release(int32_t block);
  void Emit(KvEvent event);

  int32_t block_size_;
  std::vector<int32_t> ref_counts_;  // indexed by block id
  std::deque<int32_t> free_;         // refcount 0, not cached
  PrefixCache tree_;
  int32_t num_in_use_ = 0;
  uint64_t clock_ = 0;                       // logical time for LRU
  absl::flat_hash_set<BlockLease*> leases_;  // live leases bound to this pool
  std::function<void(const KvEvent&)> listener_;
  PrefixCacheStats stats_;
};

}  // namespace saola::engine
