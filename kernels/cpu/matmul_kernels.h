// Internal interface between the matmul driver (matmul.cc) and its per-ISA inner loops
// (matmul_ref.cc for the portable scalar path, matmul_avx2.cc, matmul_avx512.cc and
// matmul_rows_avx512.cc). For Q8_0 / Q4_0 / Q4_1 and F16 weights every path reproduces llama.cpp's
// arithmetic bit for bit (ggml_exact.h, matmul_ref.cc), whatever the batch size or thread split.
//
// The driver prepares the activations once per call in the form the weight type needs:
//   - integer-dot types (Q8_0, Q4_0, Q4_1): x quantized per 32-block into QuantizedActs, with the
//     exact qs and d of ggml's quantize_row_q8_0/q8_1 (the two agree on those; Q8_1 adds s);
//   - F16 / BF16 weights: x rounded to half / bfloat16 (ggml's vec_dot_type for those);
//   - F32 weights: x as given.
// and then splits the weight rows across threads; a kernel computes every token for a range of
// rows, choosing its own register tiling (GEMV-like for few tokens, rows x tokens tiles for many).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"

namespace saola::kernels::cpu::internal {

/// Quantized activations of n token rows. Row t holds, at t * stride:
///   int8  qs[cols]         (padded to 64 bytes)
///   float d[nb]            fp16(amax / 127), widened back to float
///   float s[nb]            fp16(d_unrounded * sum(qs)), widened (Q8_1's s)
///   int32 sum[nb]          sum(qs) per block
/// with nb = cols / 32; every array starts 64-byte aligned.
struct QuantizedActs {
  int64_t n = 0;
  int64_t cols = 0;
  int64_t nb = 0;
  size_t stride = 0;
  size_t d_offset = 0;
  size_t s_offset = 0;
  size_t sum_offset = 0;
  uint8_t* base = nullptr;

  int8_t* qs(int64_t t) const { return reinterpret_cast<int8_t*>(base + t * stride); }
  float* d(int64_t t) const { return reinterpret_cast<float*>(base + t * stride + d_offset); }
  float* s(int64_t t) const { return reinterpret_cast<float*>(base + t * stride + s_offset); }
  int32_t* sum(int64_t t) const {
    return reinterpret_cast<int32_t*>(base + t * stride + sum_offset);
  }
};

/// Fills in the offsets for n rows of cols (base left null); returns the bytes needed.
size_t LayoutQuantizedActs(int64_t n, int64_t cols, QuantizedActs* acts);

/// Everything a kernel reads besides the weight. Only the members matching the weight type are set.
struct Acts {
  int64_t n = 0;
  const float* f32 = nullptr;     // F32 weights: x itself, row stride ld_f32 floats
  int64_t ld_f32 = 0;
  const uint16_t* h16 = nullptr;  // F16 / BF16 weights: rounded x, row stride ld_h16
  int64_t ld_h16 = 0;
  QuantizedActs q;                // integer-dot types
  const void* packed = nullptr;   // the kernel's own per-call layout (Kernel::pack), if any
};

/// Computes y[t * ldy + r] = dot(row r of w, activation t) for r in [r0, r1), t in [0, a.n).
using MatMulKernel = void (*)(const Weight& w, const Acts& a, int64_t r0, int64_t r1, float* y,
                              int64_t ldy);

/// A kernel and, optionally, the activation layout it wants: the driver allocates
/// packed_bytes(a) and fills it once per call, before any row work, by calling pack over disjoint
/// token ranges in parallel (pack of token t may read only token t of `a`). Every thread's rows then
/// share it through Acts::packed.
struct Kernel {
  MatMulKernel run = nullptr;
  size_t (*packed_bytes)(const Acts& a, int64_t cols) = nullptr;
  void (*pack)(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) = nullptr;

  explicit operator bool() const { return run != nullptr; }
};

/// Quantizes x rows [t0, t1) (row stride ldx floats) into acts.
using QuantizeActsFn = void (*)(const float* x, int64_t ldx, int64_t t0, int64_t t1,
                                const QuantizedActs& acts);

/// One instruction set's inner loops. A null kernel means "not supported on this path"; the
/// driver then falls back to a narrower path.
struct IsaKernels {
  Kernel f32;
  Kernel f16;
  Kernel bf16;
  Kernel q8_0;
  Kernel q4_0;
  Kernel q4_1;
  QuantizeActsFn quantize = nullptr;
  // x -> half / bfloat16, round to nearest even.
  void (*to_f16)(const float* x, uint16_t* out, int64_t count) = nullptr;
  void (*to_bf16)(const float* x, uint16_t* out, int64_t count) = nullptr;
  // Row dequantization for Embed (types DequantizeSupports accepts); null: use the scalar one.
  void (*dequantize_row)(DType type, const void* row, float* out, int64_t cols) = nullptr;

  Kernel For(DType type) const {
    switch (type) {
      case DType::kF32: return f32;
      case DType::kF16: return f16;
      case DType::kBF16: return bf16;
      case DType::kQ8_0: return q8_0;
      case DType::kQ4_0: return q4_0;
      case DType::kQ4_1: return q4_1;
      default: return Kernel{};
    }
  }
};

/// Packing for the vector float kernels: F16 / BF16 activations (already rounded to the weight's
/// type) widened back to float once per call, [token][cols]. Defined in matmul.cc, compiled for
/// the baseline ISA, so the AVX2 and AVX-512 kernel files share one copy.
size_t WidenedBytes(const Acts& a, int64_t cols);
void PackWidenedF16(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed);
void PackWidenedBf16(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed);

const IsaKernels& ScalarKernels();
const IsaKernels& Avx2Kernels();    // defined in matmul_avx2.cc; call only on AVX2+FMA+F16C CPUs
const IsaKernels& Avx512Kernels();  // defined in matmul_avx512.cc; call only on kAvx512 CPUs

/// AVX-512 VNNI kernels for Q8_0 / Q4_0 / Q4_1 (matmul_rows_avx512.cc). Call only on kAvx512
/// CPUs.
Kernel RowsAvx512Kernel(DType type);

}  // namespace saola::kernels::cpu::internal
