// Add and SiluMul: contiguous element streams, split across threads only when long (prefill).
#include <cmath>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ggml_exact.h"
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

// One row as ggml_vec_swiglu_f32 (AVX-512 build): the first dim - dim % 16 elements with
// ggml_v_silu (GgmlSilu), the rest with ggml_silu_f32 (libm expf).
void SiluMulRowScalar(const float* gate, const float* up, int64_t dim, float* out) {
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    for (int l = 0; l < 16; ++l) out[i + l] = internal::GgmlSilu(gate[i + l]) * up[i + l];
  }
  for (; i < dim; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

void AddReference(float* x, const float* delta, int64_t n, int64_t dim) {
  AddScalar(x, delta, n * dim);
}

void SiluMulReference(const float* gate, const float* up, int64_t n, int64_t dim, float* out) {
  for (int64_t r = 0; r < n; ++r) SiluMulRowScalar(gate + r * dim, up + r * dim, dim, out + r * dim);
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
  const auto fn = ActiveIsa() >= Isa::kAvx512 ? internal::SiluMulRowAvx512 : SiluMulRowScalar;
  auto rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(gate + r * dim, up + r * dim, dim, out + r * dim);
  };
  // SiluMul costs an exp and a division per element: worth threads sooner than Add.
  if (n * dim < kMinParallelElems / 4) {
    rows(0, n);
    return;
  }
  ParallelFor(pool, n, 1, rows);
}

}  // namespace saola::kernels::cpu
