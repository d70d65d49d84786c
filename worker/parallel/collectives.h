// Collective operations among the ranks of one tensor-parallel shard group, behind one small
// interface with two backends: a host backend for CPUs (shared memory between the ranks'
// processes; host_collectives.h) and NCCL for GPUs (nccl_collectives.h, built with SAOLA_CUDA).
//
// Every call is collective: all ranks of the group make the same calls in the same order with
// the same sizes. A call that cannot complete because a peer died or hangs fails within the
// group's timeout (DEADLINE_EXCEEDED, or UNAVAILABLE when a peer is known to be gone) instead of
// blocking forever; after a failure the group is broken and every later call fails at once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "worker/model/shard.h"

namespace saola::parallel {

class Collectives : public model::Communicator {
 public:
  ~Collectives() override = default;

  virtual int32_t rank() const = 0;
  virtual int32_t world_size() const = 0;

  /// data[0, count) becomes the element-wise sum over all ranks (model::Communicator).
  absl::Status AllReduceSum(float* data, size_t count) override = 0;
  /// data[0, bytes) of rank `root` is copied to every rank's data.
  virtual absl::Status Broadcast(void* data, size_t bytes, int32_t root) = 0;
  /// recv[r * count, (r + 1) * count) becomes rank r's send[0, count), on every rank.
  virtual absl::Status AllGather(const float* send, size_t count, float* recv) = 0;
  /// Returns once every rank has called it.
  virtual absl::Status Barrier() = 0;
};

}  // namespace saola::parallel
