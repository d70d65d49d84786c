// The naive attention the tiled kernels are tested against: for every query row, all visible
// scores at once, an exact softmax, and the weighted sum of V, all in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {

void AttentionReference(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                        int32_t num_heads, float scale, float* out) {
  const int32_t hd = kv.head_dim;
  const int32_t group = num_heads / kv.num_kv_heads;
  std::vector<double> scores;
  std::vector<double> acc(hd);
  for (const AttentionSeq& s : seqs) {
    for (int32_t i = 0; i < s.num_q; ++i) {
      const int32_t pos = s.context_len - s.num_q + i;
      for (int32_t h = 0; h < num_heads; ++h) {
        const int32_t kvh = h / group;
        const int64_t row = static_cast<int64_t>(s.q_begin + i) * num_heads + h;
        const float* qr = q + row * hd;
        scores.assign(pos + 1, 0.0);
        double max_score = -INFINITY;
        for (int32_t p = 0; p <= pos; ++p) {
          const int64_t slot =
              static_cast<int64_t>(s.block_table[p / kv.block_size]) * kv.block_size +
              p % kv.block_size;
          const uint16_t* kr = kv.k + (slot * kv.num_kv_heads + kvh) * hd;
          double dot = 0.0;
          for (int32_t d = 0; d < hd; ++d) dot += static_cast<double>(qr[d]) * Fp16ToFp32(kr[d]);
          scores[p] = dot * scale;
          max_score = std::max(max_score, scores[p]);
        }
        double sum = 0.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int32_t p = 0; p <= pos; ++p) {
          const double w = std::exp(scores[p] - max_score);
          sum += w;
          const int64_t slot =
              static_cast<int64_t>(s.block_table[p / kv.block_size]) * kv.block_size +
              p % kv.block_size;
          const uint16_t* vr = kv.v + (slot * kv.num_kv_heads + kvh) * hd;
          for (int32_t d = 0; d < hd; ++d) acc[d] += w * Fp16ToFp32(vr[d]);
        }
        for (int32_t d = 0; d < hd; ++d) out[row * hd + d] = static_cast<float>(acc[d] / sum);
      }
    }
  }
}

}  // namespace saola::kernels::cpu
