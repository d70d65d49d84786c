// `--device cpu|cuda`: which kernels::Backend the worker's model runs on. The CUDA path exists
// only in builds with SAOLA_CUDA (SAOLA_HAVE_CUDA is defined then); elsewhere asking for it is a
// clear error rather than a missing flag.
#pragma once

#include <cstdint>
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

/// The backend of rank `rank` of a tensor-parallel group of `world_size`: MakeBackend on the CPU;
/// on CUDA, device `rank` (one GPU per rank; it becomes this process's current device), with
/// FAILED_PRECONDITION naming --tp-size when the runtime sees fewer devices than ranks.
absl::StatusOr<std::unique_ptr<kernels::Backend>> MakeRankBackend(Device device, int threads,
                                                                  int32_t rank,
                                                                  int32_t world_size);

}  // namespace saola::cli
