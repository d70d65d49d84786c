// Scalar conversions and (de)quantization of rows, bit-exact with ggml's CPU backend on x86.
//
// Activations are quantized per 32-element block as llama.cpp's x86 build does it
// (quantize_row_q8_0 / quantize_row_q8_1 in ggml-cpu/arch/x86/quants.c):
//   amax = max |x|,  d = amax / 127,  id = amax ? 127 / amax : 0,
//   q = round-half-to-even(x * id)   (vroundps with _MM_ROUND_NEAREST, not roundf),
//   stored d = fp16(d);  Q8_1 also stores s = fp16(d * sum(q)) with the unrounded d.
// Note the scalar ggml reference (quantize_row_q8_0_ref) differs in ties (roundf) and in
// id = 1/d; the SIMD version is what llama.cpp runs on any AVX machine, so that is what we match.
//
// Half floats convert with round-to-nearest-even (as F16C's vcvtps2ph with imm 0 and ggml's
// GGML_FP32_TO_FP16); bfloat16 as ggml's GGML_FP32_TO_BF16 (round-to-nearest-even, NaN kept quiet).
#pragma once

#include <bit>
#include <cstdint>

#include "kernels/dtype.h"

namespace saola::kernels::cpu {

// ggml's block layouts (see kernels/dtype.h).
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 &&
              sizeof(BlockQ8_1) == 36);

/// IEEE half -> float (exact).
inline float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  uint32_t bits;
  if (em >= 0x7c00u) {
    bits = sign | 0x7f800000u | ((em & 0x3ffu) << 13);  // inf / nan
  } else if (em >= 0x0400u) {
    bits = sign | ((em << 13) + (112u << 23));  // normal: rebias exponent 15 -> 127
  } else {
    // zero or subnormal: em * 2^-24 is exact in float
    bits = sign | std::bit_cast<uint32_t>(static_cast<float>(em) * 5.9604644775390625e-8f);
  }
  return std::bit_cast<float>(bits);
}

/// float -> IEEE half, round to nearest even (overflow to inf, NaN stays NaN).
inline uint16_t Fp32ToFp16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((x >> 13) & 0x3ffu);
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (x >= 0x38800000u) {                        // >= 2^-14: normal half
    x += 0xfffu + ((x >> 13) & 1u);              // round to nearest even at bit 13
    return sign | static_cast<uint16_t>((x - (112u << 23)) >> 13);
  }
  // Subnormal half or zero: adding 0.5f (whose ulp is 2^-24) rounds to a multiple of 2^-24.
  const float sum = std::bit_cast<float>(x) + 0.5f;
  return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(sum) - 0x3f000000u);
}

inline float Bf16ToFp32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t Fp32ToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 64u);  // quiet NaN
  return static_cast<uint16_t>((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

/// One 32-element block as ggml's x86 quantize_row_q8_{0,1} computes it: writes q[32], sets
/// *d to the unrounded amax / 127 and returns sum(q).
int QuantizeBlockQ8(const float* x, int8_t* q, float* d);

/// ggml's quantize_row_q8_0 (x86 SIMD semantics, see the file comment). k % 32 == 0.
void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k);

/// ggml's quantize_row_q8_1 (x86 SIMD semantics). k % 32 == 0.
void QuantizeRowQ8_1(const float* x, BlockQ8_1* y, int64_t k);

/// True if DequantizeRow handles `type`.
bool DequantizeSupports(DType type);

/// out[0, cols) = row dequantized as ggml does (x = d * q, d * q + m, ...). `row` points at the
/// first block (or element) of the row. Precondition: DequantizeSupports(type), cols a multiple of
/// the block size.
void DequantizeRow(DType type, const void* row, float* out, int64_t cols);

}  // namespace saola::kernels::cpu
