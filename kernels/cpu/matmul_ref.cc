// The portable scalar path of the matmul kernels, and MatMulReference, the reference the tests
// hold every path to. Both follow llama.cpp's CPU arithmetic bit for bit (ggml-cpu/arch/x86/
// quants.c as compiled with AVX2/AVX-512 VNNI and GCC's FMA contraction), so that Saola's logits
// equal llama.cpp's; the fast paths must follow the same order.
//
// Activations are quantized per 32-block as quantize_row_q8_{0,1} does (quantize.h): qs, d (the
// float value of the stored fp16) and, for Q8_1, s (the float of fp16(d_unrounded * sum(qs))).
// Per (weight row, token), with 8 float lanes acc[0..7] = 0 and, for Q4_1, a float summs = 0, for
// each block b in order:
//   lane l (0..7) covers block elements 4l..4l+3 (for Q4_1 element e's weight is nibble e of the
//   block: e < 16: qs[e] & 15, else qs[e - 16] >> 4; Q8_0: qs[e]); isum_l = the exact int32 sum
//   of the 4 products w_e * x_e;
//   Q4_1:  summs = fmaf(m_w[b], s_x[b], summs);   d = d_w[b] * d_x[b] (float multiply);
//          acc[l] = fmaf(d, (float)isum_l, acc[l]) for each l
//   Q8_0:  d = d_w[b] * d_x[b];  acc[l] = fmaf(d, (float)isum_l, acc[l])
// then hsum8(acc) = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)), i.e.
//   a_i = acc[i + 4] + acc[i] (i < 4), b0 = a0 + a2, b1 = a1 + a3, hsum = b0 + b1,
// and the result is hsum8(acc) + summs for Q4_1, hsum8(acc) for Q8_0 (every + a float add).
// This is ggml_vec_dot_q4_1_q8_1 / ggml_vec_dot_q8_0_q8_0 (one 8-lane __m256 accumulator, one
// vfmadd231ps per block, hsum_float_8); llama.cpp uses them for every matmul of a Q4_1 model with
// one output row and for Q4_1 with any number of rows (neither llamafile's sgemm nor the repack
// or tiled paths handle Q4_1 on x86). Q8_0 with >= 2 token rows goes through llamafile's
// tinyBLAS_Q0_AVX in llama.cpp (another order, not reproduced here; the fixtures only take one
// logits row per step). Q4_0 follows the Q8_0 order with q_w = nibble - 8.
// Float weights: F16 as ggml_vec_dot_f16 on AVX-512 (x rounded to f16; 4 accumulators x 16
// lanes over steps of 64, then lane tree, leftovers added in double); F32 and BF16 plain dots.
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/ggml_exact.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {
namespace internal {
namespace {

const uint8_t* RowPtr(const Weight& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_stride_bytes;
}

// Weight element e (0..31) of a block, as the integer ggml multiplies with activation e.
inline int WeightQuant(const BlockQ8_0& b, int e) { return b.qs[e]; }
inline int WeightQuant(const BlockQ4_0& b, int e) {
  return (e < 16 ? (b.qs[e] & 0x0f) : (b.qs[e - 16] >> 4)) - 8;
}
inline int WeightQuant(const BlockQ4_1& b, int e) {
  return e < 16 ? (b.qs[e] & 0x0f) : (b.qs[e - 16] >> 4);
}

// hsum_float_8 of ggml's x86 quants.c.
inline float Hsum8(const float* acc) {
  const float a0 = acc[4] + acc[0], a1 = acc[5] + acc[1], a2 = acc[6] + acc[2],
              a3 = acc[7] + acc[3];
  return (a0 + a2) + (a1 + a3);
}

}  // namespace

template <typename Block>
float GgmlQuantDot(const Block* blocks, const int8_t* qs, const float* dx, const float* sx,
                   int64_t nb) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float summs = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const Block& blk = blocks[b];
    const int8_t* x = qs + b * 32;
    if constexpr (std::is_same_v<Block, BlockQ4_1>) {
      summs = std::fma(Fp16ToFp32(blk.m), sx[b], summs);
    }
    const float d = Fp16ToFp32(blk.d) * dx[b];
    for (int l = 0; l < 8; ++l) {
      int isum = 0;
      for (int e = 4 * l; e < 4 * l + 4; ++e) isum += WeightQuant(blk, e) * x[e];
      acc[l] = std::fma(d, static_cast<float>(isum), acc[l]);
    }
  }
  const float h = Hsum8(acc);
  if constexpr (std::is_same_v<Block, BlockQ4_1>) return h + summs;
  return h;
}
template float GgmlQuantDot<BlockQ8_0>(const BlockQ8_0*, const int8_t*, const float*,
                                       const float*, int64_t);
template float GgmlQuantDot<BlockQ4_0>(const BlockQ4_0*, const int8_t*, const float*,
                                       const float*, int64_t);
template float GgmlQuantDot<BlockQ4_1>(const BlockQ4_1*, const int8_t*, const float*,
                                       const float*, int64_t);

float GgmlDotF16(const uint16_t* x, const uint16_t* y, int64_t n) {
  float sum[4][16] = {};
  const int64_t np = n & ~int64_t{63};
  for (int64_t i = 0; i < np; i += 64) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 16; ++l) {
        const int64_t k = i + 16 * j + l;
        sum[j][l] = std::fma(Fp16ToFp32(x[k]), Fp16ToFp32(y[k]), sum[j][l]);
      }
    }
  }
  for (int l = 0; l < 16; ++l) {
    sum[0][l] += sum[2][l];
    sum[1][l] += sum[3][l];
  }
  for (int l = 0; l < 16; ++l) sum[0][l] += sum[1][l];
  double sumf = Reduce16(sum[0]);
  for (int64_t i = np; i < n; ++i) {
    sumf += static_cast<double>(Fp16ToFp32(x[i]) * Fp16ToFp32(y[i]));
  }
  return static_cast<float>(sumf);
}

namespace {

template <typename Block>
void ScalarQuantKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                       int64_t ldy) {
  const QuantizedActs& q = a.q;
  for (int64_t r = r0; r < r1; ++r) {
    const auto* blocks = reinterpret_cast<const Block*>(RowPtr(w, r));
    for (int64_t t = 0; t < a.n; ++t) {
      y[t * ldy + r] = GgmlQuantDot(blocks, q.qs(t), q.d(t), q.s(t), q.nb);
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

// kGgmlF16: F16 weights follow ggml_vec_dot_f16's order; BF16 is a plain dot. (A flag rather
// than comparing function pointers, which is not a constant expression under the sanitizers.)
template <float (*kToFloat)(uint16_t), bool kGgmlF16>
void ScalarHalfKernel(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                      int64_t ldy) {
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = reinterpret_cast<const uint16_t*>(RowPtr(w, r));
    for (int64_t t = 0; t < a.n; ++t) {
      const uint16_t* x = a.h16 + t * a.ld_h16;
      if constexpr (kGgmlF16) {
        y[t * ldy + r] = GgmlDotF16(wr, x, w.cols);
        continue;
      }
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
    k.f16 = Kernel{ScalarHalfKernel<Fp16ToFp32, true>};
    k.bf16 = Kernel{ScalarHalfKernel<Bf16ToFp32, false>};
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
  std::vector<int8_t> qs(static_cast<size_t>(nb) * 32);
  std::vector<float> dx(static_cast<size_t>(nb)), sx(static_cast<size_t>(nb));
  std::vector<float> wrow(static_cast<size_t>(w.cols));
  std::vector<uint16_t> xh(static_cast<size_t>(w.cols));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * w.cols;
    const bool quantized =
        w.type == DType::kQ8_0 || w.type == DType::kQ4_0 || w.type == DType::kQ4_1;
    if (quantized) {
      QuantizeRowQ8_1(xt, xq.data(), w.cols);
      for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(qs.data() + b * 32, xq[b].qs, 32);
        dx[b] = Fp16ToFp32(xq[b].d);
        sx[b] = Fp16ToFp32(xq[b].s);
      }
    }
    if (w.type == DType::kF16) {
      for (int64_t k = 0; k < w.cols; ++k) xh[k] = Fp32ToFp16(xt[k]);
    }
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_stride_bytes;
      float out = 0.0f;
      switch (w.type) {
        case DType::kF16:
          out = internal::GgmlDotF16(reinterpret_cast<const uint16_t*>(row), xh.data(), w.cols);
          break;
        case DType::kF32:
        case DType::kBF16: {
          DequantizeRow(w.type, row, wrow.data(), w.cols);
          double acc = 0.0;
          for (int64_t k = 0; k < w.cols; ++k) {
            double xv = xt[k];
            if (w.type == DType::kBF16) xv = Bf16ToFp32(Fp32ToBf16(xt[k]));
            acc += static_cast<double>(wrow[k]) * xv;
          }
          out = static_cast<float>(acc);
          break;
        }
        case DType::kQ8_0:
          out = internal::GgmlQuantDot(reinterpret_cast<const BlockQ8_0*>(row), qs.data(),
                                       dx.data(), sx.data(), nb);
          break;
        case DType::kQ4_0:
          out = internal::GgmlQuantDot(reinterpret_cast<const BlockQ4_0*>(row), qs.data(),
                                       dx.data(), sx.data(), nb);
          break;
        case DType::kQ4_1:
          out = internal::GgmlQuantDot(reinterpret_cast<const BlockQ4_1*>(row), qs.data(),
                                       dx.data(), sx.data(), nb);
          break;
        default:
          break;
      }
      y[t * w.rows + r] = out;
    }
  }
}

}  // namespace saola::kernels::cpu
