// A kernels::Backend whose ops are the CPU backend's, for tests that change one other part of the
// contract (placement, sampling) and need real ops behind it: subclass and override that part.
#pragma once

#include <span>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace saola::test {

class CpuDelegatingBackend : public kernels::Backend {
 public:
  explicit CpuDelegatingBackend(int threads) : cpu_(threads) {}

  kernels::Buffer Allocate(size_t bytes) override { return cpu_.Allocate(bytes); }
  void MatMul(const kernels::Weight& w, const float* x, int64_t n, float* y) override {
    cpu_.MatMul(w, x, n, y);
  }
  void MatMulShared(std::span<const kernels::Weight> ws, const float* x, int64_t n,
                    std::span<float* const> ys) override {
    cpu_.MatMulShared(ws, x, n, ys);
  }
  void Embed(const kernels::Weight& table, const int32_t* ids, int64_t n, float* out) override {
    cpu_.Embed(table, ids, n, out);
  }
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override {
    cpu_.RmsNorm(x, weight, n, dim, eps, out);
  }
  void AddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n,
                  int64_t dim, float eps, float* out) override {
    cpu_.AddRmsNorm(residual, delta, weight, n, dim, eps, out);
  }
  void Add(float* x, const float* delta, int64_t n, int64_t dim) override {
    cpu_.Add(x, delta, n, dim);
  }
  void Rope(float* x, const int32_t* positions, int64_t n, int32_t num_heads, int32_t head_dim,
            const kernels::RopeParams& params) override {
    cpu_.Rope(x, positions, n, num_heads, head_dim, params);
  }
  void SiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out) override {
    cpu_.SiluMul(gate, up, n, dim, out);
  }
  void StoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
               const kernels::KvLayer& kv) override {
    cpu_.StoreKv(k, v, slots, n, kv);
  }
  void Attention(const float* q, const kernels::KvLayer& kv,
                 std::span<const kernels::AttentionSeq> seqs, int32_t num_heads, float scale,
                 float* out) override {
    cpu_.Attention(q, kv, seqs, num_heads, scale, out);
  }

 private:
  kernels::cpu::CpuBackend cpu_;
};

}  // namespace saola::test
