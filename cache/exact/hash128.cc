#include "cache/exact/hash128.h"

#include <cstring>

namespace saola::cache {
namespace {

constexpr uint64_t kSeedA = 0x243f6a8885a308d3ULL;  // digits of pi: nothing up the sleeve
constexpr uint64_t kSeedB = 0x13198a2e03707344ULL;
constexpr uint64_t kLenMul = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t kK1 = 0x87c37b91114253d5ULL;
constexpr uint64_t kK2 = 0x4cf5ad432745937fULL;
constexpr uint64_t kK3 = 0xc2b2ae3d27d4eb4fULL;
constexpr uint64_t kK4 = 0x165667b19e3779f9ULL;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t SplitMix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint64_t LoadLittleEndian64(const unsigned char* p, size_t n) {
  uint64_t w = 0;
  for (size_t i = 0; i < n; ++i) w |= static_cast<uint64_t>(p[i]) << (8 * i);
  return w;
}

}  // namespace

Hash128 HashBytes128(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  uint64_t a = kSeedA ^ (static_cast<uint64_t>(n) * kLenMul);
  uint64_t b = kSeedB + (static_cast<uint64_t>(n) * kLenMul);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t w = LoadLittleEndian64(p + i, 8);  // the compiler folds this into one load
    a = Rotl(a ^ (w * kK1), 29) * kK2;
    b = Rotl(b + (w * kK3), 31) * kK4;
  }
  if (i < n) {
    const uint64_t w = LoadLittleEndian64(p + i, n - i);
    a = Rotl(a ^ (w * kK1), 29) * kK2;
    b = Rotl(b + (w * kK3), 31) * kK4;
  }
  Hash128 h;
  h.hi = SplitMix64(a ^ Rotl(b, 17));
  h.lo = SplitMix64(b + h.hi);
  return h;
}

std::string Hash128Hex(const Hash128& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kDigits[(hash.hi >> (4 * i)) & 0xf];
    out[31 - i] = kDigits[(hash.lo >> (4 * i)) & 0xf];
  }
  return out;
}

}  // namespace saola::cache
