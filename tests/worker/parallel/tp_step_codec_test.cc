// The step messages rank 0 broadcasts: exact round trips, and corrupt input rejected.
#include <gtest/gtest.h>

#include <cstring>

#include "worker/parallel/step_codec.h"

namespace saola::parallel {
namespace {

model::StepBatch TwoSequences(std::vector<int32_t>& t0, std::vector<int32_t>& t1) {
  model::StepBatch batch;
  batch.token_ids = {5, 6, 7, 8};
  batch.seqs.push_back({.num_tokens = 3, .context_len = 20, .block_table = t0, .num_logits = 1});
  batch.seqs.push_back({.num_tokens = 1, .context_len = 1, .block_table = t1, .num_logits = 0});
  return batch;
}

TEST(TpStepCodecTest, RoundTripsABatch) {
  std::vector<int32_t> t0 = {4, 9}, t1 = {3};
  const model::StepBatch batch = TwoSequences(t0, t1);
  std::vector<uint8_t> payload;
  EncodeStep(batch, 64, 16, &payload);
  EXPECT_EQ(payload.size(), 4u * (4 + 4 + 2 * 4 + 3));
  DecodedStep step;
  ASSERT_TRUE(DecodeStep(payload, &step).ok());
  EXPECT_EQ(step.num_kv_blocks, 64);
  EXPECT_EQ(step.block_size, 16);
  EXPECT_EQ(step.batch.token_ids, batch.token_ids);
  ASSERT_EQ(step.batch.seqs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const model::SequenceStep &a = step.batch.seqs[i], &b = batch.seqs[i];
    EXPECT_EQ(a.num_tokens, b.num_tokens);
    EXPECT_EQ(a.context_len, b.context_len);
    EXPECT_EQ(a.num_logits, b.num_logits);
    EXPECT_EQ(std::vector<int32_t>(a.block_table.begin(), a.block_table.end()),
              std::vector<int32_t>(b.block_table.begin(), b.block_table.end()));
  }
  // The same DecodedStep is reused for the next message.
  model::StepBatch empty;
  EncodeStep(empty, 1, 1, &payload);
  ASSERT_TRUE(DecodeStep(payload, &step).ok());
  EXPECT_TRUE(step.batch.token_ids.empty());
  EXPECT_TRUE(step.batch.seqs.empty());
}

TEST(TpStepCodecTest, HeaderRoundTripsAndRejectsGarbage) {
  auto bytes = EncodeStepHeader({.kind = StepMessageKind::kStop, .payload_bytes = 0});
  auto header = DecodeStepHeader(bytes);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->kind, StepMessageKind::kStop);
  bytes = EncodeStepHeader({.kind = StepMessageKind::kStep, .payload_bytes = 1 << 20});
  header = DecodeStepHeader(bytes);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->payload_bytes, 1u << 20);

  auto bad = bytes;
  bad[0] ^= 1;
  EXPECT_FALSE(DecodeStepHeader(bad).ok());  // magic
  bad = bytes;
  bad[4] = 9;
  EXPECT_FALSE(DecodeStepHeader(bad).ok());  // kind
  bad = EncodeStepHeader({.kind = StepMessageKind::kStep, .payload_bytes = uint64_t{1} << 40});
  EXPECT_FALSE(DecodeStepHeader(bad).ok());  // absurd size
  bad = EncodeStepHeader({.kind = StepMessageKind::kStep, .payload_bytes = 6});
  EXPECT_FALSE(DecodeStepHeader(bad).ok());  // not whole words
}

TEST(TpStepCodecTest, RejectsEveryTruncationAndInconsistentSizes) {
  std::vector<int32_t> t0 = {4, 9}, t1 = {3};
  std::vector<uint8_t> payload;
  EncodeStep(TwoSequences(t0, t1), 64, 16, &payload);
  DecodedStep step;
  for (size_t n = 0; n < payload.size(); ++n) {
    EXPECT_FALSE(DecodeStep(std::span(payload).first(n), &step).ok()) << n;
  }
  auto corrupt = [&](size_t word, int32_t value) {
    std::vector<uint8_t> p = payload;
    std::memcpy(p.data() + 4 * word, &value, 4);
    return DecodeStep(p, &step);
  };
  EXPECT_FALSE(corrupt(0, 0).ok());            // no KV blocks
  EXPECT_FALSE(corrupt(2, 1 << 30).ok());      // token count beyond the payload
  EXPECT_FALSE(corrupt(2, -1).ok());           // negative token count
  EXPECT_FALSE(corrupt(3, 1 << 29).ok());      // sequence count beyond the payload
  EXPECT_FALSE(corrupt(8, 2).ok());            // sequence tokens no longer sum to 4
  EXPECT_FALSE(corrupt(11, 3).ok());           // a table longer than what is left
  EXPECT_FALSE(corrupt(11, -2).ok());          // a negative table size
  std::vector<uint8_t> longer = payload;
  longer.resize(longer.size() + 4);
  EXPECT_FALSE(DecodeStep(longer, &step).ok());  // trailing words
}

}  // namespace
}  // namespace saola::parallel
