#include "worker/parallel/nccl_collectives.h"

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace saola::parallel {
namespace {

using Clock = std::chrono::steady_clock;

std::string NcclError(ncclResult_t result, ncclComm_t comm) {
  std::string message = ncclGetErrorString(result);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (last != nullptr && last[0] != '\0') absl::StrAppend(&message, " (", last, ")");
  return message;
}

// Polls until `comm`'s last operation leaves ncclInProgress. Returns the final state: ncclSuccess,
// an error, or ncclInProgress when the deadline passed first.
ncclResult_t PollComm(ncclComm_t comm, Clock::time_point deadline) {
  while (true) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t result = ncclCommGetAsyncError(comm, &state);
    if (result != ncclSuccess) return result;
    if (state != ncclInProgress) return state;
    if (Clock::now() >= deadline) return ncclInProgress;
    std::this_thread::yield();
  }
}

class NcclCollectives final : public Collectives {
 public:
  NcclCollectives(int32_t rank, int32_t world_size, ncclComm_t comm, cudaStream_t stream,
                  Clock::duration timeout, float* scratch)
      : rank_(rank),
        world_size_(world_size),
        comm_(comm),
        stream_(stream),
        timeout_(timeout),
        scratch_(scratch) {}

  ~NcclCollectives() override {
    if (!aborted_) {
      // Flush whatever is in flight, but never wait longer than one collective may.
      ncclResult_t result = ncclCommFinalize(comm_);
      if (result == ncclSuccess || result == ncclInProgress) {
        result = PollComm(comm_, Clock::now() + timeout_);
      }
      if (result == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    cudaFree(scratch_);
  }

  int32_t rank() const override { return rank_; }
  int32_t world_size() const override { return world_size_; }

  absl::Status AllReduceSum(float* data, size_t count) override {
    return Run("all-reduce", [&] {
      return ncclAllReduce(data, data, count, ncclFloat, ncclSum, comm_, stream_);
    });
  }

  absl::Status Broadcast(void* data, size_t bytes, int32_t root) override {
    if (root < 0 || root >= world_size_) {
      return absl::InvalidArgumentError(absl::StrFormat("broadcast root %d out of range", root));
    }
    return Run("broadcast", [&] {
      return ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_);
    });
  }

  absl::Status AllGather(const float* send, size_t count, float* recv) override {
    return Run("all-gather",
               [&] { return ncclAllGather(send, recv, count, ncclFloat, comm_, stream_); });
  }

  absl::Status Barrier() override {
    // NCCL has no barrier; a one-element all-reduce completes only once every rank has joined.
    return Run("barrier", [&] {
      return ncclAllReduce(scratch_, scratch_, 1, ncclFloat, ncclSum, comm_, stream_);
    });
  }

 private:
  // Enqueues one collective and waits, within the timeout, until it has completed on the stream.
  absl::Status Run(const char* what, const std::function<ncclResult_t()>& enqueue);
  // Aborts the communicator (freeing peers stuck in the same collective) and remembers why.
  absl::Status Fail(absl::Status status);

  const int32_t rank_;
  const int32_t world_size_;
  const ncclComm_t comm_;
  const cudaStream_t stream_;
  const Clock::duration timeout_;
  float* const scratch_;
  uint64_t num_calls_ = 0;
  bool aborted_ = false;
  absl::Status broken_;
};

absl::Status NcclCollectives::Fail(absl::Status status) {
  if (!aborted_) {
    ncclCommAbort(comm_);
    aborted_ = true;
  }
  broken_ = status;
  return status;
}

absl::Status NcclCollectives::Run(const char* what,
                                  const std::function<ncclResult_t()>& enqueue) {
  if (!broken_.ok()) return broken_;
  ++num_calls_;
  const std::string call =
      absl::StrFormat("NCCL %s #%d on rank %d of %d", what, num_calls_, rank_, world_size_);
  const auto deadline = Clock::now() + timeout_;
  ncclResult_t result = enqueue();
  if (result == ncclInProgress) result = PollComm(comm_, deadline);
  if (result == ncclInProgress) {
    return Fail(absl::DeadlineExceededError(absl::StrCat(
        call, " could not be enqueued within ", absl::FormatDuration(absl::FromChrono(timeout_)),
        "; communicator aborted")));
  }
  if (result != ncclSuccess) {
    return Fail(absl::InternalError(absl::StrCat(call, " failed: ", NcclError(result, comm_))));
  }
  while (true) {
    cudaError_t done = cudaStreamQuery(stream_);
    if (done == cudaSuccess) return absl::OkStatus();
    if (done != cudaErrorNotReady) {
      return Fail(absl::InternalError(
          absl::StrCat(call, " failed on the stream: ", cudaGetErrorString(done))));
    }
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) {
      return Fail(absl::InternalError(absl::StrCat(call, " failed: ", NcclError(state, comm_))));
    }
    if (Clock::now() >= deadline) {
      return Fail(absl::DeadlineExceededError(absl::StrCat(
          call, " did not complete within ", absl::FormatDuration(absl::FromChrono(timeout_)),
          " (a peer is gone or hangs); communicator aborted")));
    }
    std::this_thread::yield();
  }
}

}  // namespace

absl::StatusOr<ncclUniqueId> CreateNcclUniqueId() {
  ncclUniqueId id;
  ncclResult_t result = ncclGetUniqueId(&id);
  if (result != ncclSuccess) {
    return absl::InternalError(absl::StrCat("ncclGetUniqueId: ", ncclGetErrorString(result)));
  }
  return id;
}

std::string NcclUniqueIdBytes(const ncclUniqueId& id) {
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<ncclUniqueId> NcclUniqueIdFromBytes(absl::string_view bytes) {
  ncclUniqueId id;
  if (bytes.size() != sizeof(id.internal)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "an NCCL unique id is %d bytes, got %d", sizeof(id.internal), bytes.size()));
  }
  std::memcpy(id.internal, bytes.data(), sizeof(id.internal));
  return id;
}

absl::StatusOr<std::unique_ptr<Collectives>> CreateNcclCollectives(int32_t rank,
                                                                   int32_t world_size,
                                                                   const ncclUniqueId& id,
                                                                   cudaStream_t stream,
                                                                   absl::Duration timeout) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank %d of world size %d is out of range", rank, world_size));
  }
  if (timeout <= absl::ZeroDuration()) return absl::InvalidArgumentError("timeout must be > 0");
  const auto chrono_timeout = absl::ToChronoNanoseconds(timeout);
  const auto deadline = Clock::now() + chrono_timeout;

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // init and collectives return ncclInProgress instead of blocking
  ncclComm_t comm = nullptr;
  ncclResult_t result =
      ncclCommInitRankConfig(&comm, world_size, const_cast<ncclUniqueId&>(id), rank, &config);
  if (result == ncclInProgress) result = PollComm(comm, deadline);
  if (result != ncclSuccess) {
    std::string why = NcclError(result, comm);
    if (comm != nullptr) ncclCommAbort(comm);
    if (result == ncclInProgress) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "NCCL communicator for rank %d of %d not ready within %s: the other ranks did not join",
          rank, world_size, absl::FormatDuration(timeout)));
    }
    return absl::InternalError(
        absl::StrFormat("ncclCommInitRankConfig (rank %d of %d): %s", rank, world_size, why));
  }
  float* scratch = nullptr;
  cudaError_t error = cudaMalloc(&scratch, sizeof(float));
  // Barrier all-reduces this float: zero it (cudaMalloc does not) so the barrier never reads
  // uninitialized memory (compute-sanitizer's initcheck flags it) nor sums NaNs. On `stream`: a
  // plain cudaMemset runs on the legacy stream, which a non-blocking stream does not wait for.
  if (error == cudaSuccess) error = cudaMemsetAsync(scratch, 0, sizeof(float), stream);
  if (error != cudaSuccess) {
    cudaFree(scratch);
    ncclCommAbort(comm);
    return absl::InternalError(absl::StrCat("cudaMalloc: ", cudaGetErrorString(error)));
  }
  return std::unique_ptr<Collectives>(
      new NcclCollectives(rank, world_size, comm, stream, chrono_timeout, scratch));
}

}  // namespace saola::parallel
