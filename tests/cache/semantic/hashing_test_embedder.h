// A deterministic test double for the semantic cache's index mechanics (never for judging
// paraphrases): a hashed bag of lower-cased words, L2-normalized. Texts that share words get
// a cosine equal to their shared-word overlap, so tests can place entries at known distances.
#pragma once

#include <cctype>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/semantic/embedder.h"

namespace saola::cache {

class HashingTestEmbedder : public Embedder {
 public:
  explicit HashingTestEmbedder(int dim = 256) : dim_(dim) {}
  int dim() const override { return dim_; }
  absl::StatusOr<std::vector<float>> Embed(std::string_view text) const override {
    std::vector<float> v(dim_, 0.0f);
    std::string word;
    auto flush = [&] {
      if (word.empty()) return;
      uint64_t h = 1469598103934665603ull;
      for (unsigned char c : word) h = (h ^ c) * 1099511628211ull;
      // splitmix64 finalizer: FNV's low bits alone collide for words that differ in one digit.
      h ^= h >> 30;
      h *= 0xbf58476d1ce4e5b9ull;
      h ^= h >> 27;
      h *= 0x94d049bb133111ebull;
      h ^= h >> 31;
      v[h % dim_] += 1.0f;
      word.clear();
    };
    for (unsigned char c : text) {
      if (std::isalnum(c)) {
        word.push_back(static_cast<char>(std::tolower(c)));
      } else {
        flush();
      }
    }
    flush();
    double norm = 0;
    for (float x : v) norm += double{x} * x;
    if (norm == 0) {
      v[0] = 1.0f;
      return v;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (float& x : v) x *= inv;
    return v;
  }

 private:
  int dim_;
};

}  // namespace saola::cache
