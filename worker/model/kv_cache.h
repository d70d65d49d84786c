// Storage of the paged KV cache: for every layer, `num_blocks` blocks of `block_size` token slots
// holding this rank's KV heads as half floats (kernels::KvLayer layout). Which sequence owns which
// block is not decided here: the engine's block pool hands out block ids and builds block tables.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace saola::model {

class KvCacheStorage {
 public:
  struct Shape {
    int32_t num_layers = 0;
    int32_t num_blocks = 0;
    int32_t block_size = 16;
    int32_t num_kv_heads = 0;
    int32_t head_dim = 0;
  };

  /// Bytes one block takes across all layers (keys and values).
  static size_t BytesPerBlock(const Shape& shape);

  /// Allocates the cache from `backend`; INVALID_ARGUMENT for non-positive sizes.
  static absl::StatusOr<std::unique_ptr<KvCacheStorage>> Create(kernels::Backend& backend,
                                                                const Shape& shape);

  const Shape& shape() const { return shape_; }
  int32_t num_blocks() const { return shape_.num_blocks; }
  int32_t block_size() const { return shape_.block_size; }
  kernels::KvLayer layer(int32_t index) const { return layers_[index]; }

 private:
  KvCacheStorage() = default;
  Shape shape_;
  kernels::Buffer buffer_;
  std::vector<kernels::KvLayer> layers_;
};

}  // namespace saola::model
