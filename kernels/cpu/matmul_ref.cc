// The portable scalar path of the matmul kernels, and MatMulReference, the double-precision
// reference the tests hold every path to.
//
// Both compute ggml's formula for each (row, token): with activations quantized per 32-block
// (qs, d; s = d * sum(qs) for Q8_1) and weight blocks (d_w, q_w[, m_w]) -- the scalar path in the
// canonical float order of matmul_rows_avx512.h, the reference in double --
//   Q8_0, Q4_0:  sum_b d_w[b] * d_x[b] * sum_j q_w[b][j] * qs[b][j]          (Q4_0: q_w = nibble - 8)
//   Q4_1:        sum_b d_w[b] * d_x[b] * sum_j nibble[b][j] * qs[b][j] + m_w[b] * s[b]
// and for float weights the plain dot with x rounded to the weight's type (F16/BF16) first.
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {
namespace internal {
namespace {

const uint8_t* RowPtr(const Weight& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_stride_bytes;
}

// Integer dot of one weight block with 32 activation quants.
inline int DotBlock(const BlockQ8_0& b, const int8_t* qs) {
  int sum = 0;
  for (int j = 0; j < 32; ++j) sum += b.qs[j] * qs[j];
  return sum;
}
inline int DotBlock(const BlockQ4_0& b, const int8_t* qs) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) {
    sum += ((b.qs[j] & 0x0f) - 8) * qs[j] + ((b.qs[j] >> 4) - 8) * qs[j + 16];
  }
  return sum;
}
inline int DotBlock(const BlockQ4_1& b, const int8_t* qs) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) sum += (b.qs[j] & 0x0f) * qs[j] + (b.qs[j] >> 4) * qs[j + 16];
  return sum;
}

template <typename Block>
void ScalarQuantKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                       int64_t ldy) {
  const QuantizedActs& q = a.q;
  for (int64_t r = r0; r < r1; ++r) {
    const auto* blocks = reinterpret_cast<const Block*>(RowPtr(w, r));
    for (int64_t t = 0; t < a.n; ++t) {
      const int8_t* qs = q.qs(t);
      const float* dx = q.d(t);
      // The canonical order of matmul_rows_avx512.h, so this path is bit-identical to the
      // AVX-512 and AMX ones.
      float acc = 0.0f;
      for (int64_t b = 0; b < q.nb; ++b) {
        const float d = Fp16ToFp32(blocks[b].d) * dx[b];
        acc = std::fma(static_cast<float>(DotBlock(blocks[b], qs + b * 32)), d, acc);
        if constexpr (std::is_same_v<Block, BlockQ4_1>) {
          acc = std::fma(Fp16ToFp32(blocks[b].m), q.s(t)[b], acc);
        }
      }
      y[t * ldy + r] = acc;
    }
  }
}

void ScalarF32Kernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                     int64_t ldy) {
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = reinterpret_cast<const float*>(RowPtr(w, r));
    for (int64_t t = 0; t < a.n; ++t) {
      const float* x = a.f32 + t * a.ld_f32;
      float acc = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) acc += wr[k] * x[k];
      y[t * ldy + r] = acc;
    }
  }
}

template <float (*kToFloat)(uint16_t)>
void ScalarHalfKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                      int64_t ldy) {
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = reinterpret_cast<const uint16_t*>(RowPtr(w, r));
    for (int64_t t = 0; t < a.n; ++t) {
      const uint16_t* x = a.h16 + t * a.ld_h16;
      float acc = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) acc += kToFloat(wr[k]) * kToFloat(x[k]);
      y[t * ldy + r] = acc;
    }
  }
}

void ScalarQuantize(const float* x, int64_t ldx, int64_t t0, int64_t t1,
                    const QuantizedActs& acts) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* xr = x + t * ldx;
    for (int64_t b = 0; b < acts.nb; ++b) {
      float d;
      const int sum = QuantizeBlockQ8(xr + b * 32, acts.qs(t) + b * 32, &d);
      acts.d(t)[b] = Fp16ToFp32(Fp32ToFp16(d));
      acts.s(t)[b] = Fp16ToFp32(Fp32ToFp16(d * static_cast<float>(sum)));
      acts.sum(t)[b] = sum;
    }
    // Zero the padding after the last block (vector kernels may read it).
    std::memset(acts.qs(t) + acts.cols, 0, acts.d_offset - static_cast<size_t>(acts.cols));
  }
}

void ScalarToF16(const float* x, uint16_t* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = Fp32ToFp16(x[i]);
}

void ScalarToBf16(const float* x, uint16_t* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = Fp32ToBf16(x[i]);
}

}  // namespace

const IsaKernels& ScalarKernels() {
  static const IsaKernels kernels = [] {
    IsaKernels k;
    k.f32 = Kernel{ScalarF32Kernel};
    k.f16 = Kernel{ScalarHalfKernel<Fp16ToFp32>};
    k.bf16 = Kernel{ScalarHalfKernel<Bf16ToFp32>};
    k.q8_0 = Kernel{ScalarQuantKernel<BlockQ8_0>};
    k.q4_0 = Kernel{ScalarQuantKernel<BlockQ4_0>};
    k.q4_1 = Kernel{ScalarQuantKernel<BlockQ4_1>};
    k.quantize = ScalarQuantize;
    k.to_f16 = ScalarToF16;
    k.to_bf16 = ScalarToBf16;
    k.dequantize_row = DequantizeRow;
    return k;
  }();
  return kernels;
}

}  // namespace internal

void MatMulReference(const Weight& w, const float* x, int64_t n, float* y) {
  const int64_t nb = w.cols / 32;
  std::vector<BlockQ8_1> xq(static_cast<size_t>(nb));
  std::vector<float> wrow(static_cast<size_t>(w.cols));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * w.cols;
    const bool quantized =
        w.type == DType::kQ8_0 || w.type == DType::kQ4_0 || w.type == DType::kQ4_1;
    if (quantized) QuantizeRowQ8_1(xt, xq.data(), w.cols);
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_stride_bytes;
      double acc = 0.0;
      switch (w.type) {
        case DType::kF32:
        case DType::kF16:
        case DType::kBF16:
          DequantizeRow(w.type, row, wrow.data(), w.cols);
          for (int64_t k = 0; k < w.cols; ++k) {
            double xv = xt[k];
            if (w.type == DType::kF16) xv = Fp16ToFp32(Fp32ToFp16(xt[k]));
            if (w.type == DType::kBF16) xv = Bf16ToFp32(Fp32ToBf16(xt[k]));
            acc += static_cast<double>(wrow[k]) * xv;
          }
          break;
        case DType::kQ8_0:
        case DType::kQ4_0:
        case DType::kQ4_1:
          for (int64_t b = 0; b < nb; ++b) {
            const double dx = Fp16ToFp32(xq[b].d);
            int isum = 0;
            double dw = 0.0, mw = 0.0;
            if (w.type == DType::kQ8_0) {
              const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
              dw = Fp16ToFp32(blk.d);
              for (int j = 0; j < 32; ++j) isum += blk.qs[j] * xq[b].qs[j];
            } else {
              const uint8_t* qs;
              int offset;
              if (w.type == DType::kQ4_0) {
                const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
                dw = Fp16ToFp32(blk.d);
                qs = blk.qs;
                offset = 8;
              } else {
                const auto& blk = reinterpret_cast<const BlockQ4_1*>(row)[b];
                dw = Fp16ToFp32(blk.d);
                mw = Fp16ToFp32(blk.m);
                qs = blk.qs;
                offset = 0;
              }
              for (int j = 0; j < 16; ++j) {
                isum += ((qs[j] & 0x0f) - offset) * xq[b].qs[j];
                isum += ((qs[j] >> 4) - offset) * xq[b].qs[j + 16];
              }
            }
            acc += dw * dx * isum + mw * Fp16ToFp32(xq[b].s);
          }
          break;
        default:
          break;
      }
      y[t * w.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace saola::kernels::cpu
