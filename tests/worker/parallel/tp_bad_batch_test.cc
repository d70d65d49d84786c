// A shard group (rank 0 in this process, rank 1 a real `saola-worker tp-rank` process) stays in
// step through batches the model rejects: every malformed batch is INVALID_ARGUMENT on rank 0 and
// on rank 1 alike, before any collective, so the next good step still runs and gives the logits
// it gave before. Rank 1 skips the logits it would drop (shard_group_rank.cc); this checks that
// skipping never makes it accept what rank 0 refuses, and that backend sampling, which only rank 0
// sees, is refused before the batch is sent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/worker/parallel/tp_tiny_model.h"
#include "worker/model/gguf.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"
#include "worker/parallel/shard_group.h"

namespace saola::parallel {
namespace {

constexpr int32_t kBlockSize = 16;

TEST(TpBadBatchTest, RejectedBatchesKeepTheGroupInStep) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/tp_bad_batch_" + std::to_string(getpid()) + ".gguf";
  ASSERT_TRUE(test::WriteTinyTensorParallelModel(path).ok());

  ShardGroupOptions options;
  options.world_size = 2;
  options.rank_argv = {std::string(SAOLA_BINARY_DIR) + "/bin/saola-worker", "tp-rank", "--model",
                       path, "--threads", "1", "--max-batch-tokens", "64"};
  options.timeout = absl::Seconds(20);
  auto group = ShardGroup::Start(options);
  ASSERT_TRUE(group.ok()) << group.status();

  auto file = model::GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  kernels::cpu::CpuBackend backend(1);
  model::LlamaModel::Options model_options;
  model_options.max_batch_tokens = 64;
  model_options.shard = {0, 2};
  model_options.communicator = &(*group)->collectives();
  auto model = model::LlamaModel::Load(**file, backend, model_options);
  ASSERT_TRUE(model.ok()) << model.status();
  (*group)->AttachModel(**model);
  auto kv = model::KvCacheStorage::Create(backend, (*model)->KvShape(8, kBlockSize));
  ASSERT_TRUE(kv.ok()) << kv.status();

  const std::vector<int32_t> blocks = {0, 1};
  model::StepBatch good;
  good.token_ids = {10, 20, 30, 40, 50};
  good.seqs.push_back({.num_tokens = 5, .context_len = 5, .block_table = blocks,
                       .num_logits = 2});
  auto first = (*group)->Run(good, **kv);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::vector<float> expected(first->logits.begin(), first->logits.end());
  ASSERT_EQ(expected.size(), 2u * (*model)->config().vocab_size);

  // Each is refused by rank 0's model and by rank 1's, so neither enters a collective.
  std::vector<model::StepBatch> bad(5, good);
  bad[0].seqs[0].num_logits = 6;                       // more logits than tokens
  bad[1].seqs[0].num_logits = -1;
  const std::vector<int32_t> wrong_block = {99, 1};
  bad[2].seqs[0].block_table = wrong_block;            // a block outside the pool
  bad[3].token_ids[2] = 1 << 20;                       // a token outside the vocabulary
  bad[4].seqs[0].backend_sampling = kernels::RowSampling{};  // the CPU does not sample
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(i);
    auto out = (*group)->Run(bad[i], **kv);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
    EXPECT_TRUE((*group)->failure().ok()) << (*group)->failure();
  }

  auto again = (*group)->Run(good, **kv);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(std::vector<float>(again->logits.begin(), again->logits.end()), expected);
  (*group)->Stop();
  EXPECT_TRUE((*group)->failure().ok()) << (*group)->failure();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace saola::parallel
