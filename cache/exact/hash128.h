// A fast 128-bit non-cryptographic hash of a byte string, used for exact-cache keys and for the
// checksum of encoded cache values.
//
// Algorithm (fixed; keys written by one router version are read by the next):
//   Two independent 64-bit lanes walk the input 8 bytes at a time (little endian; the last
//   partial word is zero-padded):
//     a = rotl(a ^ (w * K1), 29) * K2          b = rotl(b + (w * K3), 31) * K4
//   Each step is a bijection of w for a fixed lane state, so two inputs of equal length that
//   differ in one word always leave both lanes different right after that word. The length is
//   mixed into both lanes' seeds, then each lane is finished with splitmix64 and cross-mixed:
//     hi = splitmix64(a ^ rotl(b, 17))         lo = splitmix64(b + hi)
//
// In Python, for reference (M = 2**64 - 1, every product and sum taken mod 2**64):
//   a = 0x243f6a8885a308d3 ^ (n * 0x9e3779b97f4a7c15);  b = 0x13198a2e03707344 + n * 0x9e37...15
//   for each word w: a = rotl(a ^ (w * K1), 29) * K2;  b = rotl(b + w * K3, 31) * K4
//   with K1..K4 = 0x87c37b91114253d5, 0x4cf5ad432745937f, 0xc2b2ae3d27d4eb4f, 0x165667b19e3779f9
//   HashBytes128(b"") is 4334d534d4134f50 6d1f412a11790edf (hi, lo).
//
// Not cryptographic: a determined adversary can find collisions. That is harmless where it is
// used: the exact cache compares the full canonical request bytes before it serves a hit, so a
// collision costs at most a miss (one entry overwrites the other), never a wrong answer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace saola::cache {

struct Hash128 {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const Hash128&) const = default;
};

/// The 128-bit hash of `bytes` (see the algorithm above).
Hash128 HashBytes128(std::string_view bytes);

/// 32 lowercase hex digits: `hi` then `lo`, most significant digit first.
std::string Hash128Hex(const Hash128& hash);

}  // namespace saola::cache
