#include "kernels/cpu/matmul_kernels.h"

namespace saola::kernels::cpu::internal {

const IsaKernels& Avx2Kernels() {
  static const IsaKernels kernels;
  return kernels;
}

}  // namespace saola::kernels::cpu::internal
