#include "worker/engine/prefix_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace saola::engine {

PrefixCache::PrefixCache(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size),
      nodes_(static_cast<size_t>(num_blocks)),
      tokens_(static_cast<size_t>(num_blocks) * static_cast<size_t>(block_size)) {
  SAOLA_CHECK(num_blocks >= 0 && block_size > 0);
  block_of_hash_.reserve(static_cast<size_t>(num_blocks));
}

int32_t PrefixCache::Find(uint64_t hash) const {
  auto it = block_of_hash_.find(hash);
  return it == block_of_hash_.end() ? kNone : it->second;
}

bool PrefixCache::TokensEqual(int32_t block, std::span<const int32_t> tokens) const {
  if (tokens.size() != static_cast<size_t>(block_size_)) return false;
  return std::equal(tokens.begin(), tokens.end(),
                    tokens_.begin() + static_cast<size_t>(block) * block_size_);
}

void PrefixCache::Insert(int32_t block, int32_t parent, uint64_t parent_hash, uint64_t hash,
                         std::span<const int32_t> tokens) {
  Node& node = nodes_[block];
  SAOLA_CHECK(!node.cached);
  SAOLA_CHECK(tokens.size() == static_cast<size_t>(block_size_));
  SAOLA_CHECK(parent == kRoot || nodes_[parent].cached);
  SAOLA_CHECK(block_of_hash_.emplace(hash, block).second);
  node = Node{.cached = true,
              .pinned = true,
              .parent = parent,
              .num_children = 0,
              .depth = 1,
              .hash = hash,
              .parent_hash = parent_hash,
              .tick = 0};
  if (parent != kRoot) {
    Node& p = nodes_[parent];
    if (IsEvictableLeaf(p)) leaves_.erase({p.tick, parent});
    ++p.num_children;
    node.depth = p.depth + 1;
  }
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<size_t>(block) * block_size_);
}

void PrefixCache::Pin(int32_t block) {
  Node& node = nodes_[block];
  SAOLA_CHECK(node.cached && !node.pinned);
  if (IsEvictableLeaf(node)) leaves_.erase({node.tick, block});
  node.pinned = true;
  --num_unpinned_;
}

void PrefixCache::Unpin(int32_t block, uint64_t tick) {
  Node& node = nodes_[block];
  SAOLA_CHECK(node.cached && node.pinned);
  node.pinned = false;
  node.tick = tick;
  ++num_unpinned_;
  if (IsEvictableLeaf(node)) leaves_.emplace(node.tick, block);
}

void PrefixCache::Touch(int32_t block, uint64_t tick) {
  Node& node = nodes_[block];
  SAOLA_CHECK(node.cached && node.pinned);
  node.tick = tick;
}

std::optional<PrefixCache::Evicted> PrefixCache::EvictLeastRecentlyUsed() {
  if (leaves_.empty()) return std::nullopt;
  const int32_t block = leaves_.begin()->second;
  leaves_.erase(leaves_.begin());
  Node& node = nodes_[block];
  const Evicted evicted{block, node.hash};
  block_of_hash_.erase(node.hash);
  if (node.parent != kRoot) {
    Node& p = nodes_[node.parent];
    --p.num_children;
    if (IsEvictableLeaf(p)) leaves_.emplace(p.tick, node.parent);
  }
  node = Node{};
  --num_unpinned_;
  return evicted;
}

std::vector<int32_t> PrefixCache::EvictionOrderOfLeaves() const {
  std::vector<int32_t> order;
  order.reserve(leaves_.size());
  for (const auto& [tick, block] : leaves_) order.push_back(block);
  return order;
}

std::vector<std::pair<uint64_t, uint64_t>> PrefixCache::Snapshot() const {
  // Sorting by depth puts every parent before its children.
  std::vector<std::pair<int32_t, int32_t>> by_depth;  // (depth, block)
  by_depth.reserve(block_of_hash_.size());
  for (int32_t b = 0; b < static_cast<int32_t>(nodes_.size()); ++b) {
    if (nodes_[b].cached) by_depth.emplace_back(nodes_[b].depth, b);
  }
  std::sort(by_depth.begin(), by_depth.end());
  std::vector<std::pair<uint64_t, uint64_t>> out;
  out.reserve(by_depth.size());
  for (const auto& [depth, b] : by_depth) out.emplace_back(nodes_[b].parent_hash, nodes_[b].hash);
  return out;
}

std::string PrefixCache::CheckInvariants(const std::vector<int32_t>& ref_counts) const {
  if (ref_counts.size() != nodes_.size()) return "refcount table has the wrong size";
  std::vector<int32_t> children(nodes_.size(), 0);
  int32_t num_cached = 0;
  int32_t num_unpinned = 0;
  size_t num_leaves = 0;
  for (int32_t b = 0; b < static_cast<int32_t>(nodes_.size()); ++b) {
    const Node& n = nodes_[b];
    if (!n.cached) continue;
    ++num_cached;
    if (Find(n.hash) != b) return absl::StrCat("block ", b, " is not indexed by its hash");
    if (n.pinned != (ref_counts[b] > 0)) {
      return absl::StrCat("block ", b, " pinned=", n.pinned, " but refcount ", ref_counts[b]);
    }
    if (!n.pinned) ++num_unpinned;
    if (n.parent == kRoot) {
      if (n.depth != 1) return absl::StrCat("root child ", b, " has depth ", n.depth);
    } else {
      const Node& p = nodes_[n.parent];
      if (!p.cached) return absl::StrCat("block ", b, " has an uncached parent ", n.parent);
      if (p.hash != n.parent_hash) return absl::StrCat("block ", b, " parent hash mismatch");
      if (n.depth != p.depth + 1) return absl::StrCat("block ", b, " depth mismatch");
      if (n.pinned && !p.pinned) {
        return absl::StrCat("pinned block ", b, " has an unpinned parent ", n.parent);
      }
      ++children[n.parent];
    }
    const bool in_leaves = leaves_.count({n.tick, b}) > 0;
    if (in_leaves != IsEvictableLeaf(n)) {
      return absl::StrCat("block ", b, " leaf-set membership ", in_leaves, " is wrong");
    }
    num_leaves += in_leaves;
  }
  for (int32_t b = 0; b < static_cast<int32_t>(nodes_.size()); ++b) {
    if (children[b] != nodes_[b].num_children) {
      return absl::StrCat("block ", b, " counts ", nodes_[b].num_children, " children, has ",
                          children[b]);
    }
  }
  if (num_cached != this->num_cached()) return "hash index size differs from cached nodes";
  if (num_unpinned != num_unpinned_) return "unpinned count is wrong";
  if (num_leaves != leaves_.size()) return "leaf set holds stale entries";
  return "";
}

}  // namespace saola::engine
