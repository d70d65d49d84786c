// Every op of the CUDA backend against the CPU backend's scalar references (kernels/cpu), with a
// normalized error bound max|gpu - ref| / max|ref|, on random inputs and on SmolLM2-135M's
// shapes (hidden 576, 9 heads, 3 KV heads, head_dim 64, FFN 1536, vocab 49152). Needs a CUDA
// device: every test skips, saying so, when cudaGetDeviceCount reports none.
#include "kernels/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/gemm_options.h"
#include "tests/kernels/random_weight.h"

namespace saola::kernels::cuda {
namespace {

using cpu::DequantizeRow;
using cpu::Fp16ToFp32;
using cpu::Fp32ToBf16;
using cpu::Fp32ToFp16;

// SmolLM2-135M.
constexpr int64_t kHidden = 576;
constexpr int32_t kHeads = 9;
constexpr int32_t kKvHeads = 3;
constexpr int32_t kHeadDim = 64;
constexpr int64_t kFfn = 1536;
constexpr int64_t kVocab = 49152;

constexpr DType kTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16,
                            DType::kQ8_0, DType::kQ4_0, DType::kQ4_1};

double NormalizedError(const std::vector<float>& y, const std::vector<float>& ref) {
  EXPECT_EQ(y.size(), ref.size());
  double max_ref = 0.0, max_err = 0.0;
  for (size_t i = 0; i < y.size() && i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
    const double err = std::fabs(static_cast<double>(y[i]) - ref[i]);
    max_err = std::isnan(err) ? INFINITY : std::max(max_err, err);
  }
  return max_ref > 0.0 ? max_err / max_ref : max_err;
}

std::vector<float> RandomFloats(size_t count, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(count);
  for (float& x : v) x = normal(rng);
  return v;
}

using HostWeight = RandomWeight;

// y = x · dequantized(w)ᵀ with float activations, accumulated in double.
std::vector<float> FloatProduct(const Weight& w, const std::vector<float>& x, int64_t n) {
  std::vector<float> y(n * w.rows), row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w.type, static_cast<const uint8_t*>(w.data) + r * w.row_stride_bytes,
                  row.data(), w.cols);
    for (int64_t t = 0; t < n; ++t) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) acc += static_cast<double>(row[k]) * x[t * w.cols + k];
      y[t * w.rows + r] = static_cast<float>(acc);
    }
  }
  return y;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) {
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none): the CUDA backend is "
                      "compiled but not run here";
    }
    auto backend = CudaBackend::Create(0);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }

  void TearDown() override {
    if (backend_ == nullptr) return;
    const absl::Status s = backend_->Synchronize();
    EXPECT_TRUE(s.ok()) << s;
  }

  template <typename T>
  Buffer ToDevice(const std::vector<T>& host) {
    Buffer b = backend_->Allocate(host.size() * sizeof(T));
    EXPECT_NE(b, nullptr);
    EXPECT_TRUE(backend_->CopyToDevice(b.get(), host.data(), host.size() * sizeof(T)).ok());
    return b;
  }

  template <typename T>
  std::vector<T> ToHost(const Buffer& b, size_t count) {
    std::vector<T> host(count);
    const absl::Status s = backend_->CopyToHost(host.data(), b.get(), count * sizeof(T));
    EXPECT_TRUE(s.ok()) << s;
    return host;
  }

  std::vector<float> RunMatMul(const Weight& device_w, const std::vector<float>& x, int64_t n) {
    Buffer dx = ToDevice(x);
    Buffer dy = backend_->Allocate(static_cast<size_t>(n * device_w.rows) * sizeof(float));
    backend_->MatMul(device_w, static_cast<const float*>(dx.get()), n,
                     static_cast<float*>(dy.get()));
    return ToHost<float>(dy, static_cast<size_t>(n * device_w.rows));
  }

  std::unique_ptr<CudaBackend> backend_;
};

// ---- MatMul ------------------------------------------------------------------------------------

TEST_F(CudaBackendTest, MatMulMatchesFloatProductForEveryTypeAndShape) {
  // The f32 kernels (GEMV, tiled GEMM) at 1e-5, whatever SAOLA_CUDA_GEMM says; the cuBLAS path
  // (TF32) has its own tests and bound below.
  backend_->set_gemm_options({.path = CudaGemmPath::kTiled});
  struct Shape {
    int64_t rows, cols;
    bool strided;
  };
  const Shape shapes[] = {{7, 32, false},       {193, 64, true},     {kHidden, kHidden, false},
                          {kFfn, kHidden, false}, {kHidden, kFfn, true}, {3 * 64, kHidden, false}};
  const int64_t token_counts[] = {1, 2, 3, 5, 8, 9, 33, 100};
  uint32_t seed = 1;
  for (DType type : kTypes) {
    for (const Shape& s : shapes) {
      const HostWeight hw = MakeWeight(type, s.rows, s.cols, s.strided, seed++);
      auto dw = backend_->UploadWeight(hw.w);
      ASSERT_TRUE(dw.ok()) << dw.status();
      for (int64_t n : token_counts) {
        const std::vector<float> x = RandomFloats(n * s.cols, seed++);
        const std::vector<float> y = RunMatMul(dw->weight, x, n);
        const std::vector<float> ref = FloatProduct(hw.w, x, n);
        EXPECT_LT(NormalizedError(y, ref), 1e-5)
            << GetDTypeInfo(type).name << " " << s.rows << "x" << s.cols << " n=" << n;
      }
    }
  }
}

TEST_F(CudaBackendTest, MatMulAgreesWithCpuBackendWithinActivationQuantization) {
  // The CPU quantizes activations to Q8 (llama.cpp's arithmetic); the GPU multiplies float
  // activations, so the two differ by that rounding.
  for (DType type : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kF16}) {
    const HostWeight hw = MakeWeight(type, kFfn, kHidden, false, 77);
    auto dw = backend_->UploadWeight(hw.w);
    ASSERT_TRUE(dw.ok()) << dw.status();
    for (int64_t n : {1, 4, 64}) {
      const std::vector<float> x = RandomFloats(n * kHidden, 78);
      std::vector<float> ref(n * kFfn);
      cpu::MatMulReference(hw.w, x.data(), n, ref.data());
      EXPECT_LT(NormalizedError(RunMatMul(dw->weight, x, n), ref), 3e-2)
          << GetDTypeInfo(type).name << " n=" << n;
    }
  }
}

TEST_F(CudaBackendTest, MatMulVocabularyProjection) {
  // The f32 kernels (GEMV, tiled GEMM) at 1e-5, whatever SAOLA_CUDA_GEMM says; the cuBLAS path
  // (TF32) has its own tests and bound below.
  backend_->set_gemm_options({.path = CudaGemmPath::kTiled});
  const HostWeight hw = MakeWeight(DType::kQ8_0, kVocab, kHidden, false, 5);
  auto dw = backend_->UploadWeight(hw.w);
  ASSERT_TRUE(dw.ok()) << dw.status();
  for (int64_t n : {1, 16}) {
    const std::vector<float> x = RandomFloats(n * kHidden, 6);
    EXPECT_LT(NormalizedError(RunMatMul(dw->weight, x, n), FloatProduct(hw.w, x, n)), 1e-5)
        << "n=" << n;
  }
}

TEST_F(CudaBackendTest, MatMulWithUnalignedActivations) {
  // x one float past an aligned address takes the scalar-load GEMV path.
  const HostWeight hw = MakeWeight(DType::kQ4_0, 64, kHidden, false, 9);
  auto dw = backend_->UploadWeight(hw.w);
  ASSERT_TRUE(dw.ok()) << dw.status();
  for (int64_t n : {1, 3}) {
    const std::vector<float> x = RandomFloats(n * kHidden, 10);
    std::vector<float> padded(x.size() + 1, 0.0f);
    std::copy(x.begin(), x.end(), padded.begin() + 1);
    Buffer dx = ToDevice(padded);
    Buffer dy = backend_->Allocate(n * 64 * sizeof(float));
    backend_->MatMul(dw->weight, static_cast<const float*>(dx.get()) + 1, n,
                     static_cast<float*>(dy.get()));
    EXPECT_LT(NormalizedError(ToHost<float>(dy, n * 64), FloatProduct(hw.w, x, n)), 1e-5);
  }
}

TEST_F(CudaBackendTest, MatMulSharedEqualsSeparateProducts) {
  // The f32 kernels (GEMV, tiled GEMM) at 1e-5, whatever SAOLA_CUDA_GEMM says; the cuBLAS path
  // (TF32) has its own tests and bound below.
  backend_->set_gemm_options({.path = CudaGemmPath::kTiled});
  const HostWeight q = MakeWeight(DType::kQ4_0, kHidden, kHidden, false, 11);
  const HostWeight k = MakeWeight(DType::kQ4_0, kKvHeads * kHeadDim, kHidden, false, 12);
  const HostWeight v = MakeWeight(DType::kQ8_0, kKvHeads * kHeadDim, kHidden, false, 13);
  std::vector<DeviceWeight> dws;
  for (const HostWeight* h : {&q, &k, &v}) {
    auto dw = backend_->UploadWeight(h->w);
    ASSERT_TRUE(dw.ok()) << dw.status();
    dws.push_back(*std::move(dw));
  }
  for (int64_t n : {1, 20}) {
    const std::vector<float> x = RandomFloats(n * kHidden, 14);
    Buffer dx = ToDevice(x);
    std::vector<Buffer> outs;
    std::vector<float*> ys;
    std::vector<Weight> ws;
    for (const DeviceWeight& dw : dws) {
      outs.push_back(backend_->Allocate(n * dw.weight.rows * sizeof(float)));
      ys.push_back(static_cast<float*>(outs.back().get()));
      ws.push_back(dw.weight);
    }
    backend_->MatMulShared(ws, static_cast<const float*>(dx.get()), n, ys);
    const HostWeight* hosts[] = {&q, &k, &v};
    for (size_t i = 0; i < dws.size(); ++i) {
      EXPECT_LT(NormalizedError(ToHost<float>(outs[i], n * ws[i].rows),
                                FloatProduct(hosts[i]->w, x, n)),
                1e-5)
          << "weight " << i << " n=" << n;
    }
  }
}

TEST_F(CudaBackendTest, UploadWeightRejectsUnsupportedTypes) {
  Weight w;
  w.type = DType::kQ4_K;
  w.rows = 1;
  w.cols = 256;
  EXPECT_EQ(backend_->UploadWeight(w).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Prefill GEMM paths: tiled and cuBLAS (gemm_options.h, gemm_cublas.h) ----------------------

// The selection and the tile arithmetic need no device.
TEST(CudaGemmOptionsTest, AutoTakesCublasFromTheThresholdForcedPathsAlways) {
  CudaGemmOptions options;
  EXPECT_EQ(options.path, CudaGemmPath::kAuto);
  EXPECT_EQ(ChooseCudaGemmPath(options, options.cublas_min_tokens - 1), CudaGemmPath::kTiled);
  EXPECT_EQ(ChooseCudaGemmPath(options, options.cublas_min_tokens), CudaGemmPath::kCublas);
  options.path = CudaGemmPath::kTiled;
  EXPECT_EQ(ChooseCudaGemmPath(options, 100000), CudaGemmPath::kTiled);
  options.path = CudaGemmPath::kCublas;
  EXPECT_EQ(ChooseCudaGemmPath(options, 9), CudaGemmPath::kCublas);
}

TEST(CudaGemmOptionsTest, ParsesPathNamesAndRejectsOthers) {
  for (CudaGemmPath p : {CudaGemmPath::kAuto, CudaGemmPath::kTiled, CudaGemmPath::kCublas}) {
    auto parsed = ParseCudaGemmPath(CudaGemmPathName(p));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, p);
  }
  EXPECT_EQ(ParseCudaGemmPath("cuBLAS").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCudaGemmPath("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CublasGemmTest, TileRowsStayWithinTheScratchLimit) {
  using internal::CublasGemm;
  constexpr size_t kRow = kHidden * sizeof(float);
  EXPECT_EQ(CublasGemm::TileRows(kFfn, kHidden, size_t{64} << 20), kFfn);  // one tile
  EXPECT_EQ(CublasGemm::TileRows(1000, kHidden, 300 * kRow), 288);  // rounded down to 16s
  EXPECT_EQ(CublasGemm::TileRows(1000, kHidden, 300 * kRow - 1), 288);
  EXPECT_EQ(CublasGemm::TileRows(1000, kHidden, 10 * kRow), 10);  // under 16: as many as fit
  EXPECT_EQ(CublasGemm::TileRows(1000, kHidden, 1), 1);           // one row, whatever the limit
  EXPECT_EQ(CublasGemm::TileRows(5, kHidden, 1000 * kRow), 5);
  // The vocabulary projection in f32 is 108 MiB: two tiles under the default limit.
  const int64_t vocab_tile = CublasGemm::TileRows(kVocab, kHidden, size_t{64} << 20);
  EXPECT_EQ(vocab_tile % 16, 0);
  EXPECT_LE(static_cast<size_t>(vocab_tile) * kRow, size_t{64} << 20);
  EXPECT_EQ((kVocab + vocab_tile - 1) / vocab_tile, 2);
}

// The exact product (double) and, per element, sum_k |x_k w_k|, which bounds TF32's error.
struct ExactProduct {
  std::vector<float> y;
  std::vector<double> abs;
};

ExactProduct ProductWithMagnitude(const Weight& w, const std::vector<float>& x, int64_t n) {
  ExactProduct p;
  p.y.resize(n * w.rows);
  p.abs.resize(n * w.rows);
  std::vector<float> row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w.type, static_cast<const uint8_t*>(w.data) + r * w.row_stride_bytes,
                  row.data(), w.cols);
    for (int64_t t = 0; t < n; ++t) {
      double acc = 0.0, mag = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) {
        const double prod = static_cast<double>(row[k]) * x[t * w.cols + k];
        acc += prod;
        mag += std::fabs(prod);
      }
      p.y[t * w.rows + r] = static_cast<float>(acc);
      p.abs[t * w.rows + r] = mag;
    }
  }
  return p;
}

// TF32 keeps 10 of f32's 23 mantissa bits: each operand is rounded to within 2^-10 relative
// (2^-11 when rounded to nearest, 2^-10 if the tensor cores truncate), so each exact f32 product
// of two TF32 values is within 2^-9 relative of the true product, and f32 accumulation over
// `cols` terms adds at most cols * 2^-23 (round toward zero; 2^-24 when rounded to nearest).
// That bounds every element: |y - exact| <= (2^-9 + cols * 2^-23) * sum_k |x_k w_k|. Returns the
// largest ratio of the error to that bound (must be <= 1).
double WorstTf32ErrorRatio(const std::vector<float>& y, const ExactProduct& exact, int64_t cols) {
  const double rel = std::ldexp(1.0, -9) + static_cast<double>(cols) * std::ldexp(1.0, -23);
  double worst = 0.0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double err = std::fabs(static_cast<double>(y[i]) - exact.y[i]);
    // + 1e-30: exact zeros (an all-zero x row) must come back exactly.
    worst = std::max(worst, std::isnan(err) ? INFINITY : err / (rel * exact.abs[i] + 1e-30));
  }
  return worst;
}

// Normalized error of the cuBLAS path on these random inputs (x ~ N(0, 1), MakeWeight's
// weights). The per-element bound above, turned into max|err| / max|y|, would allow up to
// ~7 x 2^-9 for cols = 1536 (sum |x w| / max|y| ~ 0.8 sqrt(cols) / 4.5); the errors of random
// signs mostly cancel, so the expected figure is ~8e-4 when the hardware truncates to TF32 (a
// bias of up to 2^-10 y plus a random part) and ~3e-4 when it rounds: the figures of a NumPy
// simulation of both roundings on these shapes (Q4_1-like weights, n = 300), whose per-element
// ratio to the bound was at most 0.11. 4e-3 leaves 5x room without hiding a wrong tile or column
// block, whose error is O(1).
constexpr double kTf32NormalizedBound = 4e-3;
// The tiled kernel computes in f32: as MatMulMatchesFloatProductForEveryTypeAndShape.
constexpr double kF32NormalizedBound = 1e-5;

CudaGemmOptions ForcePath(CudaGemmPath path, size_t scratch_bytes = size_t{64} << 20) {
  CudaGemmOptions options;
  options.path = path;
  options.cublas_scratch_bytes = scratch_bytes;
  return options;
}

TEST_F(CudaBackendTest, PrefillGemmPathsMatchFloatProductOnSmolLM2Shapes) {
  struct Shape {
    int64_t rows, cols;
  };
  // Q and O (576 -> 576), K and V (576 -> 192), gate and up (576 -> 1536), down (1536 -> 576).
  const Shape shapes[] = {
      {kHidden, kHidden}, {kKvHeads * kHeadDim, kHidden}, {kFfn, kHidden}, {kHidden, kFfn}};
  uint32_t seed = 300;
  for (DType type : kTypes) {
    for (const Shape& s : shapes) {
      const HostWeight hw = MakeWeight(type, s.rows, s.cols, false, seed++);
      auto dw = backend_->UploadWeight(hw.w);
      ASSERT_TRUE(dw.ok()) << dw.status();
      for (int64_t n : {9, 64, 300}) {
        SCOPED_TRACE(testing::Message() << GetDTypeInfo(type).name << " " << s.rows << "x"
                                        << s.cols << " n=" << n);
        const std::vector<float> x = RandomFloats(n * s.cols, seed++);
        const ExactProduct exact = ProductWithMagnitude(hw.w, x, n);
        backend_->set_gemm_options(ForcePath(CudaGemmPath::kTiled));
        EXPECT_LT(NormalizedError(RunMatMul(dw->weight, x, n), exact.y), kF32NormalizedBound);
        backend_->set_gemm_options(ForcePath(CudaGemmPath::kCublas));
        const std::vector<float> y = RunMatMul(dw->weight, x, n);
        EXPECT_LT(NormalizedError(y, exact.y), kTf32NormalizedBound);
        EXPECT_LE(WorstTf32ErrorRatio(y, exact, s.cols), 1.0);
      }
    }
  }
}

TEST_F(CudaBackendTest, CublasGemmRunsInSeveralScratchTiles) {
  // 1000 rows in tiles of 288 (the last one 136 rows), of 10 (y's column blocks 40 bytes apart,
  // not 16-byte aligned), and of one row; a weight smaller than one tile; the vocabulary
  // projection under the default limit.
  constexpr size_t kRow = kHidden * sizeof(float);
  struct Case {
    DType type;
    int64_t rows;
    size_t scratch_bytes;
  };
  const Case cases[] = {{DType::kQ4_1, 1000, 300 * kRow},
                        {DType::kF16, 1000, 10 * kRow},
                        {DType::kQ8_0, 37, 1},
                        {DType::kQ4_0, kFfn, 100 * kRow},
                        {DType::kBF16, 20, 1000 * kRow},
                        {DType::kQ8_0, kVocab, size_t{64} << 20}};  // 2 tiles by default
  uint32_t seed = 400;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << GetDTypeInfo(c.type).name << " rows " << c.rows
                                    << ", scratch " << c.scratch_bytes << " bytes");
    const HostWeight hw = MakeWeight(c.type, c.rows, kHidden, false, seed++);
    auto dw = backend_->UploadWeight(hw.w);
    ASSERT_TRUE(dw.ok()) << dw.status();
    backend_->set_gemm_options(ForcePath(CudaGemmPath::kCublas, c.scratch_bytes));
    for (int64_t n : {9, 77}) {
      const std::vector<float> x = RandomFloats(n * kHidden, seed++);
      const ExactProduct exact = ProductWithMagnitude(hw.w, x, n);
      const std::vector<float> y = RunMatMul(dw->weight, x, n);
      EXPECT_LT(NormalizedError(y, exact.y), kTf32NormalizedBound) << "n=" << n;
      EXPECT_LE(WorstTf32ErrorRatio(y, exact, kHidden), 1.0) << "n=" << n;
    }
  }
}

TEST_F(CudaBackendTest, CublasGemmKeepsActivationsPastHalfRange) {
  // Activations of 3e4 (outlier features) give products and sums far past f16's 65504; TF32 has
  // f32's exponent, so the relative error stays that of the 10-bit mantissa.
  const HostWeight hw = MakeWeight(DType::kQ4_0, kHidden, kFfn, false, 500);
  auto dw = backend_->UploadWeight(hw.w);
  ASSERT_TRUE(dw.ok()) << dw.status();
  backend_->set_gemm_options(ForcePath(CudaGemmPath::kCublas));
  const int64_t n = 64;
  const std::vector<float> x = RandomFloats(n * kFfn, 501, 3e4f);
  const ExactProduct exact = ProductWithMagnitude(hw.w, x, n);
  const std::vector<float> y = RunMatMul(dw->weight, x, n);
  EXPECT_GT(*std::max_element(exact.y.begin(), exact.y.end()), 65504.0f);
  EXPECT_LT(NormalizedError(y, exact.y), kTf32NormalizedBound);
  EXPECT_LE(WorstTf32ErrorRatio(y, exact, kFfn), 1.0);
}

TEST_F(CudaBackendTest, MatMulAndMatMulSharedTakeTheSelectedPath) {
  // Each path is deterministic on one device, so the path a call took shows in its exact bits:
  // auto at the threshold must equal forced cuBLAS, one token below it forced tiled, and
  // MatMulShared must equal MatMul under every setting. At n <= 8 both settings run the GEMV.
  const HostWeight q = MakeWeight(DType::kQ4_1, kHidden, kHidden, false, 600);
  const HostWeight k = MakeWeight(DType::kQ8_0, kKvHeads * kHeadDim, kHidden, false, 601);
  const HostWeight f = MakeWeight(DType::kF32, kKvHeads * kHeadDim, kHidden, false, 602);
  std::vector<DeviceWeight> dws;
  for (const HostWeight* h : {&q, &k, &f}) {
    auto dw = backend_->UploadWeight(h->w);
    ASSERT_TRUE(dw.ok()) << dw.status();
    dws.push_back(*std::move(dw));
  }
  auto run_shared = [&](const std::vector<float>& x, int64_t n) {
    Buffer dx = ToDevice(x);
    std::vector<Buffer> outs;
    std::vector<float*> ys;
    std::vector<Weight> ws;
    for (const DeviceWeight& dw : dws) {
      outs.push_back(backend_->Allocate(n * dw.weight.rows * sizeof(float)));
      ys.push_back(static_cast<float*>(outs.back().get()));
      ws.push_back(dw.weight);
    }
    backend_->MatMulShared(ws, static_cast<const float*>(dx.get()), n, ys);
    std::vector<std::vector<float>> result;
    for (size_t i = 0; i < dws.size(); ++i) {
      result.push_back(ToHost<float>(outs[i], n * ws[i].rows));
    }
    return result;
  };
  auto run_each = [&](const std::vector<float>& x, int64_t n) {
    std::vector<std::vector<float>> result;
    for (const DeviceWeight& dw : dws) result.push_back(RunMatMul(dw.weight, x, n));
    return result;
  };
  for (int64_t n : {8, 20}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<float> x = RandomFloats(n * kHidden, 603);
    backend_->set_gemm_options(ForcePath(CudaGemmPath::kTiled));
    const auto tiled = run_each(x, n);
    EXPECT_EQ(run_shared(x, n), tiled);
    backend_->set_gemm_options(ForcePath(CudaGemmPath::kCublas));
    const auto cublas = run_each(x, n);
    EXPECT_EQ(run_shared(x, n), cublas);
    if (n <= 8) {
      EXPECT_EQ(cublas, tiled);  // the GEMV, whatever the setting
    } else {
      EXPECT_NE(cublas, tiled);  // TF32 rounding shows: the two paths really differ
    }
    CudaGemmOptions automatic;
    automatic.cublas_min_tokens = 20;
    backend_->set_gemm_options(automatic);
    EXPECT_EQ(run_each(x, n), n >= 20 ? cublas : tiled);
    EXPECT_EQ(run_shared(x, n), n >= 20 ? cublas : tiled);
    automatic.cublas_min_tokens = 21;
    backend_->set_gemm_options(automatic);
    EXPECT_EQ(run_each(x, n), tiled);
    EXPECT_EQ(run_shared(x, n), tiled);
  }
}

TEST_F(CudaBackendTest, CreateTakesTheGemmPathFromTheEnvironment) {
  const char* before = std::getenv("SAOLA_CUDA_GEMM");
  const std::string saved = before != nullptr ? before : "";
  setenv("SAOLA_CUDA_GEMM", "cublas", 1);
  auto forced = CudaBackend::Create(0);
  setenv("SAOLA_CUDA_GEMM", "fastest", 1);
  auto bad = CudaBackend::Create(0);
  if (before != nullptr) {
    setenv("SAOLA_CUDA_GEMM", saved.c_str(), 1);
  } else {
    unsetenv("SAOLA_CUDA_GEMM");
  }
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ((*forced)->gemm_options().path, CudaGemmPath::kCublas);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Embed -------------------------------------------------------------------------------------

TEST_F(CudaBackendTest, EmbedDequantizesTheRequestedRows) {
  for (DType type : kTypes) {
    const HostWeight table = MakeWeight(type, 1000, kHidden, false, 21);
    auto dt = backend_->UploadWeight(table.w);
    ASSERT_TRUE(dt.ok()) << dt.status();
    const std::vector<int32_t> ids = {0, 999, 17, 17, 512};
    const int64_t n = static_cast<int64_t>(ids.size());
    Buffer out = backend_->Allocate(n * kHidden * sizeof(float));
    backend_->Embed(dt->weight, ids.data(), n, static_cast<float*>(out.get()));
    std::vector<float> ref(n * kHidden);
    for (int64_t i = 0; i < n; ++i) {
      DequantizeRow(type, static_cast<const uint8_t*>(table.w.data) + ids[i] * table.w.row_stride_bytes,
                    ref.data() + i * kHidden, kHidden);
    }
    // Q4_1's d * q + m may be one fused multiply-add on the GPU.
    EXPECT_LT(NormalizedError(ToHost<float>(out, n * kHidden), ref), 1e-6)
        << GetDTypeInfo(type).name;
  }
}

// ---- Norms and element-wise ops ----------------------------------------------------------------

TEST_F(CudaBackendTest, RmsNormMatchesReferenceInPlaceAndOutOfPlace) {
  for (int64_t dim : {int64_t{64}, kHidden, int64_t{4096}}) {
    const int64_t n = 7;
    const std::vector<float> x = RandomFloats(n * dim, 31, 3.0f);
    const std::vector<float> weight = RandomFloats(dim, 32);
    std::vector<float> ref(n * dim);
    cpu::RmsNormReference(x.data(), weight.data(), n, dim, 1e-5f, ref.data());
    Buffer dx = ToDevice(x), dw = ToDevice(weight);
    Buffer dout = backend_->Allocate(n * dim * sizeof(float));
    backend_->RmsNorm(static_cast<float*>(dx.get()), static_cast<float*>(dw.get()), n, dim, 1e-5f,
                      static_cast<float*>(dout.get()));
    EXPECT_LT(NormalizedError(ToHost<float>(dout, n * dim), ref), 1e-5) << "dim " << dim;
    backend_->RmsNorm(static_cast<float*>(dx.get()), static_cast<float*>(dw.get()), n, dim, 1e-5f,
                      static_cast<float*>(dx.get()));
    EXPECT_LT(NormalizedError(ToHost<float>(dx, n * dim), ref), 1e-5) << "in place, dim " << dim;
  }
}

TEST_F(CudaBackendTest, AddRmsNormUpdatesResidualAndNormalizes) {
  const int64_t n = 5, dim = kHidden;
  std::vector<float> residual = RandomFloats(n * dim, 41, 2.0f);
  const std::vector<float> delta = RandomFloats(n * dim, 42);
  const std::vector<float> weight = RandomFloats(dim, 43);
  Buffer dres = ToDevice(residual), ddelta = ToDevice(delta), dw = ToDevice(weight);
  std::vector<float> ref(n * dim);
  cpu::AddRmsNormReference(residual.data(), delta.data(), weight.data(), n, dim, 1e-6f, ref.data());
  // out aliases delta, as the contract allows.
  backend_->AddRmsNorm(static_cast<float*>(dres.get()), static_cast<float*>(ddelta.get()),
                       static_cast<float*>(dw.get()), n, dim, 1e-6f,
                       static_cast<float*>(ddelta.get()));
  EXPECT_LT(NormalizedError(ToHost<float>(dres, n * dim), residual), 1e-7);
  EXPECT_LT(NormalizedError(ToHost<float>(ddelta, n * dim), ref), 1e-5);
}

TEST_F(CudaBackendTest, AddAndSiluMulMatchReferences) {
  const int64_t n = 9, dim = kFfn;
  std::vector<float> x = RandomFloats(n * dim, 51, 4.0f);
  const std::vector<float> delta = RandomFloats(n * dim, 52);
  const std::vector<float> up = RandomFloats(n * dim, 53);
  Buffer dx = ToDevice(x), ddelta = ToDevice(delta), dup = ToDevice(up);
  Buffer dout = backend_->Allocate(n * dim * sizeof(float));

  std::vector<float> silu_ref(n * dim);
  cpu::SiluMulReference(x.data(), up.data(), n, dim, silu_ref.data());
  backend_->SiluMul(static_cast<float*>(dx.get()), static_cast<float*>(dup.get()), n, dim,
                    static_cast<float*>(dout.get()));
  EXPECT_LT(NormalizedError(ToHost<float>(dout, n * dim), silu_ref), 1e-5);

  cpu::AddReference(x.data(), delta.data(), n, dim);
  backend_->Add(static_cast<float*>(dx.get()), static_cast<float*>(ddelta.get()), n, dim);
  EXPECT_EQ(ToHost<float>(dx, n * dim), x);  // one float add per element: exact
}

TEST_F(CudaBackendTest, RopeMatchesReferenceForBothModes) {
  struct Case {
    RopeMode mode;
    int32_t num_heads, head_dim, rope_dim;
    float freq_base, freq_scale;
  };
  const Case cases[] = {{RopeMode::kNorm, kHeads, kHeadDim, kHeadDim, 100000.0f, 1.0f},
                        {RopeMode::kNeox, 8, 128, 128, 10000.0f, 1.0f},
                        {RopeMode::kNorm, 4, 128, 64, 10000.0f, 0.25f},
                        {RopeMode::kNeox, 2, 80, 32, 500000.0f, 0.5f}};
  const std::vector<int32_t> positions = {0, 1, 2, 15, 16, 100, 1023, 4095, 30000};
  const int64_t n = static_cast<int64_t>(positions.size());
  for (const Case& c : cases) {
    RopeParams p;
    p.mode = c.mode;
    p.rope_dim = c.rope_dim;
    p.freq_base = c.freq_base;
    p.freq_scale = c.freq_scale;
    std::vector<float> x = RandomFloats(n * c.num_heads * c.head_dim, 61);
    Buffer dx = ToDevice(x);
    cpu::RopeReference(x.data(), positions.data(), n, c.num_heads, c.head_dim, p);
    backend_->Rope(static_cast<float*>(dx.get()), positions.data(), n, c.num_heads, c.head_dim, p);
    EXPECT_LT(NormalizedError(ToHost<float>(dx, x.size()), x), 1e-5)
        << "mode " << static_cast<int>(c.mode) << " rope_dim " << c.rope_dim;
  }
}

// ---- KV cache and attention --------------------------------------------------------------------

// A paged KV cache on the host and its device copy.
struct TestCache {
  std::vector<uint16_t> k, v;
  KvLayer host, device;
  Buffer dk, dv;
};

TEST_F(CudaBackendTest, StoreKvWritesTheSameHalvesAsTheCpu) {
  KvLayer kv;
  kv.num_blocks = 8;
  kv.block_size = 16;
  kv.num_kv_heads = kKvHeads;
  kv.head_dim = kHeadDim;
  const size_t elems = size_t{8} * 16 * kKvHeads * kHeadDim;
  std::vector<uint16_t> hk(elems), hv(elems);
  KvLayer host = kv;
  host.k = hk.data();
  host.v = hv.data();
  Buffer dk = backend_->Allocate(elems * 2), dv = backend_->Allocate(elems * 2);
  KvLayer dev = kv;
  dev.k = static_cast<uint16_t*>(dk.get());
  dev.v = static_cast<uint16_t*>(dv.get());
  const std::vector<int32_t> slots = {0, 37, 127, 64, 5};
  const int64_t n = static_cast<int64_t>(slots.size());
  const std::vector<float> k = RandomFloats(n * kKvHeads * kHeadDim, 71, 30.0f);
  const std::vector<float> v = RandomFloats(n * kKvHeads * kHeadDim, 72, 0.01f);
  Buffer dkin = ToDevice(k), dvin = ToDevice(v);
  cpu::StoreKvReference(k.data(), v.data(), slots.data(), n, host);
  backend_->StoreKv(static_cast<float*>(dkin.get()), static_cast<float*>(dvin.get()), slots.data(),
                    n, dev);
  EXPECT_EQ(ToHost<uint16_t>(dk, elems), hk);
  EXPECT_EQ(ToHost<uint16_t>(dv, elems), hv);
}

struct SeqSpec {
  int32_t num_q;
  int32_t context_len;
};

// out for every query in double: softmax(q·k * scale) · v over the causal prefix, q rounded to
// f16 as the GPU (and the CPU) do.
std::vector<float> NaiveAttention(const std::vector<float>& q, const KvLayer& kv,
                                  std::span<const AttentionSeq> seqs, int32_t num_heads,
                                  float scale) {
  const int32_t hd = kv.head_dim;
  const int32_t group = num_heads / kv.num_kv_heads;
  std::vector<float> out(q.size(), 0.0f);
  for (const AttentionSeq& s : seqs) {
    for (int32_t i = 0; i < s.num_q; ++i) {
      const int32_t last = s.context_len - s.num_q + i;
      for (int32_t h = 0; h < num_heads; ++h) {
        const float* qh = q.data() + (static_cast<int64_t>(s.q_begin + i) * num_heads + h) * hd;
        std::vector<double> scores(last + 1);
        double max_s = -INFINITY;
        for (int32_t p = 0; p <= last; ++p) {
          const int64_t slot =
              static_cast<int64_t>(s.block_table[p / kv.block_size]) * kv.block_size +
              p % kv.block_size;
          const uint16_t* kp = kv.k + (slot * kv.num_kv_heads + h / group) * hd;
          double dot = 0.0;
          for (int32_t d = 0; d < hd; ++d) {
            dot += static_cast<double>(Fp16ToFp32(Fp32ToFp16(qh[d]))) * Fp16ToFp32(kp[d]);
          }
          scores[p] = dot * scale;
          max_s = std::max(max_s, scores[p]);
        }
        double sum = 0.0;
        for (double& sc : scores) sum += (sc = std::exp(sc - max_s));
        float* o = out.data() + (static_cast<int64_t>(s.q_begin + i) * num_heads + h) * hd;
        for (int32_t d = 0; d < hd; ++d) {
          double acc = 0.0;
          for (int32_t p = 0; p <= last; ++p) {
            const int64_t slot =
                static_cast<int64_t>(s.block_table[p / kv.block_size]) * kv.block_size +
                p % kv.block_size;
            acc += scores[p] * Fp16ToFp32(kv.v[(slot * kv.num_kv_heads + h / group) * hd + d]);
          }
          o[d] = static_cast<float>(acc / sum);
        }
      }
    }
  }
  return out;
}

void RunAttentionCase(CudaBackend& backend, int32_t num_heads,
                      int32_t num_kv_heads, int32_t head_dim, const std::vector<SeqSpec>& specs,
                      uint32_t seed) {
  SCOPED_TRACE(testing::Message() << num_heads << " heads, " << num_kv_heads << " kv heads, dim "
                                  << head_dim << ", seed " << seed);
  std::mt19937 rng(seed);
  const int32_t block_size = 16;
  int32_t num_blocks = 0;
  for (const SeqSpec& s : specs) num_blocks += (s.context_len + block_size - 1) / block_size;
  num_blocks += 3;  // unused blocks between
  // Each sequence gets a shuffled set of distinct blocks.
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<std::vector<int32_t>> tables;
  size_t next = 0;
  for (const SeqSpec& s : specs) {
    const int32_t need = (s.context_len + block_size - 1) / block_size;
    tables.emplace_back(perm.begin() + next, perm.begin() + next + need);
    next += need;
  }
  const size_t elems = static_cast<size_t>(num_blocks) * block_size * num_kv_heads * head_dim;
  std::vector<uint16_t> hk(elems), hv(elems);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t i = 0; i < elems; ++i) {
    hk[i] = Fp32ToFp16(normal(rng));
    hv[i] = Fp32ToFp16(normal(rng));
  }
  KvLayer host;
  host.k = hk.data();
  host.v = hv.data();
  host.num_blocks = num_blocks;
  host.block_size = block_size;
  host.num_kv_heads = num_kv_heads;
  host.head_dim = head_dim;
  std::vector<AttentionSeq> seqs;
  int32_t rows = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    seqs.push_back(AttentionSeq{rows, specs[i].num_q, specs[i].context_len, tables[i].data()});
    rows += specs[i].num_q;
  }
  const std::vector<float> q =
      RandomFloats(static_cast<size_t>(rows) * num_heads * head_dim, seed + 1, 2.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));

  Buffer dk = backend.Allocate(elems * 2), dv = backend.Allocate(elems * 2);
  ASSERT_TRUE(backend.CopyToDevice(dk.get(), hk.data(), elems * 2).ok());
  ASSERT_TRUE(backend.CopyToDevice(dv.get(), hv.data(), elems * 2).ok());
  KvLayer dev = host;
  dev.k = static_cast<uint16_t*>(dk.get());
  dev.v = static_cast<uint16_t*>(dv.get());
  Buffer dq = backend.Allocate(q.size() * sizeof(float));
  Buffer dout = backend.Allocate(q.size() * sizeof(float));
  ASSERT_TRUE(backend.CopyToDevice(dq.get(), q.data(), q.size() * sizeof(float)).ok());
  backend.Attention(static_cast<float*>(dq.get()), dev, seqs, num_heads, scale,
                    static_cast<float*>(dout.get()));
  std::vector<float> out(q.size());
  ASSERT_TRUE(backend.CopyToHost(out.data(), dout.get(), out.size() * sizeof(float)).ok());

  EXPECT_LT(NormalizedError(out, NaiveAttention(q, host, seqs, num_heads, scale)), 1e-4);
  // The CPU reference rounds the probabilities to f16 (llama.cpp's arithmetic).
  std::vector<float> cpu_out(q.size());
  cpu::AttentionReference(q.data(), host, seqs, num_heads, scale, cpu_out.data());
  EXPECT_LT(NormalizedError(out, cpu_out), 5e-3);
}

TEST_F(CudaBackendTest, AttentionDecodeSplitsAcrossKvBlocks) {
  // Contexts below, at and past one split (kDecodeSplitTokens), and long ones (several merges).
  const std::vector<SeqSpec> decode = {{1, 1},   {1, 17},  {1, 256}, {1, 257},
                                       {1, 1000}, {1, 3000}, {1, 33}};
  RunAttentionCase(*backend_, kHeads, kKvHeads, kHeadDim, decode, 1);
  RunAttentionCase(*backend_, 32, 8, 128, decode, 2);
  RunAttentionCase(*backend_, 8, 8, 128, {{1, 600}, {1, 5}}, 3);
}

TEST_F(CudaBackendTest, AttentionPrefillChunksAreCausal) {
  // A fresh prompt, a chunk continuing a cached prefix, and a chunk next to decodes.
  const std::vector<SeqSpec> mixed = {{5, 5}, {37, 100}, {1, 300}, {130, 130}, {1, 2}};
  RunAttentionCase(*backend_, kHeads, kKvHeads, kHeadDim, mixed, 4);
  RunAttentionCase(*backend_, 16, 4, 128, mixed, 5);
}

TEST_F(CudaBackendTest, AttentionOddShapes) {
  // Multi-query attention with a group wider than one block (20 heads per KV head), head_dim 80
  // (not a multiple of 32), and head_dim 256.
  const std::vector<SeqSpec> specs = {{3, 40}, {1, 700}, {1, 9}};
  RunAttentionCase(*backend_, 20, 1, 80, specs, 6);
  RunAttentionCase(*backend_, 4, 2, 256, specs, 7);
  RunAttentionCase(*backend_, 6, 3, 32, specs, 8);
}

// ---- Sampling ----------------------------------------------------------------------------------

TEST_F(CudaBackendTest, ArgmaxPicksLargestLogitLowestIdOnTies) {
  const int64_t rows = 4;
  std::vector<float> logits = RandomFloats(rows * kVocab, 81);
  logits[0 * kVocab + 40000] = 50.0f;
  logits[1 * kVocab + 7] = 50.0f;  // tie: 7 wins over 30000
  logits[1 * kVocab + 30000] = 50.0f;
  logits[2 * kVocab + kVocab - 1] = 50.0f;
  logits[3 * kVocab + 0] = 50.0f;
  logits[3 * kVocab + 1] = NAN;
  Buffer d = ToDevice(logits);
  std::vector<int32_t> out(rows, -1);
  ASSERT_TRUE(backend_->Argmax(static_cast<float*>(d.get()), rows, kVocab, out.data()).ok());
  EXPECT_EQ(out, (std::vector<int32_t>{40000, 7, static_cast<int32_t>(kVocab - 1), 0}));
}

// ---- Host arrays -------------------------------------------------------------------------------

TEST_F(CudaBackendTest, HostArraysChangingBetweenCallsAreResent) {
  // The position mirror skips unchanged bytes; a changed array must reach the device.
  RopeParams p;
  p.rope_dim = kHeadDim;
  std::vector<int32_t> positions = {3};
  for (int32_t pos : {3, 3, 9}) {
    positions[0] = pos;
    std::vector<float> x = RandomFloats(kHeads * kHeadDim, 90);
    Buffer dx = ToDevice(x);
    cpu::RopeReference(x.data(), positions.data(), 1, kHeads, kHeadDim, p);
    backend_->Rope(static_cast<float*>(dx.get()), positions.data(), 1, kHeads, kHeadDim, p);
    EXPECT_LT(NormalizedError(ToHost<float>(dx, x.size()), x), 1e-5) << "position " << pos;
  }
}

}  // namespace
}  // namespace saola::kernels::cuda
