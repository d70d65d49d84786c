// CpuBackend: each Backend method forwards to its free function (kernels/cpu/ops.h,
// kernels/cpu/matmul.h) with the backend's thread pool.
#include "kernels/cpu/cpu_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"

namespace saola::kernels::cpu {
namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kMapThreshold = size_t{1} << 20;

int ResolveThreads(int num_threads) {
  if (num_threads > 0) return num_threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

}  // namespace

CpuBackend::CpuBackend(int num_threads) : pool_(ResolveThreads(num_threads)) {}

Buffer CpuBackend::Allocate(size_t bytes) {
  // Large buffers (the KV cache, activations) come straight from the kernel as zero pages that
  // are only backed once written, so a KV cache sized for the whole context costs resident memory
  // only for the tokens actually stored. Small ones come from the heap.
  if (bytes >= kMapThreshold) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    return Buffer(p, [bytes](void* q) { munmap(q, bytes); });
  }
  // aligned_alloc wants a size that is a multiple of the alignment (and not 0).
  const size_t rounded = std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) return nullptr;
  std::memset(p, 0, rounded);
  return Buffer(p, [](void* q) { std::free(q); });
}

void CpuBackend::MatMul(const Weight& w, const float* x, int64_t n, float* y) {
  cpu::MatMul(pool_, w, x, n, y, act_scratch_);
}

void CpuBackend::MatMulShared(std::span<const Weight> ws, const float* x, int64_t n,
                              std::span<float* const> ys) {
  cpu::MatMulShared(pool_, ws, x, n, ys, act_scratch_);
}

void CpuBackend::Embed(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  cpu::Embed(pool_, table, ids, n, out);
}

void CpuBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                         float* out) {
  cpu::RmsNorm(pool_, x, weight, n, dim, eps, out);
}

void CpuBackend::AddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n,
                            int64_t dim, float eps, float* out) {
  cpu::AddRmsNorm(pool_, residual, delta, weight, n, dim, eps, out);
}

void CpuBackend::Add(float* x, const float* delta, int64_t n, int64_t dim) {
  cpu::Add(pool_, x, delta, n, dim);
}

void CpuBackend::Rope(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                      int32_t head_dim, const RopeParams& params) {
  cpu::Rope(pool_, x, positions, n, num_heads, head_dim, params);
}

void CpuBackend::SiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out) {
  cpu::SiluMul(pool_, gate, up, n, dim, out);
}

void CpuBackend::StoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
                         const KvLayer& kv) {
  cpu::StoreKv(pool_, k, v, slots, n, kv);
}

void CpuBackend::Attention(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                           int32_t num_heads, float scale, float* out) {
  cpu::Attention(pool_, q, kv, seqs, num_heads, scale, out);
}

}  // namespace saola::kernels::cpu
