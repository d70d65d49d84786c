#include "worker/engine/block_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace saola::engine {

// ---------------------------------------------------------------------------------------------
// BlockLease

BlockLease::BlockLease(KvBlockPool* pool) : pool_(pool) {
  if (pool_ != nullptr) pool_->leases_.insert(this);
}

BlockLease::~BlockLease() {
  if (pool_ == nullptr) return;
  Reset();
  pool_->leases_.erase(this);
}

BlockLease::BlockLease(BlockLease&& other) noexcept
    : pool_(other.pool_), blocks_(std::move(other.blocks_)) {
  other.blocks_.clear();
  if (pool_ != nullptr) {
    pool_->leases_.erase(&other);
    pool_->leases_.insert(this);
    other.pool_ = nullptr;
  }
}

BlockLease& BlockLease::operator=(BlockLease&& other) noexcept {
  if (this == &other) return *this;
  if (pool_ != nullptr) {
    Reset();
    pool_->leases_.erase(this);
  }
  pool_ = other.pool_;
  blocks_ = std::move(other.blocks_);
  other.blocks_.clear();
  if (pool_ != nullptr) {
    pool_->leases_.erase(&other);
    pool_->leases_.insert(this);
    other.pool_ = nullptr;
  }
  return *this;
}

void BlockLease::Truncate(int32_t num_blocks) {
  SAOLA_CHECK(num_blocks >= 0);
  while (static_cast<int32_t>(blocks_.size()) > num_blocks) {
    pool_->Release(blocks_.back());
    blocks_.pop_back();
  }
}

// ---------------------------------------------------------------------------------------------
// KvBlockPool

KvBlockPool::KvBlockPool(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size),
      ref_counts_(static_cast<size_t>(std::max(num_blocks, 0)), 0),
      tree_(num_blocks, block_size) {
  SAOLA_CHECK(num_blocks >= 0 && block_size > 0);
  for (int32_t b = 0; b < num_blocks; ++b) free_.push_back(b);
}

KvBlockPool::~KvBlockPool() {
  for (BlockLease* lease : leases_) {
    lease->pool_ = nullptr;
    lease->blocks_.clear();
  }
}

void KvBlockPool::Bind(BlockLease& lease) {
  if (lease.pool_ == nullptr) {
    lease.pool_ = this;
    leases_.insert(&lease);
  }
  SAOLA_CHECK(lease.pool_ == this);
}

void KvBlockPool::Retain(int32_t block) {
  if (ref_counts_[block]++ == 0) {
    ++num_in_use_;
    tree_.Pin(block);  // only cached blocks are shared, so a block retained from 0 is cached
  }
}

void KvBlockPool::Release(int32_t block) {
  SAOLA_CHECK(ref_counts_[block] > 0);
  if (--ref_counts_[block] > 0) return;
  --num_in_use_;
  if (tree_.IsCached(block)) {
    tree_.Unpin(block, ++clock_);
  } else {
    free_.push_back(block);
  }
}

void KvBlockPool::Emit(KvEvent event) {
  if (listener_) listener_(event);
}

int32_t KvBlockPool::MatchPrefix(std::span<const uint64_t> hashes, std::span<const int32_t> tokens,
                                 int32_t max_blocks, BlockLease& lease) {
  Bind(lease);
  const size_t limit = std::min({hashes.size(), tokens.size() / static_cast<size_t>(block_size_),
                                 static_cast<size_t>(std::max(max_blocks, 0))});
  int32_t parent = PrefixCache::kRoot;
  int32_t matched = 0;
  for (size_t i = 0; i < limit; ++i) {
    const int32_t block = tree_.Find(hashes[i]);
    if (block == PrefixCache::kNone || tree_.parent(block) != parent ||
        !tree_.TokensEqual(block, tokens.subspan(i * block_size_, block_size_))) {
      break;
    }
    Retain(block);
    tree_.Touch(block, ++clock_);
    lease.blocks_.push_back(block);
    parent = block;
    ++matched;
  }
  stats_.queried_tokens += tokens.size();
  stats_.hit_tokens += static_cast<uint64_t>(matched) * static_cast<uint64_t>(block_size_);
  return matched;
}

bool KvBlockPool::Allocate(int32_t n, BlockLease& lease) {
  SAOLA_CHECK(n >= 0);
  Bind(lease);
  if (n > num_free()) return false;
  KvEvent removed{.kind = KvEvent::Kind::kRemoved, .parent_hash = 0, .block_hashes = {}};
  lease.blocks_.reserve(lease.blocks_.size() + static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    int32_t block;
    if (!free_.empty()) {
      block = free_.front();
      free_.pop_front();
    } else {
      const std::optional<PrefixCache::Evicted> evicted = tree_.EvictLeastRecentlyUsed();
      SAOLA_CHECK(evicted.has_value());  // num_free() counted it
      block = evicted->block;
      removed.block_hashes.push_back(evicted->hash);
      ++stats_.evicted_blocks;
    }
    SAOLA_CHECK(ref_counts_[block] == 0);
    ref_counts_[block] = 1;
    ++num_in_use_;
    lease.blocks_.push_back(block);
  }
  if (!removed.block_hashes.empty()) Emit(std::move(removed));
  return true;
}

void KvBlockPool::Commit(BlockLease& lease, int32_t index, uint64_t parent_hash, uint64_t hash,
                         std::span<const int32_t> tokens) {
  SAOLA_CHECK(lease.pool_ == this);
  SAOLA_CHECK(index >= 0 && index < lease.size());
  SAOLA_CHECK(tokens.size() == static_cast<size_t>(block_size_));
  const int32_t block = lease.blocks_[index];
  if (tree_.IsCached(block)) {
    SAOLA_CHECK(tree_.hash(block) == hash);  // a cached block's content never changes
    return;
  }
  if (tree_.Find(hash) != PrefixCache::kNone) return;  // another block caches the same prefix
  int32_t parent = PrefixCache::kRoot;
  if (index > 0) {
    parent = lease.blocks_[index - 1];
    if (!tree_.IsCached(parent) || tree_.hash(parent) != parent_hash) return;
  }
  tree_.Insert(block, parent, parent_hash, hash, tokens);
  ++stats_.stored_blocks;
  Emit(KvEvent{.kind = KvEvent::Kind::kStored, .parent_hash = parent_hash, .block_hashes = {hash}});
}

std::string KvBlockPool::CheckInvariants() const {
  std::vector<int32_t> refs(ref_counts_.size(), 0);
  for (const BlockLease* lease : leases_) {
    if (lease->pool_ != this) return "a registered lease is bound to another pool";
    for (int32_t b : lease->blocks_) {
      if (b < 0 || b >= num_blocks()) return absl::StrCat("lease holds invalid block ", b);
      ++refs[b];
    }
  }
  std::vector<bool> on_free_list(ref_counts_.size(), false);
  for (int32_t b : free_) {
    if (b < 0 || b >= num_blocks()) return absl::StrCat("free list holds invalid block ", b);
    if (on_free_list[b]) return absl::StrCat("block ", b, " is on the free list twice");
    on_free_list[b] = true;
  }
  int32_t in_use = 0;
  for (int32_t b = 0; b < num_blocks(); ++b) {
    if (refs[b] != ref_counts_[b]) {
      return absl::StrCat("block ", b, " has refcount ", ref_counts_[b], " but ", refs[b],
                          " lease references");
    }
    const bool used = ref_counts_[b] > 0;
    const bool cached = tree_.IsCached(b);
    in_use += used;
    const int states = static_cast<int>(used) + static_cast<int>(on_free_list[b]) +
                       static_cast<int>(!used && cached);
    if (states != 1) {
      return absl::StrCat("block ", b, " is in ", states, " states (in use ", used, ", free ",
                          static_cast<bool>(on_free_list[b]), ", cached ", cached, ")");
    }
    if (used && !cached && ref_counts_[b] != 1) {
      return absl::StrCat("private block ", b, " is shared (refcount ", ref_counts_[b], ")");
    }
  }
  if (in_use != num_in_use_) return "num_in_use is wrong";
  if (num_in_use_ + num_free() != num_blocks()) return "in use + free != num_blocks";
  return tree_.CheckInvariants(ref_counts_);
}

}  // namespace saola::engine
