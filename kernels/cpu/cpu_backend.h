// The CPU implementation of kernels::Backend: AVX-512 / AVX2 inner loops picked at run time
// (kernels/cpu/cpu_features.h), a scalar reference for each op, and a spin-waiting thread pool.
#pragma once

#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"

namespace saola::kernels::cpu {

class CpuBackend final : public Backend {
 public:
  /// num_threads <= 0 means one per available core.
  explicit CpuBackend(int num_threads);

  Buffer Allocate(size_t bytes) override;
  void MatMul(const Weight& w, const float* x, int64_t n, float* y) override;
  void MatMulShared(std::span<const Weight> ws, const float* x, int64_t n,
                    std::span<float* const> ys) override;
  void Embed(const Weight& table, const int32_t* ids, int64_t n, float* out) override;
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override;
  void AddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n, int64_t dim,
                  float eps, float* out) override;
  void Add(float* x, const float* delta, int64_t n, int64_t dim) override;
  void Rope(float* x, const int32_t* positions, int64_t n, int32_t num_heads, int32_t head_dim,
            const RopeParams& params) override;
  void SiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out) override;
  void StoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
               const KvLayer& kv) override;
  void Attention(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                 int32_t num_heads, float scale, float* out) override;

  ThreadPool& pool() { return pool_; }

 private:
  ThreadPool pool_;
  // Reused scratch for quantized activations, grown on demand (the model's thread only).
  std::vector<uint8_t> act_scratch_;
};

}  // namespace saola::kernels::cpu
