// Row kernels behind the entry points of kernels/cpu/ops.h, one set per instruction set. The
// entry points (norm.cc, elementwise.cc, rope.cc, attention.cc) pick a set with ActiveIsa() and
// split rows across threads; these functions do one thread's share and nothing else.
#pragma once

#include <cstdint>

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
void SiluMulAvx2(const float* gate, const float* up, int64_t count, float* out);

// ---- rope_avx2.cc ------------------------------------------------------------------------------

/// Rotates the first 2 * half dims of each of num_heads heads of one token row by the angles
/// whose cosines and sines are cos[0, half) and sin[0, half).
void RopeNormRowAvx2(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                     const float* cos, const float* sin);
void RopeNeoxRowAvx2(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                     const float* cos, const float* sin);

// ---- attention ---------------------------------------------------------------------------------

/// KV tokens per tile: one tile's K and V are converted to float once and reused by every query
/// row of the work item. Tiles never cross a cache block.
constexpr int kAttentionTile = 16;

/// One work item of Attention: `num_queries` consecutive queries of one sequence against one kv
/// head, i.e. num_queries * group query rows (row r = query i * group + head g of the kv head's
/// group), over KV positions [kv_begin, kv_end) (a split of the causal range when the call splits
/// long contexts across threads).
struct AttentionRows {
  const float* q = nullptr;     // row (i, g) at q + i * q_stride + g * head_dim
  int64_t q_stride = 0;         // floats between consecutive queries (num_heads * head_dim)
  int32_t num_queries = 0;
  int32_t group = 1;            // query heads per kv head
  int32_t first_pos = 0;        // position of query 0; query i sits at first_pos + i
  int32_t kv_begin = 0;
  int32_t kv_end = 0;           // exclusive; positions past a query's own are masked for it
  const uint16_t* k = nullptr;  // the kv head's first element: slot s at k + s * kv_stride
  const uint16_t* v = nullptr;
  int64_t kv_stride = 0;        // halves between consecutive slots (num_kv_heads * head_dim)
  const int32_t* block_table = nullptr;
  int32_t block_size = 16;
  int32_t head_dim = 0;
  float scale = 1.0f;
};

/// Online-softmax attention of one work item. Writes, for each row r, the running max m[r] of its
/// scaled scores (-inf if it saw no key), l[r] = sum of exp(score - m[r]), and the unnormalized
/// acc[r * head_dim + d] = sum of exp(score - m[r]) * v[d]. scratch holds
/// 2 * kAttentionTile * head_dim floats.
using AttentionKernelFn = void (*)(const AttentionRows& rows, float* acc, float* m, float* l,
                                   float* scratch);

void AttentionKernelScalar(const AttentionRows& rows, float* acc, float* m, float* l,
                           float* scratch);
/// head_dim % 8 == 0.
void AttentionKernelAvx2(const AttentionRows& rows, float* acc, float* m, float* l,
                         float* scratch);
/// head_dim % 16 == 0.
void AttentionKernelAvx512(const AttentionRows& rows, float* acc, float* m, float* l,
                           float* scratch);

}  // namespace saola::kernels::cpu::internal
