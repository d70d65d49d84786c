#include "worker/engine/block_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/block_hash.h"

namespace saola::engine {
namespace {

constexpr int32_t kBlockSize = 4;

std::vector<int32_t> Ids(const BlockLease& lease) {
  return std::vector<int32_t>(lease.blocks().begin(), lease.blocks().end());
}

// `num_tokens` tokens counting up from `first`.
std::vector<int32_t> Tokens(int32_t first, int32_t num_tokens) {
  std::vector<int32_t> t(static_cast<size_t>(num_tokens));
  for (int32_t i = 0; i < num_tokens; ++i) t[i] = first + i;
  return t;
}

struct Prompt {
  std::string tenant;
  std::vector<int32_t> tokens;
  std::vector<uint64_t> hashes;
  uint64_t root;

  Prompt(std::string t, std::vector<int32_t> toks)
      : tenant(std::move(t)),
        tokens(std::move(toks)),
        hashes(FullBlockHashes(tenant, tokens, kBlockSize)),
        root(TenantRootHash(tenant)) {}
  uint64_t parent(int32_t i) const { return i == 0 ? root : hashes[i - 1]; }
  std::span<const int32_t> block(int32_t i) const {
    return std::span(tokens).subspan(static_cast<size_t>(i) * kBlockSize, kBlockSize);
  }
};

// Commits blocks [0, n) of `lease` as the blocks of `p`.
void CommitBlocks(KvBlockPool& pool, BlockLease& lease, const Prompt& p, int32_t n) {
  for (int32_t i = 0; i < n; ++i) pool.Commit(lease, i, p.parent(i), p.hashes[i], p.block(i));
}

// Allocates and commits every full block of `p` in a new lease.
BlockLease Prefill(KvBlockPool& pool, const Prompt& p) {
  BlockLease lease(&pool);
  EXPECT_TRUE(pool.Allocate(static_cast<int32_t>(p.hashes.size()), lease));
  CommitBlocks(pool, lease, p, static_cast<int32_t>(p.hashes.size()));
  return lease;
}

class EventLog {
 public:
  explicit EventLog(KvBlockPool& pool) {
    pool.SetEventListener([this](const KvEvent& e) { events.push_back(e); });
  }
  std::vector<uint64_t> Removed() const {
    std::vector<uint64_t> out;
    for (const KvEvent& e : events) {
      if (e.kind == KvEvent::Kind::kRemoved) {
        out.insert(out.end(), e.block_hashes.begin(), e.block_hashes.end());
      }
    }
    return out;
  }
  int NumStored() const {
    return static_cast<int>(std::count_if(events.begin(), events.end(), [](const KvEvent& e) {
      return e.kind == KvEvent::Kind::kStored;
    }));
  }
  std::vector<KvEvent> events;
};

TEST(BlockPoolTest, StartsWithEveryBlockFree) {
  KvBlockPool pool(5, kBlockSize);
  EXPECT_EQ(pool.num_blocks(), 5);
  EXPECT_EQ(pool.block_size(), kBlockSize);
  EXPECT_EQ(pool.num_free(), 5);
  EXPECT_EQ(pool.num_in_use(), 0);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, AllocatesFreeBlocksOldestFreedFirst) {
  KvBlockPool pool(4, kBlockSize);
  BlockLease a(&pool), b(&pool), c(&pool);
  ASSERT_TRUE(pool.Allocate(2, a));
  ASSERT_TRUE(pool.Allocate(1, b));
  EXPECT_EQ(Ids(a), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{2}));
  EXPECT_EQ(pool.num_in_use(), 3);
  EXPECT_EQ(pool.num_free(), 1);
  a.Reset();  // releases 1, then 0
  EXPECT_EQ(pool.num_free(), 3);
  ASSERT_TRUE(pool.Allocate(3, c));
  EXPECT_EQ(Ids(c), (std::vector<int32_t>{3, 1, 0}));
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, DefaultLeaseBindsToThePoolThatFillsIt) {
  KvBlockPool pool(2, kBlockSize);
  {
    BlockLease lease;
    EXPECT_EQ(lease.pool(), nullptr);
    ASSERT_TRUE(pool.Allocate(2, lease));
    EXPECT_EQ(lease.pool(), &pool);
    EXPECT_EQ(pool.CheckInvariants(), "");
  }
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, AllocateIsAllOrNothing) {
  KvBlockPool pool(4, kBlockSize);
  EventLog log(pool);
  const Prompt p("t", Tokens(0, 8));
  BlockLease cached = Prefill(pool, p);  // blocks 0, 1
  cached.Reset();                        // cached, evictable
  BlockLease held(&pool);
  ASSERT_TRUE(pool.Allocate(1, held));  // block 2
  EXPECT_EQ(pool.num_free(), 3);

  BlockLease lease(&pool);
  EXPECT_FALSE(pool.Allocate(4, lease));
  EXPECT_EQ(lease.size(), 0);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_TRUE(log.Removed().empty());
  EXPECT_EQ(pool.stats().evicted_blocks, 0u);

  ASSERT_TRUE(pool.Allocate(3, lease));
  EXPECT_EQ(Ids(lease), (std::vector<int32_t>{3, 1, 0}));  // free block, then the chain tail first
  EXPECT_EQ(log.Removed(), (std::vector<uint64_t>{p.hashes[1], p.hashes[0]}));
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_TRUE(pool.Allocate(0, lease));
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, MatchPrefixRetainsCommittedBlocks) {
  KvBlockPool pool(8, kBlockSize);
  const Prompt p("t", Tokens(100, 10));  // 2 full blocks and a 2-token tail
  BlockLease a(&pool);
  ASSERT_TRUE(pool.Allocate(3, a));  // 0, 1, 2
  CommitBlocks(pool, a, p, 2);
  EXPECT_EQ(pool.num_cached(), 2);

  BlockLease b(&pool);
  EXPECT_EQ(pool.MatchPrefix(p.hashes, p.tokens, 10, b), 2);
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(pool.num_in_use(), 3);
  EXPECT_EQ(pool.stats().queried_tokens, 10u);
  EXPECT_EQ(pool.stats().hit_tokens, 8u);
  EXPECT_EQ(pool.CheckInvariants(), "");

  a.Reset();  // block 2 is private: free again; 0 and 1 are still held by b
  EXPECT_EQ(pool.num_in_use(), 2);
  EXPECT_EQ(pool.num_free(), 6);
  b.Reset();
  EXPECT_EQ(pool.num_in_use(), 0);
  EXPECT_EQ(pool.num_free(), 8);
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, MatchPrefixStopsAtMaxBlocksAndAtTheLastFullBlock) {
  KvBlockPool pool(8, kBlockSize);
  const Prompt p("t", Tokens(0, 12));
  BlockLease a = Prefill(pool, p);  // 0, 1, 2

  BlockLease b(&pool);
  EXPECT_EQ(pool.MatchPrefix(p.hashes, p.tokens, 1, b), 1);
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{0}));

  BlockLease c(&pool);
  const std::span<const int32_t> short_tokens = std::span(p.tokens).first(9);  // 2 full blocks
  EXPECT_EQ(pool.MatchPrefix(p.hashes, short_tokens, 10, c), 2);

  BlockLease d(&pool);
  EXPECT_EQ(pool.MatchPrefix(p.hashes, p.tokens, 0, d), 0);
  EXPECT_EQ(d.size(), 0);
  EXPECT_EQ(pool.stats().queried_tokens, 12u + 9u + 12u);
  EXPECT_EQ(pool.stats().hit_tokens, 4u + 8u);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, MatchPrefixStopsAtTheFirstDivergentBlock) {
  KvBlockPool pool(8, kBlockSize);
  const Prompt p("t", Tokens(0, 12));
  BlockLease a = Prefill(pool, p);
  std::vector<int32_t> other = p.tokens;
  other[5] = 99;  // second block differs
  const Prompt q("t", other);
  BlockLease b(&pool);
  EXPECT_EQ(pool.MatchPrefix(q.hashes, q.tokens, 10, b), 1);
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{0}));
}

TEST(BlockPoolTest, TenantsNeverShareBlocks) {
  KvBlockPool pool(8, kBlockSize);
  const Prompt a("acme", Tokens(0, 8));
  const Prompt b("globex", Tokens(0, 8));
  BlockLease la = Prefill(pool, a);
  BlockLease lb(&pool);
  EXPECT_EQ(pool.MatchPrefix(b.hashes, b.tokens, 10, lb), 0);
  BlockLease la2(&pool);
  EXPECT_EQ(pool.MatchPrefix(a.hashes, a.tokens, 10, la2), 2);
}

TEST(BlockPoolTest, SameHashWithDifferentTokensNeverMatches) {
  KvBlockPool pool(8, kBlockSize);
  const Prompt p("t", Tokens(0, 4));
  BlockLease a = Prefill(pool, p);

  // A forged collision: the cached hash with other tokens.
  const std::vector<int32_t> other = {7, 7, 7, 7};
  BlockLease b(&pool);
  EXPECT_EQ(pool.MatchPrefix(p.hashes, other, 10, b), 0);
  EXPECT_EQ(b.size(), 0);
  EXPECT_EQ(pool.stats().hit_tokens, 0u);
  EXPECT_EQ(pool.num_in_use(), 1);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, ADeepBlockHashNeverMatchesAsAFirstBlock) {
  KvBlockPool pool(8, kBlockSize);
  const Prompt p("t", Tokens(0, 8));
  BlockLease a = Prefill(pool, p);
  // Block 1's hash and tokens, queried as if they were the first block of a prompt.
  const std::vector<uint64_t> hashes = {p.hashes[1]};
  BlockLease b(&pool);
  EXPECT_EQ(pool.MatchPrefix(hashes, p.block(1), 10, b), 0);
}

TEST(BlockPoolTest, EvictsLeastRecentlyUsedLeafFirst) {
  KvBlockPool pool(4, kBlockSize);
  EventLog log(pool);
  const Prompt x("t", Tokens(0, 4)), y("t", Tokens(10, 4)), z("t", Tokens(20, 4)),
      w("t", Tokens(30, 4));
  {
    BlockLease lx = Prefill(pool, x);  // 0
    BlockLease ly = Prefill(pool, y);  // 1
    BlockLease lz = Prefill(pool, z);  // 2
    BlockLease lw = Prefill(pool, w);  // 3
    // Released in declaration-reverse order: w, z, y, x.
  }
  {
    BlockLease again(&pool);
    ASSERT_EQ(pool.MatchPrefix(w.hashes, w.tokens, 1, again), 1);  // w is the newest now
  }
  // Ages: z < y < x < w.
  BlockLease lease(&pool);
  ASSERT_TRUE(pool.Allocate(1, lease));
  EXPECT_EQ(Ids(lease), (std::vector<int32_t>{2}));
  ASSERT_TRUE(pool.Allocate(2, lease));
  EXPECT_EQ(Ids(lease), (std::vector<int32_t>{2, 1, 0}));
  EXPECT_EQ(log.Removed(), (std::vector<uint64_t>{z.hashes[0], y.hashes[0], x.hashes[0]}));
  ASSERT_EQ(log.events.size(), 4u + 2u);  // 4 stored, then one kRemoved per Allocate
  EXPECT_EQ(log.events[4].block_hashes, (std::vector<uint64_t>{z.hashes[0]}));
  EXPECT_EQ(log.events[5].block_hashes, (std::vector<uint64_t>{y.hashes[0], x.hashes[0]}));
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.stats().evicted_blocks, 3u);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, EvictsChainsFromTheTailAndParentsAfterTheirChildren) {
  KvBlockPool pool(6, kBlockSize);
  EventLog log(pool);
  const Prompt a("t", Tokens(0, 12));  // 3 blocks
  const Prompt b("t", Tokens(50, 8));  // 2 blocks
  BlockLease la = Prefill(pool, a);    // 0, 1, 2
  BlockLease lb = Prefill(pool, b);    // 3, 4
  BlockLease lc(&pool);
  ASSERT_TRUE(pool.Allocate(1, lc));  // 5, private
  lb.Reset();                         // 4 then 3
  la.Reset();                         // 2, 1, 0
  EXPECT_EQ(pool.num_free(), 5);

  // A new request reuses a's first block, which pins it.
  BlockLease d(&pool);
  ASSERT_EQ(pool.MatchPrefix(a.hashes, a.tokens, 1, d), 1);
  EXPECT_EQ(Ids(d), (std::vector<int32_t>{0}));
  EXPECT_EQ(pool.num_free(), 4);

  // Leaves by age: 4 (then its parent 3), 2 (then 1, whose parent 0 is pinned).
  ASSERT_TRUE(pool.Allocate(3, d));
  EXPECT_EQ(Ids(d), (std::vector<int32_t>{0, 4, 3, 2}));
  EXPECT_EQ(log.Removed(), (std::vector<uint64_t>{b.hashes[1], b.hashes[0], a.hashes[2]}));
  EXPECT_FALSE(pool.Allocate(2, d));
  ASSERT_TRUE(pool.Allocate(1, d));
  EXPECT_EQ(Ids(d), (std::vector<int32_t>{0, 4, 3, 2, 1}));
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_cached(), 1);  // block 0, held
  EXPECT_FALSE(pool.Allocate(1, d));
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, DuplicateCommitKeepsTheBlockPrivate) {
  KvBlockPool pool(4, kBlockSize);
  EventLog log(pool);
  const Prompt p("t", Tokens(0, 4));
  BlockLease a(&pool), b(&pool);
  ASSERT_TRUE(pool.Allocate(1, a));  // 0
  ASSERT_TRUE(pool.Allocate(1, b));  // 1: the same prompt, computed concurrently
  CommitBlocks(pool, a, p, 1);
  CommitBlocks(pool, b, p, 1);
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.stats().stored_blocks, 1u);
  EXPECT_EQ(log.NumStored(), 1);
  b.Reset();  // private: back to the free list
  a.Reset();  // cached: evictable
  BlockLease c(&pool);
  ASSERT_TRUE(pool.Allocate(3, c));
  EXPECT_EQ(Ids(c), (std::vector<int32_t>{2, 3, 1}));  // free blocks before the cached one
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, CommitNeedsTheLeasesPreviousBlockCachedAsParent) {
  KvBlockPool pool(4, kBlockSize);
  EventLog log(pool);
  const Prompt p("t", Tokens(0, 8));
  BlockLease a(&pool);
  ASSERT_TRUE(pool.Allocate(2, a));
  pool.Commit(a, 1, p.parent(1), p.hashes[1], p.block(1));  // parent not committed yet
  EXPECT_EQ(pool.num_cached(), 0);
  pool.Commit(a, 0, p.parent(0), p.hashes[0], p.block(0));
  pool.Commit(a, 1, /*parent_hash=*/12345, p.hashes[1], p.block(1));  // wrong parent
  EXPECT_EQ(pool.num_cached(), 1);
  pool.Commit(a, 1, p.parent(1), p.hashes[1], p.block(1));
  EXPECT_EQ(pool.num_cached(), 2);
  pool.Commit(a, 1, p.parent(1), p.hashes[1], p.block(1));  // again: no-op
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(log.NumStored(), 2);
  EXPECT_EQ(pool.stats().stored_blocks, 2u);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, CommittingMatchedBlocksIsANoOp) {
  KvBlockPool pool(4, kBlockSize);
  const Prompt p("t", Tokens(0, 8));
  BlockLease a = Prefill(pool, p);
  BlockLease b(&pool);
  ASSERT_EQ(pool.MatchPrefix(p.hashes, p.tokens, 2, b), 2);
  CommitBlocks(pool, b, p, 2);
  EXPECT_EQ(pool.stats().stored_blocks, 2u);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, ExtendsACachedChainFromAMatchedPrefix) {
  KvBlockPool pool(8, kBlockSize);
  EventLog log(pool);
  const Prompt p("t", Tokens(0, 8));
  BlockLease a = Prefill(pool, p);  // 0, 1
  a.Reset();
  std::vector<int32_t> longer = p.tokens;
  for (int32_t t : {8, 9, 10, 11}) longer.push_back(t);
  const Prompt q("t", longer);
  BlockLease b(&pool);
  ASSERT_EQ(pool.MatchPrefix(q.hashes, q.tokens, 3, b), 2);
  ASSERT_TRUE(pool.Allocate(1, b));  // 2
  CommitBlocks(pool, b, q, 3);
  EXPECT_EQ(pool.num_cached(), 3);
  ASSERT_EQ(log.events.size(), 3u);
  EXPECT_EQ(log.events[2].kind, KvEvent::Kind::kStored);
  EXPECT_EQ(log.events[2].parent_hash, p.hashes[1]);
  EXPECT_EQ(log.events[2].block_hashes, (std::vector<uint64_t>{q.hashes[2]}));
  b.Reset();
  BlockLease c(&pool);
  EXPECT_EQ(pool.MatchPrefix(q.hashes, q.tokens, 3, c), 3);
  EXPECT_EQ(Ids(c), (std::vector<int32_t>{0, 1, 2}));
}

TEST(BlockPoolTest, EmitsStoredEventsWithTheirParents) {
  KvBlockPool pool(4, kBlockSize);
  EventLog log(pool);
  const Prompt p("acme", Tokens(0, 8));
  BlockLease a = Prefill(pool, p);
  ASSERT_EQ(log.events.size(), 2u);
  EXPECT_EQ(log.events[0].kind, KvEvent::Kind::kStored);
  EXPECT_EQ(log.events[0].parent_hash, TenantRootHash("acme"));
  EXPECT_EQ(log.events[0].block_hashes, (std::vector<uint64_t>{p.hashes[0]}));
  EXPECT_EQ(log.events[1].parent_hash, p.hashes[0]);
  EXPECT_EQ(log.events[1].block_hashes, (std::vector<uint64_t>{p.hashes[1]}));
}

TEST(BlockPoolTest, TruncateReleasesTheTailLastBlockFirst) {
  KvBlockPool pool(4, kBlockSize);
  BlockLease a(&pool);
  ASSERT_TRUE(pool.Allocate(4, a));
  a.Truncate(6);  // holds fewer: no-op
  EXPECT_EQ(a.size(), 4);
  a.Truncate(2);
  EXPECT_EQ(Ids(a), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(pool.num_free(), 2);
  BlockLease b(&pool);
  ASSERT_TRUE(pool.Allocate(2, b));
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, TruncateKeepsTheCachedPrefixAndReleasesTheRest) {
  KvBlockPool pool(4, kBlockSize);
  const Prompt p("t", Tokens(0, 12));
  BlockLease a = Prefill(pool, p);  // 0, 1, 2
  a.Truncate(1);                    // 2 then 1 become evictable, 0 stays held
  EXPECT_EQ(pool.num_in_use(), 1);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.num_cached(), 3);
  BlockLease b(&pool);
  ASSERT_TRUE(pool.Allocate(3, b));
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{3, 2, 1}));
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, MovingALeaseMovesItsBlocks) {
  KvBlockPool pool(4, kBlockSize);
  BlockLease a(&pool);
  ASSERT_TRUE(pool.Allocate(2, a));
  BlockLease b(std::move(a));
  EXPECT_EQ(a.size(), 0);
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(pool.CheckInvariants(), "");

  BlockLease c(&pool);
  ASSERT_TRUE(pool.Allocate(1, c));  // 2
  c = std::move(b);                  // releases 2, takes 0 and 1
  EXPECT_EQ(Ids(c), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(pool.num_in_use(), 2);
  EXPECT_EQ(pool.CheckInvariants(), "");

  std::vector<BlockLease> leases;
  leases.push_back(std::move(c));
  leases.emplace_back(&pool);
  ASSERT_TRUE(pool.Allocate(1, leases.back()));
  leases.reserve(100);  // relocates the leases
  EXPECT_EQ(pool.CheckInvariants(), "");
  leases.clear();
  EXPECT_EQ(pool.num_in_use(), 0);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.CheckInvariants(), "");
}

TEST(BlockPoolTest, LeasesOutlivingThePoolAreDetached) {
  auto pool = std::make_unique<KvBlockPool>(4, kBlockSize);
  BlockLease a(pool.get());
  ASSERT_TRUE(pool->Allocate(2, a));
  pool.reset();
  EXPECT_EQ(a.size(), 0);
  EXPECT_EQ(a.pool(), nullptr);
}

TEST(BlockPoolTest, SnapshotListsParentsBeforeChildren) {
  KvBlockPool pool(8, kBlockSize);
  const Prompt p("a", Tokens(0, 12));
  std::vector<int32_t> fork = Tokens(0, 4);
  for (int32_t t : {40, 41, 42, 43}) fork.push_back(t);
  const Prompt q("a", fork);
  const Prompt r("b", Tokens(0, 4));
  BlockLease lp = Prefill(pool, p);
  BlockLease lq(&pool);
  ASSERT_EQ(pool.MatchPrefix(q.hashes, q.tokens, 2, lq), 1);
  ASSERT_TRUE(pool.Allocate(1, lq));
  CommitBlocks(pool, lq, q, 2);
  BlockLease lr = Prefill(pool, r);

  const std::vector<std::pair<uint64_t, uint64_t>> snap = pool.SnapshotCached();
  ASSERT_EQ(snap.size(), 5u);
  std::set<uint64_t> seen = {p.root, r.root};
  for (const auto& [parent, hash] : snap) {
    EXPECT_TRUE(seen.count(parent)) << "parent listed after its child";
    seen.insert(hash);
  }
  const std::set<std::pair<uint64_t, uint64_t>> expected = {{p.root, p.hashes[0]},
                                                            {p.hashes[0], p.hashes[1]},
                                                            {p.hashes[1], p.hashes[2]},
                                                            {q.hashes[0], q.hashes[1]},
                                                            {r.root, r.hashes[0]}};
  const std::set<std::pair<uint64_t, uint64_t>> got(snap.begin(), snap.end());
  EXPECT_EQ(got, expected);
}

// ---------------------------------------------------------------------------------------------
// Seeded randomized operations, with every invariant checked after each one.

struct SimRequest {
  std::string tenant;
  std::vector<int32_t> tokens;
  std::vector<uint64_t> hashes;
  BlockLease lease;
  int32_t committed = 0;  // blocks [0, committed) were offered to Commit

  void Rehash() { hashes = FullBlockHashes(tenant, tokens, kBlockSize); }
};

TEST(BlockPoolTest, RandomizedOperationsKeepInvariants) {
  constexpr int32_t kNumBlocks = 48;
  constexpr int kNumOps = 100000;
  constexpr size_t kMaxRequests = 6;
  std::mt19937_64 rng(20240611);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  KvBlockPool pool(kNumBlocks, kBlockSize);
  const std::vector<std::string> tenants = {"a", "b"};
  const std::set<uint64_t> roots = {TenantRootHash("a"), TenantRootHash("b")};

  // The router's view, rebuilt from events only.
  std::set<uint64_t> mirror;
  uint64_t num_removed_events = 0, num_stored_events = 0;
  pool.SetEventListener([&](const KvEvent& e) {
    if (e.kind == KvEvent::Kind::kStored) {
      ASSERT_EQ(e.block_hashes.size(), 1u);
      ASSERT_TRUE(roots.count(e.parent_hash) || mirror.count(e.parent_hash));
      ASSERT_TRUE(mirror.insert(e.block_hashes[0]).second);
      ++num_stored_events;
    } else {
      ASSERT_FALSE(e.block_hashes.empty());
      for (uint64_t h : e.block_hashes) ASSERT_EQ(mirror.erase(h), 1u);
      num_removed_events += e.block_hashes.size();
    }
  });

  // What each block holds, as the test computed it: a match must return exactly this.
  std::vector<std::vector<int32_t>> content(kNumBlocks);
  std::vector<std::vector<int32_t>> bases;
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> base;
    for (int j = 0; j < 40; ++j) base.push_back(uniform(0, 5));
    bases.push_back(base);
  }

  std::vector<std::unique_ptr<SimRequest>> reqs;
  auto start_request = [&] {
    auto r = std::make_unique<SimRequest>();
    r->tenant = tenants[uniform(0, 1)];
    const std::vector<int32_t>& base = bases[uniform(0, 3)];
    r->tokens.assign(base.begin(), base.begin() + uniform(0, 40));
    for (int n = uniform(0, 12); n > 0; --n) r->tokens.push_back(uniform(0, 2));
    r->Rehash();
    r->lease = BlockLease(&pool);
    reqs.push_back(std::move(r));
  };
  auto match = [&](SimRequest& r) {
    const int32_t max_blocks = uniform(0, static_cast<int>(r.hashes.size()) + 1);
    const int32_t matched = pool.MatchPrefix(r.hashes, r.tokens, max_blocks, r.lease);
    ASSERT_EQ(r.lease.size(), matched);
    ASSERT_LE(matched, max_blocks);
    for (int32_t i = 0; i < matched; ++i) {
      const std::span<const int32_t> want =
          std::span(r.tokens).subspan(static_cast<size_t>(i) * kBlockSize, kBlockSize);
      const std::vector<int32_t>& have = content[r.lease.blocks()[i]];
      ASSERT_TRUE(std::equal(want.begin(), want.end(), have.begin(), have.end()));
    }
    r.committed = matched;
  };

  for (int op = 0; op < kNumOps; ++op) {
    if (reqs.empty()) start_request();
    SimRequest& r = *reqs[uniform(0, static_cast<int>(reqs.size()) - 1)];
    const int kind = uniform(0, 99);
    if (kind < 10) {
      if (reqs.size() < kMaxRequests) {
        start_request();
        match(*reqs.back());
      }
    } else if (kind < 30) {
      const int32_t n = uniform(0, 4);
      const int32_t free_before = pool.num_free();
      const int32_t size_before = r.lease.size();
      const int32_t cached_before = pool.num_cached();
      const bool ok = pool.Allocate(n, r.lease);
      ASSERT_EQ(ok, n <= free_before);
      if (ok) {
        ASSERT_EQ(r.lease.size(), size_before + n);
        for (int32_t i = size_before; i < r.lease.size(); ++i) content[r.lease.blocks()[i]].clear();
      } else {
        ASSERT_EQ(r.lease.size(), size_before);
        ASSERT_EQ(pool.num_free(), free_before);
        ASSERT_EQ(pool.num_cached(), cached_before);
      }
    } else if (kind < 55) {
      const int32_t i = r.committed;
      if (i < r.lease.size() && i < static_cast<int32_t>(r.hashes.size())) {
        const std::span<const int32_t> block =
            std::span(r.tokens).subspan(static_cast<size_t>(i) * kBlockSize, kBlockSize);
        const uint64_t parent = i == 0 ? TenantRootHash(r.tenant) : r.hashes[i - 1];
        // Now and then a forged hash, as a collision or a buggy caller would produce.
        const uint64_t hash = uniform(0, 19) == 0 ? rng() : r.hashes[i];
        const uint64_t stored_before = pool.stats().stored_blocks;
        pool.Commit(r.lease, i, parent, hash, block);
        if (pool.stats().stored_blocks != stored_before) {
          content[r.lease.blocks()[i]].assign(block.begin(), block.end());
        }
        ++r.committed;
      }
    } else if (kind < 70) {
      r.tokens.push_back(uniform(0, 2));  // a decoded token
      r.Rehash();
    } else if (kind < 80) {
      const int32_t keep = uniform(0, r.lease.size());
      r.lease.Truncate(keep);
      r.committed = std::min(r.committed, keep);
      if (uniform(0, 1) == 0) {
        r.tokens.resize(
            std::min(r.tokens.size(), static_cast<size_t>(keep) * kBlockSize + uniform(0, 3)));
        r.Rehash();
      }
    } else if (kind < 88) {
      r.lease.Reset();  // preemption; it matches its prefix again
      r.committed = 0;
      match(r);
    } else {
      const size_t victim = static_cast<size_t>(uniform(0, static_cast<int>(reqs.size()) - 1));
      if (uniform(0, 1) == 0) {
        BlockLease moved = std::move(reqs[victim]->lease);  // released when `moved` dies
      }
      reqs.erase(reqs.begin() + victim);
    }
    ASSERT_EQ(pool.CheckInvariants(), "") << "after op " << op << " (kind " << kind << ")";
    if (op % 97 == 0) {
      std::set<uint64_t> snap;
      for (const auto& [parent, hash] : pool.SnapshotCached()) snap.insert(hash);
      ASSERT_EQ(snap, mirror) << "after op " << op;
    }
  }

  EXPECT_GT(pool.stats().hit_tokens, 0u);
  EXPECT_GT(pool.stats().evicted_blocks, 0u);
  EXPECT_EQ(pool.stats().evicted_blocks, num_removed_events);
  EXPECT_EQ(pool.stats().stored_blocks, num_stored_events);

  reqs.clear();
  EXPECT_EQ(pool.num_in_use(), 0);
  EXPECT_EQ(pool.num_free(), kNumBlocks);
  EXPECT_EQ(pool.CheckInvariants(), "");
  BlockLease all(&pool);  // every cached block can be evicted
  EXPECT_TRUE(pool.Allocate(kNumBlocks, all));
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_TRUE(mirror.empty());
}

}  // namespace
}  // namespace saola::engine
