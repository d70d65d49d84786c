// Shared pieces of the "rows in lanes" integer matmul kernels (matmul_rows_avx512.cc). Include
// only from files compiled with AVX-512 flags.
//
// A tile is 16 weight rows, one per 32-bit lane of a zmm. For each 32-element block the 16 rows'
// bytes are transposed in registers into the VNNI layout: vector k, lane r = elements
// 4k .. 4k + 3 of row r (for Q4, element e < 16 is the low nibble of qs[e], e >= 16 the high
// nibble of qs[e - 16]). One vpdpbusd of vector k against activation dword k broadcast gives, for
// 16 rows at once, exactly the integer that lane k of ggml's 8-lane block dot holds
// (ggml_vec_dot_q4_1_q8_1 and friends, see matmul_ref.cc). Keeping one float accumulator per k
// reproduces llama.cpp's arithmetic bit for bit:
//
//   acc[k] = fmaf(d_w[b] * d_x[b], (float)lane_dot_k, acc[k])      for each block b, k = 0..7
//   Q4_1:  summs = fmaf(m_w[b], s_x[b], summs)
//   result = ((acc4 + acc0) + (acc6 + acc2)) + ((acc5 + acc1) + (acc7 + acc3))  [+ summs]
//
// Every path (scalar, AVX2, AVX-512) and every batch size gives the same bits for a (row, token),
// which also matters beyond matching llama.cpp: 8-bit activation quantization is discontinuous,
// so a 1e-7 difference between the prefill and the decode path can flip a rounding and grow
// through 30 layers into visibly different logits.
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
constexpr int kQsOffset = Q == QType::kQ4_1 ? 4 : 2;

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

// Block b of 16 rows in the VNNI layout, unsigned for vpdpbusd (u8 x s8): Q4 nibbles as is (Q4_0's
// "- 8" is added back through the activation lane sums), Q8_0 flipped by xor 0x80 (likewise
// "+ 128").
template <QType Q>
inline void UnpackBlock(const uint8_t* const rows[kRows], int64_t b, __m512i out[8]) {
  const int64_t off = b * kBlockBytes<Q> + kQsOffset<Q>;
  __m512i z[4];
  if constexpr (Q == QType::kQ8_0) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int part = 0; part < 2; ++part) {
      LoadPieces(rows, off + part * 16, z);
      Transpose4x4Lanes(z, out + part * 4);
    }
    for (int k = 0; k < 8; ++k) out[k] = _mm512_xor_si512(out[k], flip);
  } else {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512i o[4];
    LoadPieces(rows, off, z);
    Transpose4x4Lanes(z, o);
    for (int j = 0; j < 4; ++j) {
      out[j] = _mm512_and_si512(o[j], low4);
      out[4 + j] = _mm512_and_si512(_mm512_srli_epi16(o[j], 4), low4);
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

// ggml's hsum_float_8 of the 8 lane accumulators, for 16 rows at once.
inline __m512 Hsum8(const __m512 acc[8]) {
  const __m512 a0 = _mm512_add_ps(acc[4], acc[0]);
  const __m512 a1 = _mm512_add_ps(acc[5], acc[1]);
  const __m512 a2 = _mm512_add_ps(acc[6], acc[2]);
  const __m512 a3 = _mm512_add_ps(acc[7], acc[3]);
  return _mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3));
}

}  // namespace saola::kernels::cpu::internal::rows
