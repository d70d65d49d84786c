// The NCCL backend of Collectives, for shard groups whose ranks each drive one GPU. Built only
// with SAOLA_CUDA. Every pointer passed to a collective is a device pointer.
//
// Setup: rank 0 makes a unique id (CreateNcclUniqueId), serializes it (NcclUniqueIdBytes) and the
// shard-group runtime hands those bytes to the other ranks (e.g. over the host backend's
// Broadcast); every rank then calls CreateNcclCollectives with the same id, on the device it has
// selected with cudaSetDevice and a stream of that device.
//
// Timeouts: the communicator is non-blocking (ncclConfig_t::blocking = 0), so neither creating it
// nor enqueueing a collective can block inside NCCL. Each call polls ncclCommGetAsyncError (and,
// once enqueued, cudaStreamQuery) until the work is done or the timeout passes; on a timeout or
// an asynchronous error the communicator is aborted (ncclCommAbort), which frees any peer stuck
// in the same collective, and every later call fails at once. The price of bounding every call
// is that each collective waits for its stream; a caller that batches work on the stream before
// the collective pays that wait once per collective, not per kernel.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "worker/parallel/collectives.h"

namespace saola::parallel {

/// A fresh id for a new communicator; called on rank 0 only.
absl::StatusOr<ncclUniqueId> CreateNcclUniqueId();
/// The id's bytes (NCCL_UNIQUE_ID_BYTES), to send to the other ranks.
std::string NcclUniqueIdBytes(const ncclUniqueId& id);
/// Parses bytes from NcclUniqueIdBytes; INVALID_ARGUMENT when the size is wrong.
absl::StatusOr<ncclUniqueId> NcclUniqueIdFromBytes(absl::string_view bytes);

/// Joins the communicator `id` as `rank` of `world_size` on the current CUDA device; collectives
/// are enqueued on `stream`. Fails with DEADLINE_EXCEEDED when the other ranks do not join within
/// `timeout` (the half-made communicator is aborted), INTERNAL for NCCL or CUDA errors.
absl::StatusOr<std::unique_ptr<Collectives>> CreateNcclCollectives(int32_t rank,
                                                                   int32_t world_size,
                                                                   const ncclUniqueId& id,
                                                                   cudaStream_t stream,
                                                                   absl::Duration timeout);

}  // namespace saola::parallel
