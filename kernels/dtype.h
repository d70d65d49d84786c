// Element and block types of tensors, as GGUF/ggml store them.
//
// Quantized types pack `block_elems` values into `block_bytes` bytes; a row of `cols` elements
// is cols / block_elems consecutive blocks. The layouts match ggml's so GGUF tensors are used
// in place (zero copy):
//   Q8_0: { f16 d; int8 qs[32]; }                 x = d * q
//   Q4_0: { f16 d; uint8 qs[16]; }                x = d * (nibble - 8); low nibbles are
//                                                 elements 0..15, high nibbles 16..31
//   Q4_1: { f16 d; f16 m; uint8 qs[16]; }         x = d * nibble + m; same nibble order
//   Q8_1: { f16 d; f16 s; int8 qs[32]; }          activations only; s = d * sum(qs)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace saola::kernels {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kQ8_0,
  kQ4_0,
  kQ4_1,
  kQ8_1,
  kQ4_K,
  kQ6_K,
};

struct DTypeInfo {
  std::string_view name;
  int block_elems;  // elements per block (1 for plain floats)
  int block_bytes;  // bytes per block
};

/// Size and naming facts about `type`.
constexpr DTypeInfo GetDTypeInfo(DType type) {
  switch (type) {
    case DType::kF32: return {"F32", 1, 4};
    case DType::kF16: return {"F16", 1, 2};
    case DType::kBF16: return {"BF16", 1, 2};
    case DType::kQ8_0: return {"Q8_0", 32, 34};
    case DType::kQ4_0: return {"Q4_0", 32, 18};
    case DType::kQ4_1: return {"Q4_1", 32, 20};
    case DType::kQ8_1: return {"Q8_1", 32, 36};
    case DType::kQ4_K: return {"Q4_K", 256, 144};
    case DType::kQ6_K: return {"Q6_K", 256, 210};
  }
  return {"?", 1, 1};
}

/// Bytes of one row of `cols` elements. Precondition: cols is a multiple of the block size.
constexpr size_t RowBytes(DType type, int64_t cols) {
  const DTypeInfo info = GetDTypeInfo(type);
  return static_cast<size_t>(cols / info.block_elems) * static_cast<size_t>(info.block_bytes);
}

}  // namespace saola::kernels
