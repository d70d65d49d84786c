// Fresh seeds for requests that give none: distinct per request and unpredictable across
// restarts, so two unseeded requests never share a random stream.
#pragma once

#include <atomic>
#include <cstdint>
#include <random>

namespace saola::server {

class SeedSource {
 public:
  SeedSource() : base_(std::random_device{}() * 0x9e3779b97f4a7c15ull ^ std::random_device{}()) {}
  uint64_t Next() {
    uint64_t x = base_ + counter_.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }

 private:
  uint64_t base_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace saola::server
