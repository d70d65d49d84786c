#include "tests/kernels/random_weight.h"

#include <cstring>
#include <random>

#include "kernels/cpu/quantize.h"

namespace saola::kernels {

using cpu::Fp32ToBf16;
using cpu::Fp32ToFp16;

RandomWeight MakeWeight(DType type, int64_t rows, int64_t cols, bool strided, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.03f);
  std::uniform_real_distribution<float> offset(-0.2f, 0.05f);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  const int64_t lead = strided ? 32 : 0;
  const int64_t full_cols = strided ? cols + 96 : cols;
  RandomWeight t;
  t.w.type = type;
  t.w.rows = rows;
  t.w.cols = cols;
  t.w.row_stride_bytes = RowBytes(type, full_cols);
  t.storage.resize(t.w.row_stride_bytes * rows);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = t.storage.data() + r * t.w.row_stride_bytes;
    for (int64_t i = 0; i < full_cols; ++i) {
      switch (type) {
        case DType::kF32: {
          const float v = normal(rng);
          std::memcpy(row + i * 4, &v, 4);
          break;
        }
        case DType::kF16: {
          const uint16_t v = Fp32ToFp16(normal(rng));
          std::memcpy(row + i * 2, &v, 2);
          break;
        }
        case DType::kBF16: {
          const uint16_t v = Fp32ToBf16(normal(rng));
          std::memcpy(row + i * 2, &v, 2);
          break;
        }
        default:
          break;
      }
    }
    if (type == DType::kQ8_0 || type == DType::kQ4_0 || type == DType::kQ4_1) {
      const int block_bytes = GetDTypeInfo(type).block_bytes;
      for (int64_t b = 0; b < full_cols / 32; ++b) {
        uint8_t* blk = row + b * block_bytes;
        for (int j = 0; j < block_bytes; ++j) blk[j] = static_cast<uint8_t>(byte(rng));
        const uint16_t d = Fp32ToFp16(scale(rng) * (type == DType::kQ8_0 ? 0.1f : 1.0f));
        std::memcpy(blk, &d, 2);
        if (type == DType::kQ4_1) {
          const uint16_t m = Fp32ToFp16(offset(rng));
          std::memcpy(blk + 2, &m, 2);
        }
      }
    }
  }
  t.w.data = t.storage.data() + RowBytes(type, lead);
  return t;
}

}  // namespace saola::kernels
