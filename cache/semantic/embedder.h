// A sentence embedder: text in, a unit-length vector out. The semantic cache compares prompts by
// the inner product of these vectors (= cosine similarity, as they are normalized).
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace saola::cache {

class Embedder {
 public:
  virtual ~Embedder() = default;
  /// Length of every vector Embed returns.
  virtual int dim() const = 0;
  /// The L2-normalized embedding of `text` (any bytes; invalid UTF-8 is tolerated). Thread-safe:
  /// the router calls it from many request threads at once.
  virtual absl::StatusOr<std::vector<float>> Embed(std::string_view text) const = 0;
};

}  // namespace saola::cache
