// The communicator a tensor-parallel rank's model all-reduces with, by device.
//
// On the CPU the model uses the shard group's host collectives (shared memory between the ranks'
// processes), which also carry the steps. On CUDA the activations the model all-reduces are
// device memory, so each rank's model gets NCCL collectives on its backend's stream instead:
// rank 0 makes the NCCL unique id (MakeDeviceGroupSetup), the shard group hands its bytes to the
// other ranks as the group's setup message (shard_group.h), and every rank joins with them
// (JoinDeviceCollectives). The steps and keep-alives stay on the host collectives: they carry
// host data.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kernels/backend.h"
#include "worker/cli/device_backend.h"
#include "worker/model/shard.h"
#include "worker/parallel/collectives.h"

namespace saola::cli {

/// The most bytes a rank accepts as the group's setup message (an NCCL id is 128).
inline constexpr size_t kMaxDeviceGroupSetupBytes = 4096;

/// Rank 0's setup message for a group on `device`: empty on the CPU (no message is sent); on
/// CUDA a fresh NCCL unique id's bytes. Call after the rank's backend is made (its GPU is then
/// the current device). FAILED_PRECONDITION in a build without CUDA.
absl::StatusOr<std::string> MakeDeviceGroupSetup(Device device);

/// The communicator for the model of rank `shard.rank` on `backend`: null on the CPU (the model
/// uses the host collectives); on CUDA the NCCL collectives joined with the id in `setup`, on
/// `backend`'s stream, waiting up to `timeout` for the other ranks. `backend` must come from
/// MakeRankBackend with the same device and rank, and outlive the result.
absl::StatusOr<std::unique_ptr<parallel::Collectives>> JoinDeviceCollectives(
    Device device, kernels::Backend& backend, model::ShardSpec shard, absl::string_view setup,
    absl::Duration timeout);

}  // namespace saola::cli
