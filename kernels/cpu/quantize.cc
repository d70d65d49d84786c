#include "kernels/cpu/quantize.h"

#include <cmath>
#include <cstring>

namespace saola::kernels::cpu {

int QuantizeBlockQ8(const float* x, int8_t* q, float* d_out) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    // nearbyint rounds half to even in the default rounding mode, like vroundps(imm 0).
    const int v = static_cast<int>(std::nearbyint(x[j] * id));
    q[j] = static_cast<int8_t>(v);
    sum += v;
  }
  *d_out = d;
  return sum;
}

void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k) {
  for (int64_t b = 0; b < k / 32; ++b) {
    float d;
    QuantizeBlockQ8(x + b * 32, y[b].qs, &d);
    y[b].d = Fp32ToFp16(d);
  }
}

void QuantizeRowQ8_1(const float* x, BlockQ8_1* y, int64_t k) {
  for (int64_t b = 0; b < k / 32; ++b) {
    float d;
    const int sum = QuantizeBlockQ8(x + b * 32, y[b].qs, &d);
    y[b].d = Fp32ToFp16(d);
    y[b].s = Fp32ToFp16(d * static_cast<float>(sum));
  }
}

bool DequantizeSupports(DType type) {
  switch (type) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ8_1:
      return true;
    default:
      return false;
  }
}

void DequantizeRow(DType type, const void* row, float* out, int64_t cols) {
  switch (type) {
    case DType::kF32:
      std::memcpy(out, row, static_cast<size_t>(cols) * sizeof(float));
      return;
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(row);
      for (int64_t i = 0; i < cols; ++i) out[i] = Fp16ToFp32(h[i]);
      return;
    }
    case DType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(row);
      for (int64_t i = 0; i < cols; ++i) out[i] = Bf16ToFp32(h[i]);
      return;
    }
    case DType::kQ8_0: {
      const auto* blk = static_cast<const BlockQ8_0*>(row);
      for (int64_t b = 0; b < cols / 32; ++b) {
        const float d = Fp16ToFp32(blk[b].d);
        for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * static_cast<float>(blk[b].qs[j]);
      }
      return;
    }
    case DType::kQ8_1: {
      const auto* blk = static_cast<const BlockQ8_1*>(row);
      for (int64_t b = 0; b < cols / 32; ++b) {
        const float d = Fp16ToFp32(blk[b].d);
        for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * static_cast<float>(blk[b].qs[j]);
      }
      return;
    }
    case DType::kQ4_0: {
      const auto* blk = static_cast<const BlockQ4_0*>(row);
      for (int64_t b = 0; b < cols / 32; ++b) {
        const float d = Fp16ToFp32(blk[b].d);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * static_cast<float>((blk[b].qs[j] & 0x0f) - 8);
          out[b * 32 + j + 16] = d * static_cast<float>((blk[b].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    case DType::kQ4_1: {
      const auto* blk = static_cast<const BlockQ4_1*>(row);
      for (int64_t b = 0; b < cols / 32; ++b) {
        const float d = Fp16ToFp32(blk[b].d);
        const float m = Fp16ToFp32(blk[b].m);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = static_cast<float>(blk[b].qs[j] & 0x0f) * d + m;
          out[b * 32 + j + 16] = static_cast<float>(blk[b].qs[j] >> 4) * d + m;
        }
      }
      return;
    }
    default:
      return;
  }
}

}  // namespace saola::kernels::cpu
