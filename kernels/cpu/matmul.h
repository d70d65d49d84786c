// Matrix products against (possibly quantized) weights, and embedding lookups.
//
// Decode (n small) takes a GEMV path that streams each weight row once; prefill (n large) takes a
// GEMM path that tiles rows × tokens so each weight block is reused across tokens. Activations are
// quantized once per call (Q8_1 for Q4_1 weights, Q8_0 for Q4_0 and Q8_0 weights, as llama.cpp
// does) and dotted with integer instructions (AVX-512 VNNI / AVX2), picked at run time; every
// path has a scalar reference in matmul_ref.cc that the tests compare against.
//
// Weights honour Weight::row_stride_bytes, so a tensor-parallel column slice of a row-split
// matrix (a contiguous run of blocks inside each row) is used without copying.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"

namespace saola::kernels::cpu {

/// True if MatMul, MatMulShared and Embed handle weights of `type` (F32, F16, BF16, Q8_0, Q4_0,
/// Q4_1). The model loader checks this up front: the entry points below return void and abort
/// (SAOLA_CHECK) on an unsupported type. Quantized types also need cols % 32 == 0.
bool MatMulSupports(DType type);

/// y[n, w.rows] = x[n, w.cols] · wᵀ. `scratch` holds the quantized activations between calls.
void MatMul(ThreadPool& pool, const Weight& w, const float* x, int64_t n, float* y,
            std::vector<uint8_t>& scratch);

/// Products of several weights with the same x (all with the same cols), in one parallel region.
void MatMulShared(ThreadPool& pool, std::span<const Weight> ws, const float* x, int64_t n,
                  std::span<float* const> ys, std::vector<uint8_t>& scratch);

/// out[i, :] = dequantized row ids[i] of table.
void Embed(ThreadPool& pool, const Weight& table, const int32_t* ids, int64_t n, float* out);

/// Scalar reference of MatMul (dequantize-then-dot semantics of the optimized path, including
/// activation quantization), for tests.
void MatMulReference(const Weight& w, const float* x, int64_t n, float* y);

}  // namespace saola::kernels::cpu
