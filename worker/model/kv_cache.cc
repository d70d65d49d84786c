#include "worker/model/kv_cache.h"

#include "absl/strings/str_format.h"

namespace saola::model {

size_t KvCacheStorage::BytesPerBlock(const Shape& s) {
  // Keys and values, half floats.
  return size_t{2} * 2 * s.num_layers * s.block_size * s.num_kv_heads * s.head_dim;
}

absl::StatusOr<std::unique_ptr<KvCacheStorage>> KvCacheStorage::Create(kernels::Backend& backend,
                                                                       const Shape& shape) {
  if (shape.num_layers <= 0 || shape.num_blocks <= 0 || shape.block_size <= 0 ||
      shape.num_kv_heads <= 0 || shape.head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kv cache: bad shape (layers %d, blocks %d, block size %d, kv heads %d, head dim %d)",
        shape.num_layers, shape.num_blocks, shape.block_size, shape.num_kv_heads, shape.head_dim));
  }
  auto cache = std::unique_ptr<KvCacheStorage>(new KvCacheStorage());
  cache->shape_ = shape;
  const size_t per_layer_elems =
      size_t{1} * shape.num_blocks * shape.block_size * shape.num_kv_heads * shape.head_dim;
  cache->buffer_ = backend.Allocate(BytesPerBlock(shape) * shape.num_blocks);
  if (cache->buffer_ == nullptr) {
    return absl::ResourceExhaustedError("kv cache: allocation failed");
  }
  auto* base = static_cast<uint16_t*>(cache->buffer_.get());
  for (int32_t l = 0; l < shape.num_layers; ++l) {
    kernels::KvLayer layer;
    layer.k = base + (2 * l) * per_layer_elems;
    layer.v = base + (2 * l + 1) * per_layer_elems;
    layer.num_blocks = shape.num_blocks;
    layer.block_size = shape.block_size;
    layer.num_kv_heads = shape.num_kv_heads;
    layer.head_dim = shape.head_dim;
    cache->layers_.push_back(layer);
  }
  return cache;
}

}  // namespace saola::model
