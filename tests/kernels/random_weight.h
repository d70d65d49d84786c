// Random GGUF-layout weights for kernel tests (CPU and CUDA), the same bytes for the same seed.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace saola::kernels {

/// A host weight and the bytes it points into.
struct RandomWeight {
  std::vector<uint8_t> storage;
  Weight w;
};

/// Random contents of `type`; "strided" makes it a column slice of wider rows (blocks before
/// and after it in each row), as tensor parallelism does.
RandomWeight MakeWeight(DType type, int64_t rows, int64_t cols, bool strided, uint32_t seed);

}  // namespace saola::kernels
