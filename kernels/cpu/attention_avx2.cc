// The exact attention row (kernels/cpu/attention_exact.h) compiled for Avx2: the same bits as the
// scalar reference, with the 16-lane loops vectorized by the compiler.
#include "kernels/cpu/attention_exact.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu::internal {

void ExactAttentionAvx2(const ExactAttentionRow& row, float* scratch) {
  ExactAttention(row, scratch);
}

}  // namespace saola::kernels::cpu::internal
