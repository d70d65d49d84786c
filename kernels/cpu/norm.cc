// RmsNorm and AddRmsNorm: one row per token, rows split across threads for prefill.
//
// Precision follows ggml's rms_norm + mul (what llama.cpp runs for these models): the squares are
// float products summed in double, the mean is rounded to float, scale = 1 / sqrtf(mean + eps),
// and the output is (x * scale) * weight with both products rounded to float. The AVX2 path sums
// the same float squares in double in a different order, which moves the float mean only in the
// rarest ties.
#include <cmath>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu {
namespace {

// Elements below which a call runs on the caller's thread (decode rows are a few thousand).
constexpr int64_t kMinParallelElems = 1 << 15;

float ScaleFromSum(double sum, int64_t dim, float eps) {
  const float mean = static_cast<float>(sum / static_cast<double>(dim));
  return 1.0f / std::sqrt(mean + eps);
}

double SumSquaresScalar(const float* x, int64_t dim) {
  double sum = 0.0;
  for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(x[i] * x[i]);
  return sum;
}

double AddSumSquaresScalar(float* residual, const float* delta, int64_t dim) {
  double sum = 0.0;
  for (int64_t i = 0; i < dim; ++i) {
    residual[i] += delta[i];
    sum += static_cast<double>(residual[i] * residual[i]);
  }
  return sum;
}

void ScaleMulScalar(const float* x, float scale, const float* weight, int64_t dim, float* out) {
  for (int64_t i = 0; i < dim; ++i) out[i] = (x[i] * scale) * weight[i];
}

struct NormKernels {
  double (*sum_squares)(const float*, int64_t);
  double (*add_sum_squares)(float*, const float*, int64_t);
  void (*scale_mul)(const float*, float, const float*, int64_t, float*);
};

constexpr NormKernels kScalar = {SumSquaresScalar, AddSumSquaresScalar, ScaleMulScalar};
constexpr NormKernels kAvx2 = {internal::SumSquaresAvx2, internal::AddSumSquaresAvx2,
                               internal::ScaleMulAvx2};

const NormKernels& Kernels() { return ActiveIsa() >= Isa::kAvx2 ? kAvx2 : kScalar; }

void RmsNormRows(const NormKernels& k, const float* x, const float* weight, int64_t begin,
                 int64_t end, int64_t dim, float eps, float* out) {
  for (int64_t i = begin; i < end; ++i) {
    const float* xi = x + i * dim;
    const float scale = ScaleFromSum(k.sum_squares(xi, dim), dim, eps);
    k.scale_mul(xi, scale, weight, dim, out + i * dim);
  }
}

void AddRmsNormRows(const NormKernels& k, float* residual, const float* delta,
                    const float* weight, int64_t begin, int64_t end, int64_t dim, float eps,
                    float* out) {
  for (int64_t i = begin; i < end; ++i) {
    float* ri = residual + i * dim;
    const float scale = ScaleFromSum(k.add_sum_squares(ri, delta + i * dim, dim), dim, eps);
    k.scale_mul(ri, scale, weight, dim, out + i * dim);
  }
}

}  // namespace

void RmsNormReference(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                      float* out) {
  RmsNormRows(kScalar, x, weight, 0, n, dim, eps, out);
}

void AddRmsNormReference(float* residual, const float* delta, const float* weight, int64_t n,
                         int64_t dim, float eps, float* out) {
  AddRmsNormRows(kScalar, residual, delta, weight, 0, n, dim, eps, out);
}

void RmsNorm(ThreadPool& pool, const float* x, const float* weight, int64_t n, int64_t dim,
             float eps, float* out) {
  const NormKernels& k = Kernels();
  if (n * dim < kMinParallelElems) {
    RmsNormRows(k, x, weight, 0, n, dim, eps, out);
    return;
  }
  ParallelFor(pool, n, 1, [&](int64_t begin, int64_t end) {
    RmsNormRows(k, x, weight, begin, end, dim, eps, out);
  });
}

void AddRmsNorm(ThreadPool& pool, float* residual, const float* delta, const float* weight,
                int64_t n, int64_t dim, float eps, float* out) {
  const NormKernels& k = Kernels();
  if (n * dim < kMinParallelElems) {
    AddRmsNormRows(k, residual, delta, weight, 0, n, dim, eps, out);
    return;
  }
  ParallelFor(pool, n, 1, [&](int64_t begin, int64_t end) {
    AddRmsNormRows(k, residual, delta, weight, begin, end, dim, eps, out);
  });
}

}  // namespace saola::kernels::cpu
