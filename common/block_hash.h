// Hashes of full KV blocks, shared by the worker's prefix cache and the router's prefix index.
// The router may be another process in another language, so the algorithm is fixed here, byte
// for byte:
//
//   FNV-1a 64:  h = 0xcbf29ce484222325; for each byte b: h ^= b; h *= 0x100000001b3 (mod 2^64)
//   Finalizer (splitmix64):  x ^= x >> 30; x *= 0xbf58476d1ce4e5b9;
//                            x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31
//
//   TenantRootHash(tenant)        = Finalize(FNV1a("saola-tenant\0" ++ tenant bytes))
//                                   (13 prefix bytes: "saola-tenant" and one NUL byte)
//   ChainBlockHash(parent, toks)  = Finalize(FNV1a(8 little-endian bytes of parent
//                                                  ++ each token as 4 little-endian bytes,
//                                                     two's complement))
//   FullBlockHashes(tenant, toks, block_size):
//       h_0 = ChainBlockHash(TenantRootHash(tenant), toks[0, block_size))
//       h_i = ChainBlockHash(h_{i-1}, toks[i*block_size, (i+1)*block_size))
//     for every full block; a partial tail block has no hash.
//
// Every block hash covers its whole prefix (it chains its parent's), and the chain starts at the
// tenant's root, so two tenants never share a block. A hash is an index key, not a proof: the
// prefix cache also compares the stored tokens before it reuses a block.
//
// In Python, for reference:
//   def fnv(data):
//       h = 0xcbf29ce484222325
//       for b in data: h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)
//       return h
//   def fin(x):
//       M = 2**64 - 1
//       x ^= x >> 30; x = (x * 0xbf58476d1ce4e5b9) & M
//       x ^= x >> 27; x = (x * 0x94d049bb133111eb) & M
//       return x ^ (x >> 31)
//   root  = fin(fnv(b"saola-tenant\0" + tenant.encode()))
//   chain = fin(fnv(parent.to_bytes(8, "little")
//                   + b"".join(t.to_bytes(4, "little", signed=True) for t in tokens)))
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace saola {

/// The parent hash of a tenant's first block.
uint64_t TenantRootHash(std::string_view tenant);

/// The hash of one full block of `tokens` whose parent block hashes to `parent_hash`.
uint64_t ChainBlockHash(uint64_t parent_hash, std::span<const int32_t> tokens);

/// The hashes of every full block of `tokens`, in order. Precondition: block_size > 0.
std::vector<uint64_t> FullBlockHashes(std::string_view tenant, std::span<const int32_t> tokens,
                                      int32_t block_size);

}  // namespace saola
