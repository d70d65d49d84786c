// CpuBackend through the Backend interface: every op reaches its CPU implementation, and memory
// from Allocate is zeroed and 64-byte aligned.
#include "kernels/cpu/cpu_backend.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {
namespace {

std::vector<float> RandomFloats(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng);
  return v;
}

double NormalizedError(const std::vector<float>& got, const std::vector<float>& want) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i])));
  }
  return max_diff / max_ref;
}

class CpuBackendTest : public testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = std::make_unique<CpuBackend>(2);
};

TEST_F(CpuBackendTest, AllocateIsZeroedAndAligned) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{4096}, size_t{100000}}) {
    Buffer b = backend_->Allocate(bytes);
    ASSERT_NE(b.get(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % 64, 0u);
    const auto* p = static_cast<const uint8_t*>(b.get());
    for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(p[i], 0) << i;
  }
}

TEST_F(CpuBackendTest, DefaultThreadCountIsPositive) {
  CpuBackend backend(0);
  EXPECT_GE(backend.pool().size(), 1);
  CpuBackend three(3);
  EXPECT_EQ(three.pool().size(), 3);
}

TEST_F(CpuBackendTest, NormsAddAndSiluMul) {
  const int64_t n = 5, dim = 96;
  const auto x = RandomFloats(n * dim, 1), d = RandomFloats(n * dim, 2), w = RandomFloats(dim, 3);
  std::vector<float> want(n * dim), got(n * dim);

  RmsNormReference(x.data(), w.data(), n, dim, 1e-5f, want.data());
  backend_->RmsNorm(x.data(), w.data(), n, dim, 1e-5f, got.data());
  EXPECT_LT(NormalizedError(got, want), 1e-6);

  std::vector<float> want_res = x, got_res = x;
  AddRmsNormReference(want_res.data(), d.data(), w.data(), n, dim, 1e-5f, want.data());
  backend_->AddRmsNorm(got_res.data(), d.data(), w.data(), n, dim, 1e-5f, got.data());
  EXPECT_EQ(got_res, want_res);
  EXPECT_LT(NormalizedError(got, want), 1e-6);

  std::vector<float> sum = x;
  backend_->Add(sum.data(), d.data(), n, dim);
  for (int64_t i = 0; i < n * dim; ++i) ASSERT_EQ(sum[i], x[i] + d[i]);

  SiluMulReference(x.data(), d.data(), n, dim, want.data());
  backend_->SiluMul(x.data(), d.data(), n, dim, got.data());
  EXPECT_LT(NormalizedError(got, want), 1e-6);
}

TEST_F(CpuBackendTest, Rope) {
  const int32_t positions[3] = {0, 7, 300};
  for (RopeMode mode : {RopeMode::kNorm, RopeMode::kNeox}) {
    const RopeParams params{mode, 64, 10000.0f, 1.0f};
    const auto x = RandomFloats(3 * 4 * 64, 4);
    std::vector<float> want = x, got = x;
    RopeReference(want.data(), positions, 3, 4, 64, params);
    backend_->Rope(got.data(), positions, 3, 4, 64, params);
    EXPECT_LT(NormalizedError(got, want), 1e-6);
  }
}

TEST_F(CpuBackendTest, StoreKvThenAttention) {
  // Prefill one 40-token sequence through StoreKv, then attend with its last 8 queries.
  const int32_t num_heads = 6, num_kv_heads = 2, head_dim = 64, block_size = 16, num_blocks = 4;
  const int32_t context = 40, num_q = 8;
  const int64_t row = num_kv_heads * head_dim;
  const size_t cache_bytes = sizeof(uint16_t) * num_blocks * block_size * row;
  Buffer kbuf = backend_->Allocate(cache_bytes), vbuf = backend_->Allocate(cache_bytes);
  const KvLayer kv{static_cast<uint16_t*>(kbuf.get()), static_cast<uint16_t*>(vbuf.get()),
                   num_blocks, block_size, num_kv_heads, head_dim};
  const int32_t table[3] = {3, 0, 2};
  std::vector<int32_t> slots(context);
  for (int32_t p = 0; p < context; ++p) slots[p] = table[p / block_size] * block_size + p % block_size;
  const auto k = RandomFloats(context * row, 5), v = RandomFloats(context * row, 6);
  backend_->StoreKv(k.data(), v.data(), slots.data(), context, kv);
  for (int32_t p = 0; p < context; ++p) {
    for (int64_t e = 0; e < row; ++e) {
      ASSERT_EQ(kv.k[slots[p] * row + e], Fp32ToFp16(k[p * row + e]));
      ASSERT_EQ(kv.v[slots[p] * row + e], Fp32ToFp16(v[p * row + e]));
    }
  }

  const auto q = RandomFloats(num_q * num_heads * head_dim, 7);
  const AttentionSeq seq{0, num_q, context, table};
  const float scale = 0.125f;
  std::vector<float> want(q.size()), got(q.size());
  AttentionReference(q.data(), kv, {&seq, 1}, num_heads, scale, want.data());
  backend_->Attention(q.data(), kv, {&seq, 1}, num_heads, scale, got.data());
  EXPECT_LT(NormalizedError(got, want), 1e-4);
}

TEST_F(CpuBackendTest, MatMulEmbedAndShared) {
  const int64_t rows = 48, cols = 64, n = 3;
  const auto wdata = RandomFloats(rows * cols, 8), x = RandomFloats(n * cols, 9);
  const Weight w{DType::kF32, wdata.data(), rows, cols, cols * sizeof(float)};
  std::vector<float> want(n * rows);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double dot = 0.0;
      for (int64_t c = 0; c < cols; ++c) dot += static_cast<double>(x[i * cols + c]) * wdata[r * cols + c];
      want[i * rows + r] = static_cast<float>(dot);
    }
  }
  std::vector<float> got(n * rows);
  backend_->MatMul(w, x.data(), n, got.data());
  EXPECT_LT(NormalizedError(got, want), 1e-5);

  std::vector<float> y0(n * rows), y1(n * rows);
  const Weight ws[2] = {w, w};
  float* const ys[2] = {y0.data(), y1.data()};
  backend_->MatMulShared(ws, x.data(), n, ys);
  EXPECT_LT(NormalizedError(y0, want), 1e-5);
  EXPECT_EQ(y0, y1);

  const int32_t ids[3] = {5, 0, 47};
  std::vector<float> emb(3 * cols);
  backend_->Embed(w, ids, 3, emb.data());
  for (int i = 0; i < 3; ++i) {
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(emb[i * cols + c], wdata[ids[i] * cols + c]);
  }
}

}  // namespace
}  // namespace saola::kernels::cpu
