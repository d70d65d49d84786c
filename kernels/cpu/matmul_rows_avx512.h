// Shared pieces of the "rows in lanes" integer matmul kernels: matmul_rows_avx512.cc (AVX-512
// VNNI) and matmul_amx.cc (AMX-INT8). Include only from files compiled with AVX-512 flags.
//
// Both kernels give lane r of a zmm to weight row r of a 16-row tile, compute each 32-element
// block's exact integer dot per (row, token), and fold it into float in the same canonical order:
//
//   acc = 0;  for b in blocks:  acc = fma(float(isum_b), d_w[b] * d_x[b], acc)
//                               Q4_1 also: acc = fma(m_w[b], s_x[b], acc)
//
// Integers are exact whatever instruction computed them (vpdpbusd, tdpbssd, ...), so every path
// and every batch size n gives bit-identical results for a (row, token). That matters beyond
// neatness: 8-bit activation quantization is discontinuous, so a 1e-7 difference between the
// prefill and the decode path can flip a rounding and grow through 30 layers into visibly
// different logits; the model's tests require chunked prefill == one step == token by token.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace saola::kernels::cpu::internal::rows {

constexpr int kRows = 16;  // rows per zmm

enum class QType { kQ8_0, kQ4_0, kQ4_1 };

template <QType Q>
constexpr int kBlockBytes = Q == QType::kQ8_0 ? 34 : (Q == QType::kQ4_0 ? 18 : 20);

template <QType Q>
constexpr int kQsOffset = Q == QType::kQ8_0 ? 2 : (Q == QType::kQ4_0 ? 2 : 4);

// Four 128-bit pieces of 16 rows, one per zmm lane: z[i] lane L = piece of row i + 4 L; after the
// 4 x 4 dword transpose inside each lane, out[j] holds dword j of rows 0..15 in order.
inline void Transpose4x4Lanes(const __m512i z[4], __m512i out[4]) {
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Loads 16 bytes at byte offset `off` of the 16 rows into the lane order above.
inline void LoadPieces(const uint8_t* const rows[kRows], int64_t off, __m512i z[4]) {
  for (int i = 0; i < 4; ++i) {
    __m512i v = _mm512_castsi128_si512(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + off)));
    v = _mm512_inserti32x4(
        v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 4] + off)), 1);
    v = _mm512_inserti32x4(
        v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 8] + off)), 2);
    v = _mm512_inserti32x4(
        v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 12] + off)), 3);
    z[i] = v;
  }
}

// Block `b` of 16 rows in the VNNI layout: out[k4] lane r = elements 4 k4 .. 4 k4 + 3 of row r.
// kUnsigned (for vpdpbusd, u8 x s8): Q4 nibbles as is, Q8_0 flipped by xor 0x80 (the dot then
// needs -8 / -128 * sum(q_x) added). Otherwise (for tdpbssd / tdpbsud): Q4_0 as nibble - 8,
// Q8_0 as is, Q4_1 nibbles.
template <QType Q, bool kUnsigned>
inline void UnpackBlock(const uint8_t* const rows[kRows], int64_t b, __m512i out[8]) {
  const int64_t off = b * kBlockBytes<Q> + kQsOffset<Q>;
  __m512i z[4];
  if constexpr (Q == QType::kQ8_0) {
    for (int part = 0; part < 2; ++part) {
      LoadPieces(rows, off + part * 16, z);
      Transpose4x4Lanes(z, out + part * 4);
    }
    if constexpr (kUnsigned) {
      const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
      for (int k = 0; k < 8; ++k) out[k] = _mm512_xor_si512(out[k], flip);
    }
  } else {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512i o[4];
    LoadPieces(rows, off, z);
    Transpose4x4Lanes(z, o);
    for (int j = 0; j < 4; ++j) {
      out[j] = _mm512_and_si512(o[j], low4);
      out[4 + j] = _mm512_and_si512(_mm512_srli_epi16(o[j], 4), low4);
    }
    if constexpr (Q == QType::kQ4_0 && !kUnsigned) {
      const __m512i eight = _mm512_set1_epi8(8);
      for (int k = 0; k < 8; ++k) out[k] = _mm512_sub_epi8(out[k], eight);
    }
  }
}

// Byte offsets of 16 rows from the first (for the scale gathers), and the mask of real rows.
struct RowGather {
  __m512i offsets;
  __mmask16 valid;
};

inline RowGather MakeRowGather(size_t row_stride, int count) {
  alignas(64) int32_t offsets[kRows];
  for (int i = 0; i < kRows; ++i) offsets[i] = static_cast<int32_t>(i * row_stride);
  RowGather g;
  g.offsets = _mm512_load_si512(offsets);
  g.valid = static_cast<__mmask16>(count >= kRows ? 0xffff : (1u << count) - 1);
  return g;
}

// Block b's d_w (and Q4_1's m_w) of 16 rows starting at row0: one dword gather at the block start
// reads (d, m) (or d and two qs bytes). Rows outside g.valid get 0.
template <QType Q>
inline void GatherScales(const uint8_t* row0, int64_t b, const RowGather& g, __m512* d,
                         __m512* m) {
  const __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), g.valid, g.offsets,
                                                  row0 + b * kBlockBytes<Q>, 1);
  *d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
  if constexpr (Q == QType::kQ4_1) {
    *m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16)));
  } else {
    *m = _mm512_setzero_ps();
  }
}

// The canonical fold of one block for one token: see the file comment.
template <QType Q>
inline __m512 Fold(__m512 acc, __m512i isum, __m512 dw, __m512 mw, float dx, float sx) {
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), acc);
  if constexpr (Q == QType::kQ4_1) acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx), acc);
  return acc;
}

}  // namespace saola::kernels::cpu::internal::rows
