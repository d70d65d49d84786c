#include "common/block_hash.h"

#include "common/check.h"

namespace saola {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

// FNV-1a over the `num_bytes` low bytes of `value`, least significant first (little endian).
uint64_t FnvLittleEndian(uint64_t h, uint64_t value, int num_bytes) {
  for (int i = 0; i < num_bytes; ++i) {
    h ^= (value >> (8 * i)) & 0xff;
    h *= kFnvPrime;
  }
  return h;
}

uint64_t Finalize(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

uint64_t TenantRootHash(std::string_view tenant) {
  static constexpr char kPrefix[] = "saola-tenant";  // sizeof includes the NUL, which is hashed
  uint64_t h = kFnvOffset;
  for (size_t i = 0; i < sizeof(kPrefix); ++i)
    h = FnvLittleEndian(h, static_cast<uint8_t>(kPrefix[i]), 1);
  for (char c : tenant) h = FnvLittleEndian(h, static_cast<uint8_t>(c), 1);
  return Finalize(h);
}

uint64_t ChainBlockHash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = FnvLittleEndian(kFnvOffset, parent_hash, 8);
  for (int32_t t : tokens) h = FnvLittleEndian(h, static_cast<uint32_t>(t), 4);
  return Finalize(h);
}

std::vector<uint64_t> FullBlockHashes(std::string_view tenant, std::span<const int32_t> tokens,
                                      int32_t block_size) {
  SAOLA_CHECK(block_size > 0);
  std::vector<uint64_t> hashes;
  hashes.reserve(tokens.size() / static_cast<size_t>(block_size));
  uint64_t parent = TenantRootHash(tenant);
  for (size_t start = 0; start + static_cast<size_t>(block_size) <= tokens.size();
       start += block_size) {
    parent = ChainBlockHash(parent, tokens.subspan(start, block_size));
    hashes.push_back(parent);
  }
  return hashes;
}

}  // namespace saola
