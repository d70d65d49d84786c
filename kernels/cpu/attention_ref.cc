// AttentionReference: the scalar, single-threaded instantiation of the exact row computation of
// kernels/cpu/attention_exact.h (llama.cpp's arithmetic), the truth the other paths are tested
// against bit for bit.
#include "kernels/cpu/attention_exact.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu {
namespace internal {

void ExactAttentionScalar(const ExactAttentionRow& row, float* scratch) {
  ExactAttention(row, scratch);
}

}  // namespace internal

void AttentionReference(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                        int32_t num_heads, float scale, float* out) {
  internal::RunExactAttention(nullptr, internal::ExactAttentionScalar, q, kv, seqs, num_heads,
                              scale, out);
}

}  // namespace saola::kernels::cpu
