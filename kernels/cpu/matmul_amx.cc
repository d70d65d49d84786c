#include "kernels/cpu/matmul_kernels.h"

namespace saola::kernels::cpu::internal {

MatMulKernel AmxKernel(DType type) { return nullptr; }

}  // namespace saola::kernels::cpu::internal
