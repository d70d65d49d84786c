// Add and SiluMul: contiguous element streams, split across threads only when long (prefill).
#include <cmath>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu {
namespace {

// Elements below which a call runs on the caller's thread: a decode row (a few thousand floats)
// takes well under a microsecond, less than starting a parallel region.
constexpr int64_t kMinParallelElems = 1 << 15;
// Threads get ranges in multiples of this many floats (whole cache lines, whole vectors).
constexpr int64_t kAlign = 64;

void AddScalar(float* x, const float* delta, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] += delta[i];
}

void SiluMulScalar(const float* gate, const float* up, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace

void AddReference(float* x, const float* delta, int64_t n, int64_t dim) {
  AddScalar(x, delta, n * dim);
}

void SiluMulReference(const float* gate, const float* up, int64_t n, int64_t dim, float* out) {
  SiluMulScalar(gate, up, n * dim, out);
}

void Add(ThreadPool& pool, float* x, const float* delta, int64_t n, int64_t dim) {
  const auto fn = ActiveIsa() >= Isa::kAvx2 ? internal::AddAvx2 : AddScalar;
  const int64_t count = n * dim;
  if (count < kMinParallelElems) {
    fn(x, delta, count);
    return;
  }
  ParallelFor(pool, count, kAlign, [&](int64_t begin, int64_t end) {
    fn(x + begin, delta + begin, end - begin);
  });
}

void SiluMul(ThreadPool& pool, const float* gate, const float* up, int64_t n, int64_t dim,
             float* out) {
  const Isa isa = ActiveIsa();
  const auto fn = isa >= Isa::kAvx512 ? internal::SiluMulAvx512
                  : isa >= Isa::kAvx2 ? internal::SiluMulAvx2
                                      : SiluMulScalar;
  const int64_t count = n * dim;
  // SiluMul costs an exp and a division per element: worth threads sooner than Add.
  if (count < kMinParallelElems / 4) {
    fn(gate, up, count, out);
    return;
  }
  ParallelFor(pool, count, kAlign, [&](int64_t begin, int64_t end) {
    fn(gate + begin, up + begin, end - begin, out + begin);
  });
}

}  // namespace saola::kernels::cpu
