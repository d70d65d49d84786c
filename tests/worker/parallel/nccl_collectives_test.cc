// The NCCL backend on real GPUs: one rank on one GPU (every collective is the identity), two
// ranks as two threads on two GPUs when the machine has them, and the join timeout. Label `gpu`.
#include "worker/parallel/nccl_collectives.h"

#include <cuda_runtime_api.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace saola::parallel {
namespace {

int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

// Device memory holding `values`, freed on destruction.
class DeviceFloats {
 public:
  explicit DeviceFloats(const std::vector<float>& values) : size_(values.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, std::max<size_t>(1, size_) * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr_, values.data(), size_ * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceFloats() { cudaFree(ptr_); }
  float* get() { return ptr_; }
  std::vector<float> ToHost() const {
    std::vector<float> out(size_);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, size_ * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

 private:
  float* ptr_ = nullptr;
  size_t size_;
};

TEST(NcclUniqueIdTest, RoundTripsThroughBytes) {
  ncclUniqueId id;
  for (size_t i = 0; i < sizeof(id.internal); ++i) id.internal[i] = static_cast<char>(i * 3);
  std::string bytes = NcclUniqueIdBytes(id);
  ASSERT_EQ(bytes.size(), size_t{NCCL_UNIQUE_ID_BYTES});
  auto parsed = NcclUniqueIdFromBytes(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(std::string(parsed->internal, sizeof(parsed->internal)), bytes);
  EXPECT_EQ(NcclUniqueIdFromBytes("short").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclCollectivesTest, OneRankIsTheIdentity) {
  if (DeviceCount() < 1) GTEST_SKIP() << "no CUDA device";
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  auto id = CreateNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  auto comm = CreateNcclCollectives(0, 1, *id, stream, absl::Seconds(30));
  ASSERT_TRUE(comm.ok()) << comm.status();
  EXPECT_EQ((*comm)->world_size(), 1);

  std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f};
  DeviceFloats data(values);
  ASSERT_TRUE((*comm)->AllReduceSum(data.get(), values.size()).ok());
  EXPECT_EQ(data.ToHost(), values);

  ASSERT_TRUE((*comm)->Broadcast(data.get(), values.size() * sizeof(float), 0).ok());
  EXPECT_EQ(data.ToHost(), values);

  DeviceFloats gathered(std::vector<float>(values.size(), -1.0f));
  ASSERT_TRUE((*comm)->AllGather(data.get(), values.size(), gathered.get()).ok());
  EXPECT_EQ(gathered.ToHost(), values);

  EXPECT_TRUE((*comm)->Barrier().ok());
  EXPECT_EQ((*comm)->Broadcast(data.get(), 4, 1).code(), absl::StatusCode::kInvalidArgument);
  comm->reset();
  cudaStreamDestroy(stream);
}

TEST(NcclCollectivesTest, TwoRanksOnTwoGpus) {
  if (DeviceCount() < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << DeviceCount();
  auto id = CreateNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<std::string> errors(2);
  std::vector<std::vector<float>> sums(2), gathered(2), broadcast(2);
  auto rank_main = [&](int rank) {
    cudaSetDevice(rank);
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    {
      auto comm = CreateNcclCollectives(rank, 2, *id, stream, absl::Seconds(60));
      if (!comm.ok()) {
        errors[rank] = comm.status().ToString();
        return;
      }
      std::vector<float> mine = {1.0f + rank, 10.0f * rank, -3.0f};
      DeviceFloats data(mine);
      absl::Status status = (*comm)->AllReduceSum(data.get(), mine.size());
      sums[rank] = data.ToHost();
      DeviceFloats send(mine), recv(std::vector<float>(6, 0.0f));
      if (status.ok()) status = (*comm)->AllGather(send.get(), 3, recv.get());
      gathered[rank] = recv.ToHost();
      DeviceFloats root_data(rank == 1 ? std::vector<float>{7, 8, 9} : std::vector<float>{0, 0, 0});
      if (status.ok()) status = (*comm)->Broadcast(root_data.get(), 3 * sizeof(float), 1);
      broadcast[rank] = root_data.ToHost();
      if (status.ok()) status = (*comm)->Barrier();
      if (!status.ok()) errors[rank] = status.ToString();
    }
    cudaStreamDestroy(stream);
  };
  std::thread rank1(rank_main, 1);
  rank_main(0);
  rank1.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    EXPECT_EQ(sums[r], (std::vector<float>{3.0f, 10.0f, -6.0f})) << "rank " << r;
    EXPECT_EQ(gathered[r], (std::vector<float>{1, 0, -3, 2, 10, -3})) << "rank " << r;
    EXPECT_EQ(broadcast[r], (std::vector<float>{7, 8, 9})) << "rank " << r;
  }
}

TEST(NcclCollectivesTest, JoinTimesOutWhenThePeerNeverComes) {
  if (DeviceCount() < 1) GTEST_SKIP() << "no CUDA device";
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  auto id = CreateNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  auto start = std::chrono::steady_clock::now();
  auto comm = CreateNcclCollectives(0, 2, *id, stream, absl::Seconds(2));
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded) << comm.status();
  EXPECT_LT(seconds, 10.0);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace saola::parallel
