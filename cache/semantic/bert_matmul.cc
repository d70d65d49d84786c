#include "cache/semantic/bert_matmul.h"

#include <cblas.h>
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace saola::cache {
namespace {

constexpr int kPanel = 16;     // output columns per panel: two AVX2 vectors
constexpr int kTokenBlock = 6;  // tokens whose sums live in registers at once

bool HasAvx2Fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

// y[r, 0:16] = bias[0:16] + Σ_k x_r[k] · panel[k, 0:16] for the six token rows x_0..x_5 (a
// short block repeats a row; only `rows` results are stored). The twelve sums are named
// variables: GCC spills an array of vectors to the stack on every iteration.
__attribute__((target("avx2,fma,f16c"))) void PanelBlock(const uint16_t* panel, const float* const x[6],
                                                    int in, const float* bias, float* y,
                                                    int y_stride, int rows) {
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
  __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
  for (int k = 0; k < in; ++k) {
    const __m256 w0 =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(panel + k * kPanel)));
    const __m256 w1 = _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(panel + k * kPanel + 8)));
    __m256 b = _mm256_broadcast_ss(x[0] + k);
    a00 = _mm256_fmadd_ps(b, w0, a00);
    a01 = _mm256_fmadd_ps(b, w1, a01);
    b = _mm256_broadcast_ss(x[1] + k);
    a10 = _mm256_fmadd_ps(b, w0, a10);
    a11 = _mm256_fmadd_ps(b, w1, a11);
    b = _mm256_broadcast_ss(x[2] + k);
    a20 = _mm256_fmadd_ps(b, w0, a20);
    a21 = _mm256_fmadd_ps(b, w1, a21);
    b = _mm256_broadcast_ss(x[3] + k);
    a30 = _mm256_fmadd_ps(b, w0, a30);
    a31 = _mm256_fmadd_ps(b, w1, a31);
    b = _mm256_broadcast_ss(x[4] + k);
    a40 = _mm256_fmadd_ps(b, w0, a40);
    a41 = _mm256_fmadd_ps(b, w1, a41);
    b = _mm256_broadcast_ss(x[5] + k);
    a50 = _mm256_fmadd_ps(b, w0, a50);
    a51 = _mm256_fmadd_ps(b, w1, a51);
  }
  const __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
  const __m256 sums[6][2] = {{a00, a01}, {a10, a11}, {a20, a21},
                             {a30, a31}, {a40, a41}, {a50, a51}};
  for (int r = 0; r < rows; ++r) {
    _mm256_storeu_ps(y + r * y_stride, _mm256_add_ps(sums[r][0], b0));
    _mm256_storeu_ps(y + r * y_stride + 8, _mm256_add_ps(sums[r][1], b1));
  }
}

// Round to nearest even IEEE half (F16C), the panels' storage type.
__attribute__((target("f16c"))) uint16_t ToHalf(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}

}  // namespace

PackedWeight::PackedWeight(const float* w, int out, int in) : w_(w), out_(out), in_(in) {
  if (!HasAvx2Fma() || out % kPanel != 0) return;
  panels_.resize(static_cast<size_t>(out) * in);
  for (int p = 0; p < out / kPanel; ++p) {
    uint16_t* panel = panels_.data() + static_cast<size_t>(p) * in * kPanel;
    for (int k = 0; k < in; ++k) {
      for (int j = 0; j < kPanel; ++j) {
        panel[k * kPanel + j] = ToHalf(w[static_cast<size_t>(p * kPanel + j) * in + k]);
      }
    }
  }
}

void MatMulBiasBlas(const PackedWeight& w, const float* x, int num_tokens, const float* bias,
                    float* y) {
  const int out = w.out(), in = w.in();
  for (int t = 0; t < num_tokens; ++t) std::memcpy(y + t * out, bias, out * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, num_tokens, out, in, 1.0f, x, in,
              w.row_major(), in, 1.0f, y, out);
}

void MatMulBias(const PackedWeight& w, const float* x, int num_tokens, const float* bias,
                float* y) {
  if (w.panels().empty() || num_tokens > kMaxKernelTokens) {
    MatMulBiasBlas(w, x, num_tokens, bias, y);
    return;
  }
  const int out = w.out(), in = w.in();
  for (int p = 0; p < out / kPanel; ++p) {
    const uint16_t* panel = w.panels().data() + static_cast<size_t>(p) * in * kPanel;
    for (int t = 0; t < num_tokens; t += kTokenBlock) {
      const int rows = num_tokens - t < kTokenBlock ? num_tokens - t : kTokenBlock;
      const float* block[kTokenBlock];
      for (int r = 0; r < kTokenBlock; ++r) {
        block[r] = x + static_cast<size_t>(t + (r < rows ? r : 0)) * in;
      }
      PanelBlock(panel, block, in, bias + p * kPanel, y + static_cast<size_t>(t) * out + p * kPanel,
                 out, rows);
    }
  }
}

}  // namespace saola::cache
