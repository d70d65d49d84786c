#include "common/block_hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

// The expected values were computed independently in Python, exactly as the header describes:
//
//   def fnv(data):
//       h = 0xcbf29ce484222325
//       for b in data: h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)
//       return h
//   def fin(x):
//       M = 2**64 - 1
//       x ^= x >> 30; x = (x * 0xbf58476d1ce4e5b9) & M
//       x ^= x >> 27; x = (x * 0x94d049bb133111eb) & M
//       return x ^ (x >> 31)
//   def root(t): return fin(fnv(b"saola-tenant\0" + t.encode()))
//   def chain(p, toks):
//       return fin(fnv(p.to_bytes(8, "little")
//                      + b"".join(t.to_bytes(4, "little", signed=True) for t in toks)))
//   root(""), root("acme"), root("globex")
//   chain(0, []), chain(0, [1, 2, 3, 4]), chain(0x0123456789abcdef, [-1, 0, 65536, 2**31 - 1])
//   h0 = chain(root("acme"), [1, 2, 3, 4]); h1 = chain(h0, [5, 6, 7, 8])

namespace saola {
namespace {

TEST(BlockHashTest, TenantRootHashMatchesReference) {
  EXPECT_EQ(TenantRootHash(""), 0x496cdd574a220a76ULL);
  EXPECT_EQ(TenantRootHash("acme"), 0xcf9f504c6f769012ULL);
  EXPECT_EQ(TenantRootHash("globex"), 0x93f161295359ecccULL);
}

TEST(BlockHashTest, ChainBlockHashMatchesReference) {
  EXPECT_EQ(ChainBlockHash(0, {}), 0x813f0174a2367c13ULL);
  const std::vector<int32_t> small = {1, 2, 3, 4};
  EXPECT_EQ(ChainBlockHash(0, small), 0x432e48f2c87a96aaULL);
  // Negative and wide tokens: 4 little-endian two's complement bytes each.
  const std::vector<int32_t> wide = {-1, 0, 65536, 2147483647};
  EXPECT_EQ(ChainBlockHash(0x0123456789abcdefULL, wide), 0xe39104183aa78a55ULL);
}

TEST(BlockHashTest, FullBlockHashesChainFromTheTenantRoot) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // 2 full blocks + tail
  const std::vector<uint64_t> hashes = FullBlockHashes("acme", tokens, 4);
  ASSERT_EQ(hashes.size(), 2u);
  EXPECT_EQ(hashes[0], 0x3c3e42f763ca6511ULL);
  EXPECT_EQ(hashes[1], 0xf722885910129dc3ULL);
  EXPECT_EQ(hashes[0], ChainBlockHash(TenantRootHash("acme"), std::span(tokens).first(4)));
  EXPECT_EQ(hashes[1], ChainBlockHash(hashes[0], std::span(tokens).subspan(4, 4)));
}

TEST(BlockHashTest, PartialTailHasNoHash) {
  const std::vector<int32_t> tokens = {1, 2, 3};
  EXPECT_TRUE(FullBlockHashes("acme", tokens, 4).empty());
  EXPECT_TRUE(FullBlockHashes("acme", {}, 4).empty());
  EXPECT_EQ(FullBlockHashes("acme", tokens, 3).size(), 1u);
}

TEST(BlockHashTest, TenantsNeverShareHashes) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<uint64_t> a = FullBlockHashes("acme", tokens, 4);
  const std::vector<uint64_t> b = FullBlockHashes("globex", tokens, 4);
  const std::vector<uint64_t> none = FullBlockHashes("", tokens, 4);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_NE(a[0], b[0]);
  EXPECT_NE(a[0], none[0]);
  EXPECT_NE(a[1], b[1]);
  EXPECT_NE(TenantRootHash("acme"), TenantRootHash("acme "));
}

TEST(BlockHashTest, HashCoversTheWholePrefix) {
  // Same second block, different first block: the second hashes differ too.
  const std::vector<int32_t> x = {1, 2, 3, 4, 9, 9, 9, 9};
  const std::vector<int32_t> y = {1, 2, 3, 5, 9, 9, 9, 9};
  EXPECT_NE(FullBlockHashes("t", x, 4)[1], FullBlockHashes("t", y, 4)[1]);
  // Token order matters.
  const std::vector<int32_t> z = {2, 1, 3, 4};
  EXPECT_NE(FullBlockHashes("t", x, 4)[0], FullBlockHashes("t", z, 4)[0]);
}

}  // namespace
}  // namespace saola
