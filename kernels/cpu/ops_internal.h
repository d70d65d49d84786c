// Row kernels behind the entry points of kernels/cpu/ops.h, one set per instruction set. The
// entry points (norm.cc, elementwise.cc, rope.cc, attention.cc) pick a set with ActiveIsa() and
// split rows across threads; these functions do one thread's share and nothing else.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"

namespace saola::kernels::cpu::internal {

// ---- norm_avx2.cc ------------------------------------------------------------------------------

/// Sum of the float squares x[i]*x[i], accumulated in double (ggml's rms_norm precision).
double SumSquaresAvx2(const float* x, int64_t dim);
/// residual += delta; returns the double sum of squares of the updated residual.
double AddSumSquaresAvx2(float* residual, const float* delta, int64_t dim);
/// out = (x * scale) * weight.
void ScaleMulAvx2(const float* x, float scale, const float* weight, int64_t dim, float* out);

// ---- elementwise_avx2.cc -----------------------------------------------------------------------

void AddAvx2(float* x, const float* delta, int64_t count);
// elementwise_avx512.cc: one row of SiluMul, bit-identical to SiluMulReference.
void SiluMulRowAvx512(const float* gate, const float* up, int64_t dim, float* out);

// ---- rope_avx2.cc ------------------------------------------------------------------------------

/// Rotates the first 2 * half dims of each of num_heads heads of one token row by the angles
/// whose cosines and sines are cos[0, half) and sin[0, half).
void RopeNormRowAvx2(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                     const float* cos, const float* sin);
void RopeNeoxRowAvx2(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                     const float* cos, const float* sin);

// ---- attention ----------------------------------------------------------------------------------

struct ExactAttentionRow;  // kernels/cpu/attention_exact.h

/// One query row of the exact attention (attention_exact.h), per instruction set; all give the
/// same bits. scratch holds ExactAttentionScratch(num_keys, head_dim) floats.
void ExactAttentionScalar(const ExactAttentionRow& row, float* scratch);
void ExactAttentionAvx2(const ExactAttentionRow& row, float* scratch);
void ExactAttentionAvx512(const ExactAttentionRow& row, float* scratch);

/// Runs every query row of an Attention call with `fn`, on the pool's threads (pool null or a
/// small call: on the caller's thread).
void RunExactAttention(ThreadPool* pool, void (*fn)(const ExactAttentionRow&, float*),
                       const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                       int32_t num_heads, float scale, float* out);

}  // namespace saola::kernels::cpu::internal
