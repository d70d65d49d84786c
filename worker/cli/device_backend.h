// `--device cpu|cuda`: which kernels::Backend the worker's model runs on. The CUDA path exists
// only in builds with SAOLA_CUDA (SAOLA_HAVE_CUDA is defined then); elsewhere asking for it is a
// clear error rather than a missing flag.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "kernels/backend.h"

namespace saola::cli {

enum class Device { kCpu, kCuda };

/// Reads --device (cpu or cuda; cpu when absent). INVALID_ARGUMENT for anything else.
absl::StatusOr<Device> ParseDevice(const Flags& flags);

/// The backend for `device`: the CPU backend with `threads` threads, or CUDA device 0.
/// FAILED_PRECONDITION "--device cuda: built without CUDA" in a build without SAOLA_CUDA, and
/// "--device cuda: no CUDA device" when the runtime sees none.
absl::StatusOr<std::unique_ptr<kernels::Backend>> MakeBackend(Device device, int threads);

}  // namespace saola::cli
