// The attention of one query row (one query, one head) exactly as llama.cpp's CPU backend computes
// it without flash attention (build_attn_mha: kq = mul_mat(K, Q), soft_max_ext, kqv =
// mul_mat(V^T, softmax)), so that our logits are bit-identical to llama.cpp's:
//
//   1. Q is rounded to f16 (ggml converts src1 to K's vec_dot_type).
//   2. score[p] = dot(K[p], Q) over head_dim, in one of two orders (llama.cpp picks by the number
//      of tokens n in the ubatch; we pick by the number of queries of the sequence in the call,
//      which is the same for the golden configuration and independent of other sequences, the
//      thread count and how the call is split):
//        n >= 2 (prefill): llamafile's tinyBLAS<16, __m512> on f16: one 16-lane accumulator,
//          acc[l] = fmaf(K[i + l], Q[i + l], acc[l]) for i = 0, 16, ..., then Reduce16.
//        n == 1 (decode): ggml_vec_dot_f16 (GgmlDotF16 in ggml_exact.h): 4 x 16 lanes over steps
//          of 64, lane tree, Reduce16, leftovers in double.
//   3. w[p] = score[p] * scale; max over the visible p; e[p] = GgmlExpf(w[p] - max); the sum is a
//      double, to which each block of 16 positions [16b, 16b + 16) adds (double)Reduce16 of its e
//      (masked positions count as 0); inv = (float)(1.0 / sum); P[p] = f16(e[p] * inv).
//   4. out[d] = dot over positions of V[p][d] and P[p] (V transposed, f16): prefill: one 16-lane
//      accumulator (lane p % 16, fmaf in p order), Reduce16; decode: ggml_vec_dot_f16 over the
//      padded KV length (a multiple of 256), i.e. 4 x 16 lanes (position p into accumulator
//      (p / 16) % 4, lane p % 16, fmaf in p order), the lane tree and Reduce16; the masked
//      positions contribute exact zeros and are skipped.
//
// Written on plain float arrays with explicit fmaf so that one template gives the same bits in the
// scalar, AVX2 and AVX-512 translation units (the vector ones let the compiler vectorize the
// 16-lane loops). No expression here may be of the form a * b + c: with -mfma GCC would contract
// it.
#pragma once

#include <cstdint>

#include "kernels/cpu/ggml_exact.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu::internal {

struct ExactAttentionRow {
  const float* q = nullptr;       // head_dim floats
  const uint16_t* k = nullptr;    // the kv head's element 0 at slot 0: slot s at k + s * kv_stride
  const uint16_t* v = nullptr;
  int64_t kv_stride = 0;
  const int32_t* block_table = nullptr;
  int32_t block_size = 16;
  int32_t head_dim = 0;
  int32_t num_keys = 0;           // visible positions [0, num_keys)
  float scale = 1.0f;
  bool batched = false;           // the sequence has >= 2 queries in this call
  float* out = nullptr;           // head_dim floats
};

/// Scratch floats ExactAttention needs for a row with `num_keys` keys.
static inline int64_t ExactAttentionScratch(int64_t num_keys, int64_t head_dim) {
  return 2 * ((num_keys + 15) / 16 * 16) + 2 * head_dim + 64 * head_dim + 64;
}

static inline void ExactAttention(const ExactAttentionRow& r, float* scratch) {
  const int32_t hd = r.head_dim;
  const int32_t nk = r.num_keys;
  const int64_t padded = (static_cast<int64_t>(nk) + 15) / 16 * 16;
  float* qf = scratch;                 // hd
  float* w = qf + hd;                  // padded
  float* p16 = w + padded;             // padded
  float* acc = p16 + padded;           // 64 * hd (lane-major: acc[lane * hd + d])
  uint16_t* qh = reinterpret_cast<uint16_t*>(acc + 64 * static_cast<int64_t>(hd));  // hd halves

  for (int32_t d = 0; d < hd; ++d) {
    qh[d] = Fp32ToFp16(r.q[d]);
    qf[d] = Fp16ToFp32(qh[d]);
  }
  auto slot_of = [&](int32_t p) {
    return static_cast<int64_t>(r.block_table[p / r.block_size]) * r.block_size +
           p % r.block_size;
  };
  const bool kq_batched = r.batched && hd % 16 == 0;
  const bool kqv_batched = r.batched && hd % 4 == 0;

  // Scores.
  float max = -INFINITY;
  for (int32_t p = 0; p < nk; ++p) {
    const uint16_t* kp = r.k + slot_of(p) * r.kv_stride;
    float s;
    if (kq_batched) {
      float a[16] = {};
      for (int32_t i = 0; i < hd; i += 16) {
        for (int l = 0; l < 16; ++l) a[l] = __builtin_fmaf(Fp16ToFp32(kp[i + l]), qf[i + l], a[l]);
      }
      s = Reduce16(a);
    } else {
      s = GgmlDotF16(kp, qh, hd);
    }
    w[p] = s * r.scale;
    max = w[p] > max ? w[p] : max;
  }
  for (int64_t p = nk; p < padded; ++p) w[p] = 0.0f;

  // Softmax.
  double sum = 0.0;
  for (int64_t b = 0; b < padded; b += 16) {
    float e[16];
    for (int l = 0; l < 16; ++l) {
      e[l] = b + l < nk ? GgmlExpf(w[b + l] - max) : 0.0f;
      w[b + l] = e[l];
    }
    sum += static_cast<double>(Reduce16(e));
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int32_t p = 0; p < nk; ++p) p16[p] = Fp16ToFp32(Fp32ToFp16(w[p] * inv));

  // P · V.
  const int lanes = kqv_batched ? 16 : 64;
  for (int64_t i = 0; i < static_cast<int64_t>(lanes) * hd; ++i) acc[i] = 0.0f;
  for (int32_t p = 0; p < nk; ++p) {
    const uint16_t* vp = r.v + slot_of(p) * r.kv_stride;
    float* a = acc + static_cast<int64_t>(p % lanes) * hd;
    const float pp = p16[p];
    for (int32_t d = 0; d < hd; ++d) a[d] = __builtin_fmaf(Fp16ToFp32(vp[d]), pp, a[d]);
  }
  for (int32_t d = 0; d < hd; ++d) {
    float t[16];
    if (kqv_batched) {
      for (int l = 0; l < 16; ++l) t[l] = acc[static_cast<int64_t>(l) * hd + d];
    } else {
      // Accumulator j (0..3), lane l at acc[(16 j + l) * hd + d]: s0 += s2, s1 += s3, s0 += s1.
      for (int l = 0; l < 16; ++l) {
        const float s0 = acc[static_cast<int64_t>(l) * hd + d] + acc[static_cast<int64_t>(32 + l) * hd + d];
        const float s1 = acc[static_cast<int64_t>(16 + l) * hd + d] + acc[static_cast<int64_t>(48 + l) * hd + d];
        t[l] = s0 + s1;
      }
    }
    r.out[d] = Reduce16(t);
  }
}

}  // namespace saola::kernels::cpu::internal
