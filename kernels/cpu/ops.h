// The CPU implementations of every non-matmul op of kernels::Backend, as free functions.
//
// Each op has one entry point that takes the pool, picks the widest instruction set the machine
// offers (kernels/cpu/cpu_features.h: AVX-512 or AVX2 inner loops in *_avx512.cc / *_avx2.cc, a
// portable loop otherwise) and splits rows across threads only when there is enough work: decode
// runs a few hundred of these per token with n = 1, where a parallel region (~1 µs) would cost
// more than the op, so small calls run inline on the caller's thread. Each op also has a scalar,
// single-threaded *Reference used by the tests; the semantics (and the rounding choices made to
// match llama.cpp's CPU backend) are stated on the reference functions below.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"

namespace saola::kernels::cpu {

// ---- Entry points (contracts as in kernels/backend.h) ----------------------------------------

void RmsNorm(ThreadPool& pool, const float* x, const float* weight, int64_t n, int64_t dim,
             float eps, float* out);
void AddRmsNorm(ThreadPool& pool, float* residual, const float* delta, const float* weight,
                int64_t n, int64_t dim, float eps, float* out);
void Add(ThreadPool& pool, float* x, const float* delta, int64_t n, int64_t dim);
void SiluMul(ThreadPool& pool, const float* gate, const float* up, int64_t n, int64_t dim,
             float* out);
/// Same values as RopeReference; the calling thread memoizes cos/sin per position and parameter
/// set (kernels/cpu/rope.cc), so later layers and steps skip the sines.
void Rope(ThreadPool& pool, float* x, const int32_t* positions, int64_t n, int32_t num_heads,
          int32_t head_dim, const RopeParams& params);
void StoreKv(ThreadPool& pool, const float* k, const float* v, const int32_t* slots, int64_t n,
             const KvLayer& kv);
/// Bit-identical to AttentionReference on every path and thread count (kernels/cpu/attention.cc),
/// and a query's result depends only on its own sequence.
void Attention(ThreadPool& pool, const float* q, const KvLayer& kv,
               std::span<const AttentionSeq> seqs, int32_t num_heads, float scale, float* out);

// ---- Scalar references -------------------------------------------------------------------------

/// As ggml_rms_norm followed by ggml_mul: the sum of the float squares x*x accumulated in double,
/// mean = (float)(sum / dim), scale = 1 / sqrtf(mean + eps), out = (x * scale) * weight, each
/// product rounded to float. out may alias x.
void RmsNormReference(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                      float* out);
/// residual += delta, then RmsNormReference(residual). out may alias delta (not residual).
void AddRmsNormReference(float* residual, const float* delta, const float* weight, int64_t n,
                         int64_t dim, float eps, float* out);
void AddReference(float* x, const float* delta, int64_t n, int64_t dim);
/// As ggml_vec_swiglu_f32 (AVX-512 build) per row of dim: out = silu(gate) * up with
/// silu(x) = x / (1 + e), e = ggml_v_expf(0 - x) (GgmlExpf, kernels/cpu/ggml_exact.h) for the
/// first dim - dim % 16 elements and libm expf(-x) for the rest.
void SiluMulReference(const float* gate, const float* up, int64_t n, int64_t dim, float* out);
/// As ggml's rope (ext_factor 0, attn_factor 1): theta_scale = powf(freq_base, -2 / rope_dim);
/// for pair i, theta = (float)pos * theta_scale^i by repeated float multiplication, and the
/// rotation uses cosf / sinf of freq_scale * theta:
/// (x0, x1) -> (fmaf(x0, c, -(x1 s)), fmaf(x0, s, x1 c)), as GCC compiles ggml's rotate_pairs.
void RopeReference(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                   int32_t head_dim, const RopeParams& params);
/// Rounds to f16 with round-to-nearest-even (Fp32ToFp16 in kernels/cpu/quantize.h; F16C rounds
/// the same way).
void StoreKvReference(const float* k, const float* v, const int32_t* slots, int64_t n,
                      const KvLayer& kv);
/// llama.cpp's attention without flash attention, bit for bit (kernels/cpu/attention_exact.h):
/// Q rounded to f16, K·Q in tinyBLAS order for sequences with >= 2 queries in the call and in
/// ggml_vec_dot_f16 order for single-query (decode) sequences, ggml's soft_max with ggml_v_expf
/// and a double sum, the probabilities rounded to f16, and P·V in the matching order.
void AttentionReference(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                        int32_t num_heads, float scale, float* out);

}  // namespace saola::kernels::cpu
