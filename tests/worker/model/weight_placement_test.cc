// The model under a device backend's memory contract, checked on the CPU: a backend whose ops are
// the CPU's but which, like the CUDA backend, places every weight in its own packed memory, says
// its memory is not host-addressable and hands logits back through CopyToHost. The logits must be
// bit-identical to the plain CPU backend's (placement copies bytes; the gather of logits rows is a
// row copy), for the whole model and for a tensor-parallel slice whose column-split weights are
// strided views that placement packs.
#include "worker/model/weight_placement.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/common/reference_model.h"
#include "tests/kernels/cpu_delegating_backend.h"
#include "worker/model/gguf.h"
#include "worker/model/llama_model.h"

namespace saola::model {
namespace {

constexpr int32_t kBlockSize = 16;

// CPU ops behind the device-style placement hooks. Placed weights are packed copies
// (row_stride_bytes == RowBytes), as CudaBackend::UploadWeight makes them.
class PackingBackend final : public test::CpuDelegatingBackend {
 public:
  explicit PackingBackend(int threads) : CpuDelegatingBackend(threads) {}

  int num_placed() const { return num_placed_; }
  int num_copies_to_host() const { return num_copies_to_host_; }

  bool HostAddressable() const override { return false; }
  absl::StatusOr<kernels::PlacedWeight> PlaceWeight(const kernels::Weight& host) override {
    const size_t row_bytes = kernels::RowBytes(host.type, host.cols);
    kernels::PlacedWeight out;
    out.memory = Allocate(row_bytes * host.rows);
    for (int64_t r = 0; r < host.rows; ++r) {
      std::memcpy(static_cast<uint8_t*>(out.memory.get()) + r * row_bytes,
                  static_cast<const uint8_t*>(host.data) + r * host.row_stride_bytes, row_bytes);
    }
    out.weight = host;
    out.weight.data = out.memory.get();
    out.weight.row_stride_bytes = row_bytes;
    ++num_placed_;
    return out;
  }
  absl::StatusOr<kernels::Buffer> PlaceFloats(const float* host, size_t count) override {
    kernels::Buffer b = Allocate(count * sizeof(float));
    std::memcpy(b.get(), host, count * sizeof(float));
    ++num_placed_;
    return b;
  }
  absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    ++num_copies_to_host_;
    std::memcpy(host_dst, src, bytes);
    return absl::OkStatus();
  }

 private:
  int num_placed_ = 0;
  int num_copies_to_host_ = 0;
};

// Sums nothing: each "rank" of these tests runs alone, on both backends alike.
class LoneRank final : public Communicator {
 public:
  absl::Status AllReduceSum(float*, size_t) override { return absl::OkStatus(); }
};

class WeightPlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SAOLA_REQUIRE_REFERENCE_MODEL();
    auto file = GgufFile::Open(test::ReferenceModelPath());
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
  }

  // Logits of a two-sequence prefill and then two decode steps (all rows concatenated).
  std::vector<float> Run(kernels::Backend& backend, ShardSpec shard) {
    LlamaModel::Options options;
    options.max_batch_tokens = 32;
    options.shard = shard;
    options.communicator = &lone_;
    auto model = LlamaModel::Load(*file_, backend, options);
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok()) return {};
    auto kv = KvCacheStorage::Create(backend, (*model)->KvShape(8, kBlockSize));
    EXPECT_TRUE(kv.ok()) << kv.status();
    if (!kv.ok()) return {};
    const std::vector<int32_t> table_a = {0}, table_b = {3, 4};
    std::vector<float> all;
    auto step = [&](const StepBatch& batch) {
      auto logits = (*model)->Forward(batch, **kv);
      ASSERT_TRUE(logits.ok()) << logits.status();
      all.insert(all.end(), logits->begin(), logits->end());
    };
    StepBatch prefill;
    prefill.token_ids = {1, 504, 3458, 282, 4649, 314, 100, 7, 19, 2000, 31};
    prefill.seqs.push_back({6, 6, table_a, 2});  // logits for its last two tokens
    prefill.seqs.push_back({5, 5, table_b, 1});
    step(prefill);
    for (int32_t i = 0; i < 2; ++i) {
      StepBatch decode;
      decode.token_ids = {42 + i, 777 + i};
      decode.seqs.push_back({1, 7 + i, table_a, 1});
      decode.seqs.push_back({1, 6 + i, table_b, 1});
      step(decode);
    }
    return all;
  }

  std::unique_ptr<GgufFile> file_;
  LoneRank lone_;
};

TEST_F(WeightPlacementTest, CpuKeepsTheMappedViews) {
  auto config = LoadModelConfig(*file_);
  ASSERT_TRUE(config.ok()) << config.status();
  auto host = LoadLlamaWeights(*file_, *config, {});
  ASSERT_TRUE(host.ok()) << host.status();
  kernels::cpu::CpuBackend cpu(1);
  auto placed = PlaceLlamaWeights(*host, cpu);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_TRUE(placed->memory.empty());
  EXPECT_EQ(placed->weights.token_embedding.data, host->token_embedding.data);
  EXPECT_EQ(placed->weights.output_norm, host->output_norm);
  EXPECT_EQ(placed->weights.layers[3].down.data, host->layers[3].down.data);
  EXPECT_EQ(placed->weights.layers[3].ffn_norm, host->layers[3].ffn_norm);
}

TEST_F(WeightPlacementTest, PacksEachSliceOnceAndTiedEmbeddingsOnce) {
  auto config = LoadModelConfig(*file_);
  ASSERT_TRUE(config.ok()) << config.status();
  auto host = LoadLlamaWeights(*file_, *config, {1, 3});
  ASSERT_TRUE(host.ok()) << host.status();
  PackingBackend device(1);
  auto placed = PlaceLlamaWeights(*host, device);
  ASSERT_TRUE(placed.ok()) << placed.status();
  const bool tied = host->output.data == host->token_embedding.data;
  const int expected = (tied ? 1 : 2) + 1 + config->num_layers * (2 + 7);
  EXPECT_EQ(device.num_placed(), expected);
  EXPECT_EQ(placed->memory.size(), static_cast<size_t>(expected));
  if (tied) {
    EXPECT_EQ(placed->weights.output.data, placed->weights.token_embedding.data);
  }
  const kernels::Weight& down = placed->weights.layers[0].down;  // a strided column slice
  EXPECT_EQ(down.cols, config->ffn_dim / 3);
  EXPECT_EQ(down.row_stride_bytes, kernels::RowBytes(down.type, down.cols));
  EXPECT_LT(down.row_stride_bytes, host->layers[0].down.row_stride_bytes);
}

TEST_F(WeightPlacementTest, DeviceContractGivesBitIdenticalLogits) {
  kernels::cpu::CpuBackend cpu(2);
  PackingBackend device(2);
  const std::vector<float> expected = Run(cpu, {});
  const std::vector<float> got = Run(device, {});
  ASSERT_FALSE(expected.empty());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
  EXPECT_EQ(device.num_copies_to_host(), 3);  // one per step, only the logits
}

TEST_F(WeightPlacementTest, PackedTensorParallelSliceGivesBitIdenticalLogits) {
  kernels::cpu::CpuBackend cpu(2);
  PackingBackend device(2);
  const std::vector<float> expected = Run(cpu, {2, 3});
  const std::vector<float> got = Run(device, {2, 3});
  ASSERT_FALSE(expected.empty());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace saola::model
