// StoreKv: the step's new K and V rows (float) into their paged cache slots as IEEE halves.
//
// A token's K (and V) for all kv heads is one contiguous run of num_kv_heads * head_dim halves at
// slot * num_kv_heads * head_dim (kernels/backend.h), so each token is one row conversion. F16C
// (vcvtps2ph, round to nearest even) converts 8 floats per instruction; the portable conversion
// (Fp32ToFp16, kernels/cpu/quantize.h) rounds identically, so both paths write the same bits.
#include <immintrin.h>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {
namespace {

// Conversions per parallel region below which the caller's thread does it all (decode: one token).
constexpr int64_t kMinParallelElems = 1 << 16;

void ConvertRowScalar(const float* src, uint16_t* dst, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dst[i] = Fp32ToFp16(src[i]);
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
  for (; i < count; ++i) dst[i] = Fp32ToFp16(src[i]);
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
