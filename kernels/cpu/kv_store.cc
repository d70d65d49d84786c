// StoreKv: the step's new K and V rows (float) into their paged cache slots as IEEE halves, and
// the portable half <-> float conversions the other CPU ops and the tests share.
//
// A token's K (and V) for all kv heads is one contiguous run of num_kv_heads * head_dim halves at
// slot * num_kv_heads * head_dim (kernels/backend.h), so each token is one row conversion. F16C
// (vcvtps2ph, round to nearest even) converts 8 floats per instruction; the portable conversion
// rounds identically, so both paths write the same bits.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"

namespace saola::kernels::cpu {
namespace {

// Conversions per parallel region below which the caller's thread does it all (decode: one token).
constexpr int64_t kMinParallelElems = 1 << 16;

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

void ConvertRowScalar(const float* src, uint16_t* dst, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dst[i] = F32ToF16(src[i]);
}

__attribute__((target("avx2,f16c"))) void ConvertRowF16c(const float* src, uint16_t* dst,
                                                          int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    const __m128i b = _mm256_cvtps_ph(_mm256_loadu_ps(src + i + 8), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), a);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 8), b);
  }
  for (; i + 8 <= count; i += 8) {
    const __m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), a);
  }
  for (; i < count; ++i) dst[i] = F32ToF16(src[i]);
}

using ConvertRowFn = void (*)(const float*, uint16_t*, int64_t);

void StoreRows(ConvertRowFn convert, const float* k, const float* v, const int32_t* slots,
               int64_t begin, int64_t end, const KvLayer& kv) {
  const int64_t row = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t dst = static_cast<int64_t>(slots[i]) * row;
    convert(k + i * row, kv.k + dst, row);
    convert(v + i * row, kv.v + dst, row);
  }
}

}  // namespace

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    const float mag = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return BitsFloat(sign | FloatBits(mag));
  }
  if (exp == 31) return BitsFloat(sign | 0x7f800000u | (mant << 13));
  return BitsFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t F32ToF16(float f) {
  const uint32_t x = FloatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {
    // Inf stays inf; NaN keeps its top payload bits and becomes quiet, as vcvtps2ph does.
    const uint32_t nan = abs > 0x7f800000u ? (0x200u | ((abs >> 13) & 0x3ffu)) : 0u;
    return static_cast<uint16_t>(sign | 0x7c00u | nan);
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (abs < 0x38800000u) {
    // Below 2^-14 the result is subnormal: adding 0.5f puts the half's mantissa in the low bits of
    // the float's, and the FPU's own round-to-nearest-even does the rounding.
    const float shifted = BitsFloat(abs) + 0.5f;
    return static_cast<uint16_t>(sign | (FloatBits(shifted) - 0x3f000000u));
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even.
  const uint32_t odd = (abs >> 13) & 1;
  abs += 0xc8000fffu + odd;
  return static_cast<uint16_t>(sign | (abs >> 13));
}

void StoreKvReference(const float* k, const float* v, const int32_t* slots, int64_t n,
                      const KvLayer& kv) {
  StoreRows(ConvertRowScalar, k, v, slots, 0, n, kv);
}

void StoreKv(ThreadPool& pool, const float* k, const float* v, const int32_t* slots, int64_t n,
             const KvLayer& kv) {
  const ConvertRowFn convert = ActiveIsa() >= Isa::kAvx2 ? ConvertRowF16c : ConvertRowScalar;
  const int64_t row = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
  if (n * row * 2 < kMinParallelElems) {
    StoreRows(convert, k, v, slots, 0, n, kv);
    return;
  }
  ParallelFor(pool, n, 1, [&](int64_t begin, int64_t end) {
    StoreRows(convert, k, v, slots, begin, end, kv);
  });
}

}  // namespace saola::kernels::cpu
