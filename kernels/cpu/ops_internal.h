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
// elementwise_avx512.cc
void SiluMulAvx512(const float* gate, const float* up, int64_t count, float* out);

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

/// Floats of per-thread scratch an attention kernel needs (K/V tiles, transposed Q and output),
/// with kAttentionPad floats between the parts so that they do not sit a multiple of 4 KiB apart
/// (loads after stores to such addresses stall on 4K aliasing).
constexpr int64_t kAttentionPad = 16;
constexpr int64_t AttentionScratchFloats(int64_t head_dim) {
  return 4 * (static_cast<int64_t>(kAttentionTile) * head_dim + kAttentionPad);
}

/// One work item of Attention: query rows [row_begin, row_end) of one sequence against one kv
/// head, where row r is query r / group, query head r % group of the kv head's group, over KV
/// positions [kv_begin, kv_end) (a split of the causal range when the call splits long contexts
/// across threads).
struct AttentionRows {
  const float* q = nullptr;     // query 0, head 0 of the group: row r at
                                // q + (r / group) * q_stride + (r % group) * head_dim
  int64_t q_stride = 0;         // floats between consecutive queries (num_heads * head_dim)
  int32_t group = 1;            // query heads per kv head
  int32_t row_begin = 0;
  int32_t row_end = 0;
  int32_t first_pos = 0;        // position of query 0; query i sits at first_pos + i
  int32_t kv_begin = 0;
  int32_t kv_end = 0;           // exclusive; positions past a row's own are masked for it
  const uint16_t* k = nullptr;  // the kv head's first element: slot s at k + s * kv_stride
  const uint16_t* v = nullptr;
  int64_t kv_stride = 0;        // halves between consecutive slots (num_kv_heads * head_dim)
  const int32_t* block_table = nullptr;
  int32_t block_size = 16;
  int32_t head_dim = 0;
  float scale = 1.0f;
};

/// Online-softmax attention of one work item. Writes, for each row j = r - row_begin, the
/// running max m[j] of its scaled scores (-inf if it saw no key), l[j] = sum of exp(score - m[j]),
/// and the unnormalized acc[j * head_dim + d] = sum of exp(score - m[j]) * v[d]. scratch holds
/// AttentionScratchFloats(head_dim) floats.
using AttentionKernelFn = void (*)(const AttentionRows& rows, float* acc, float* m, float* l,
                                   float* scratch);

/// Rows kernels: one row at a time (a few rows interleaved), keys in vector lanes; any number of
/// rows. The SIMD ones need head_dim % 8 == 0 (AVX2) or % 16 == 0 (AVX-512).
void AttentionRowsScalar(const AttentionRows& rows, float* acc, float* m, float* l,
                         float* scratch);
void AttentionRowsAvx2(const AttentionRows& rows, float* acc, float* m, float* l,
                       float* scratch);
void AttentionRowsAvx512(const AttentionRows& rows, float* acc, float* m, float* l,
                         float* scratch);

/// Lanes kernels: up to kAttentionLanes* rows, one per vector lane (prefill), so scores,
/// softmax and P·V need no horizontal operations. Same head_dim conditions.
constexpr int kAttentionLanesAvx2 = 8;
constexpr int kAttentionLanesAvx512 = 16;
void AttentionLanesAvx2(const AttentionRows& rows, float* acc, float* m, float* l,
                        float* scratch);
void AttentionLanesAvx512(const AttentionRows& rows, float* acc, float* m, float* l,
                          float* scratch);

}  // namespace saola::kernels::cpu::internal
