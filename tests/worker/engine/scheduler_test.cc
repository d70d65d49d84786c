// Scheduler plans, checked exactly, against a fake model: a "step" advances each chunk's
// num_computed, writes the chunk's token ids into a fake KV (one int per slot) and, when the chunk
// samples, appends a fixed token. Before writing, a chunk checks that every earlier position of
// its block table holds that sequence's token, so a block shared through the prefix cache, a
// preemption or an eviction that handed out the wrong block shows up as a wrong token.
#include "worker/engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/block_hash.h"
#include "worker/engine/block_pool.h"
#include "worker/engine/request.h"
#include "worker/engine/sequence.h"
#include "worker/model/tokenizer.h"

namespace saola::engine {
namespace {

constexpr int32_t kFirstPlainToken = 2;  // 0 = <s>, 1 = </s>
constexpr int32_t kSampledToken = 5;     // what the fake model "samples"

// A tiny byte-level vocabulary: <s>, </s> and the printable ASCII characters.
const model::Tokenizer& TinyTokenizer() {
  static const model::Tokenizer* tokenizer = [] {
    model::TokenizerSpec spec;
    spec.pre = "gpt-2";
    spec.tokens = {"<s>", "</s>"};
    spec.token_types = {3, 3};
    for (char c = 0x21; c <= 0x7E; ++c) {
      spec.tokens.push_back(std::string(1, c));
      spec.token_types.push_back(1);
    }
    spec.bos_id = 0;
    spec.eos_id = 1;
    auto t = model::Tokenizer::Create(std::move(spec));
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      return static_cast<model::Tokenizer*>(nullptr);
    }
    return t->release();
  }();
  return *tokenizer;
}

int32_t VocabSize() { return TinyTokenizer().vocab_size(); }

class NullSink : public RequestSink {
 public:
  void Push(RequestOutput) override {}
};

// Sequences, their fake KV and the fake model runner.
class Harness {
 public:
  Harness(int32_t num_blocks, int32_t block_size, Scheduler::Options options)
      : pool_(num_blocks, block_size),
        scheduler_(options, pool_),
        prefix_cache_(options.prefix_cache),
        kv_(num_blocks, std::vector<int32_t>(block_size, -1)) {}

  ~Harness() {
    // Leases must die before the pool.
    for (auto& seq : seqs_) seq->lease.Reset();
  }

  Sequence* Add(std::vector<int32_t> prompt, int32_t max_tokens, std::string id = "") {
    RequestSpec spec;
    spec.id = id.empty() ? "r" + std::to_string(seqs_.size()) : id;
    spec.prompt = std::move(prompt);
    spec.max_tokens = max_tokens;
    spec.ignore_eos = true;
    seqs_.push_back(std::make_unique<Sequence>(std::move(spec), std::make_shared<NullSink>(),
                                               TinyTokenizer(), pool_));
    Sequence* seq = seqs_.back().get();
    scheduler_.Add(seq);
    return seq;
  }

  /// Runs a plan as the engine would (without a model): returns the sequences it finished.
  std::vector<Sequence*> Apply(const StepPlan& plan) {
    std::vector<Sequence*> finished;
    for (const ScheduledChunk& chunk : plan.chunks) {
      Sequence* seq = chunk.seq;
      WriteKv(*seq, chunk.num_tokens);
      if (::testing::Test::HasFatalFailure()) return finished;
      seq->num_computed += chunk.num_tokens;
      Commit(*seq);
      if (!chunk.sample) continue;
      RequestOutput out = seq->AppendToken(SampledToken{.id = kSampledToken, .logprob = 0, .top = {}}, kContextLimit);
      if (out.finished) {
        scheduler_.Remove(seq);
        seq->lease.Reset();
        finished.push_back(seq);
      }
    }
    return finished;
  }

  void Cancel(Sequence* seq) {
    scheduler_.Remove(seq);
    seq->lease.Reset();
    seq->state = Sequence::State::kFinished;
  }

  KvBlockPool& pool() { return pool_; }
  Scheduler& scheduler() { return scheduler_; }

 private:
  static constexpr int32_t kContextLimit = 1 << 20;

  // The engine's CommitFullBlocks.
  void Commit(Sequence& seq) {
    if (!prefix_cache_) return;
    const int32_t bs = pool_.block_size();
    const int32_t full = seq.num_computed / bs;
    const std::vector<uint64_t>& hashes = seq.block_hashes();
    for (int32_t b = seq.num_committed_blocks; b < full; ++b) {
      const uint64_t parent = b == 0 ? TenantRootHash(seq.spec().tenant) : hashes[b - 1];
      pool_.Commit(seq.lease, b, parent, hashes[b],
                   std::span<const int32_t>(seq.tokens()).subspan(b * bs, bs));
    }
    seq.num_committed_blocks = std::max(seq.num_committed_blocks, full);
  }

  void WriteKv(const Sequence& seq, int32_t n) {
    const int32_t bs = pool_.block_size();
    const int32_t end = seq.num_computed + n;
    ASSERT_LE(end, seq.lease.size() * bs) << seq.id() << ": the lease does not cover the chunk";
    for (int32_t p = 0; p < seq.num_computed; ++p) {
      ASSERT_EQ(kv_[seq.lease.blocks()[p / bs]][p % bs], seq.tokens()[p])
          << seq.id() << ": wrong KV at position " << p;
    }
    for (int32_t p = seq.num_computed; p < end; ++p) {
      kv_[seq.lease.blocks()[p / bs]][p % bs] = seq.tokens()[p];
    }
  }

  KvBlockPool pool_;
  Scheduler scheduler_;
  bool prefix_cache_;
  std::vector<std::vector<int32_t>> kv_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
};

std::vector<int32_t> Prompt(int32_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(kFirstPlainToken, VocabSize() - 1);
  std::vector<int32_t> p(n);
  for (int32_t& t : p) t = id(rng);
  return p;
}

struct Chunk {
  const Sequence* seq;
  int32_t num_tokens;
  bool sample;
  bool operator==(const Chunk&) const = default;
};

std::vector<Chunk> Chunks(const StepPlan& plan) {
  std::vector<Chunk> out;
  for (const ScheduledChunk& c : plan.chunks) out.push_back({c.seq, c.num_tokens, c.sample});
  return out;
}

void PrintTo(const Chunk& c, std::ostream* os) {
  *os << "{" << c.seq->id() << ", " << c.num_tokens << (c.sample ? ", sample}" : "}");
}

TEST(SchedulerTest, AdmitsFirstComeFirstServedWithinTheBudget) {
  Harness h(/*num_blocks=*/64, /*block_size=*/4, {.max_batch_tokens = 16, .max_running = 8});
  Sequence* a = h.Add(Prompt(5, 1), 3);
  Sequence* b = h.Add(Prompt(6, 2), 3);
  Sequence* c = h.Add(Prompt(9, 3), 3);
  StepPlan plan = h.scheduler().Schedule();
  // a and b whole; c gets the 5 tokens left of the budget.
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 5, true}, {b, 6, true}, {c, 5, false}}));
  EXPECT_EQ(plan.admitted, (std::vector<Sequence*>{a, b, c}));
  EXPECT_EQ(plan.num_tokens, 16);
  EXPECT_EQ(a->lease.size(), 2);  // blocks for 5 tokens
  EXPECT_EQ(c->lease.size(), 2);  // blocks for the 5 computed this step
  h.Apply(plan);

  plan = h.scheduler().Schedule();
  // Decodes first, oldest first, then the rest of c's prompt.
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 1, true}, {b, 1, true}, {c, 4, true}}));
  EXPECT_TRUE(plan.admitted.empty());
  EXPECT_TRUE(h.pool().CheckInvariants().empty());
}

TEST(SchedulerTest, DecodesGoBeforeAnOlderRequestsPrefill) {
  Harness h(64, 4, {.max_batch_tokens = 8, .max_running = 8});
  Sequence* old_long = h.Add(Prompt(9, 1), 3);
  Sequence* young_short = h.Add(Prompt(1, 2), 3);
  StepPlan plan = h.scheduler().Schedule();
  // 8 of 9 would leave one token: 7 run, and the one-token prompt fits in the last slot.
  EXPECT_EQ(Chunks(plan),
            (std::vector<Chunk>{{old_long, 7, false}, {young_short, 1, true}}));
  h.Apply(plan);
  plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan),
            (std::vector<Chunk>{{young_short, 1, true}, {old_long, 2, true}}));
}

TEST(SchedulerTest, NeverRunsAOneTokenChunkOfALongerPrompt) {
  Harness h(64, 4, {.max_batch_tokens = 8, .max_running = 8});
  Sequence* a = h.Add(Prompt(7, 1), 3);
  Sequence* b = h.Add(Prompt(3, 2), 3);
  Sequence* c = h.Add(Prompt(2, 3), 3);
  StepPlan plan = h.scheduler().Schedule();
  // One slot is left after a: b cannot take a one-token chunk, and c may not overtake it.
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 7, true}}));
  EXPECT_EQ(h.scheduler().num_waiting(), 2);
  EXPECT_EQ(b->lease.size(), 0);  // nothing held while waiting
  h.Apply(plan);
  plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 1, true}, {b, 3, true}, {c, 2, true}}));
}

TEST(SchedulerTest, ChunksNeverLeaveAOneTokenRemainder) {
  Harness h(64, 4, {.max_batch_tokens = 8, .max_running = 8});
  Sequence* a = h.Add(Prompt(17, 1), 1);
  std::vector<int32_t> sizes;
  for (int step = 0; step < 10 && a->num_output() == 0; ++step) {
    StepPlan plan = h.scheduler().Schedule();
    ASSERT_EQ(plan.chunks.size(), 1u);
    sizes.push_back(plan.chunks[0].num_tokens);
    h.Apply(plan);
  }
  // 8, then 8 would leave 1: 7, then the last 2.
  EXPECT_EQ(sizes, (std::vector<int32_t>{8, 7, 2}));
}

// The smallest budget (3) still finishes odd prompts: with 2, three tokens left could not run.
TEST(SchedulerTest, TheSmallestBudgetFinishesOddPrompts) {
  Harness h(64, 4, {.max_batch_tokens = 3, .max_running = 8});
  Sequence* a = h.Add(Prompt(7, 1), 1);
  std::vector<int32_t> sizes;
  for (int step = 0; step < 10 && a->num_output() == 0; ++step) {
    StepPlan plan = h.scheduler().Schedule();
    ASSERT_EQ(plan.chunks.size(), 1u);
    sizes.push_back(plan.chunks[0].num_tokens);
    h.Apply(plan);
  }
  // 3, then 3 would leave 1: 2, then 2.
  EXPECT_EQ(sizes, (std::vector<int32_t>{3, 2, 2}));
}

TEST(SchedulerTest, PrefixCacheHitLeavesAtLeastTwoPromptTokens) {
  Harness h(64, 4, {.max_batch_tokens = 64, .max_running = 8});
  const std::vector<int32_t> prefix = Prompt(12, 7);
  Sequence* first = h.Add(prefix, 1);
  h.Apply(h.scheduler().Schedule());
  ASSERT_EQ(first->state, Sequence::State::kFinished);
  ASSERT_EQ(h.pool().num_cached(), 3);  // its three full blocks

  // Same 12 tokens: the last token must run, so at most 2 blocks (8 tokens) are reused.
  Sequence* same = h.Add(prefix, 1);
  StepPlan plan = h.scheduler().Schedule();
  EXPECT_EQ(same->num_computed, 8);
  EXPECT_EQ(same->cached_prompt_tokens, 8);
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{same, 4, true}}));
  h.Apply(plan);

  // 13 tokens, the first 12 cached: reusing 3 blocks would leave a one-token chunk; 2 are used.
  std::vector<int32_t> longer = prefix;
  longer.push_back(kFirstPlainToken);
  Sequence* one_more = h.Add(longer, 1);
  plan = h.scheduler().Schedule();
  EXPECT_EQ(one_more->num_computed, 8);
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{one_more, 5, true}}));
  h.Apply(plan);

  // 14 tokens: 3 blocks reused, 2 tokens left.
  longer.push_back(kFirstPlainToken + 1);
  Sequence* two_more = h.Add(longer, 1);
  plan = h.scheduler().Schedule();
  EXPECT_EQ(two_more->num_computed, 12);
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{two_more, 2, true}}));
  h.Apply(plan);
  EXPECT_EQ(h.scheduler().prefix_stats().queried_tokens, 12u + 12u + 13u + 14u);
  EXPECT_EQ(h.scheduler().prefix_stats().hit_tokens, 0u + 8u + 8u + 12u);
  EXPECT_TRUE(h.pool().CheckInvariants().empty());
  EXPECT_EQ(h.pool().num_in_use(), 0);
}

TEST(SchedulerTest, PreemptsTheNewestRunningAndAdmitsNobodyThatStep) {
  // Six blocks of 4: three 8-token prompts fill the pool.
  Harness h(6, 4, {.max_batch_tokens = 32, .max_running = 8});
  Sequence* a = h.Add(Prompt(8, 1), 10);
  Sequence* b = h.Add(Prompt(8, 2), 10);
  Sequence* c = h.Add(Prompt(8, 3), 10);
  StepPlan plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 8, true}, {b, 8, true}, {c, 8, true}}));
  EXPECT_EQ(h.pool().num_free(), 0);
  h.Apply(plan);

  // Each now needs a third block for its first output token: c, the newest, is preempted; its
  // two blocks (cached) give a and b theirs.
  Sequence* d = h.Add(Prompt(2, 4), 10);
  plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 1, true}, {b, 1, true}}));
  EXPECT_EQ(plan.preempted, (std::vector<Sequence*>{c}));
  EXPECT_TRUE(plan.admitted.empty());
  EXPECT_EQ(c->state, Sequence::State::kWaiting);
  EXPECT_EQ(c->num_preemptions, 1);
  EXPECT_EQ(c->lease.size(), 0);
  EXPECT_EQ(c->num_computed, 0);
  EXPECT_EQ(c->num_output(), 1);  // its output is kept, to be recomputed
  // The preempted request goes back to the head of the queue, before d.
  EXPECT_EQ(std::vector<Sequence*>(h.scheduler().waiting().begin(),
                                   h.scheduler().waiting().end()),
            (std::vector<Sequence*>{c, d}));
  h.Apply(plan);

  // Neither c nor d fits (no free block) and d may not overtake c.
  plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 1, true}, {b, 1, true}}));
  EXPECT_EQ(h.scheduler().num_waiting(), 2);
  EXPECT_TRUE(h.pool().CheckInvariants().empty());
}

TEST(SchedulerTest, PreemptsItselfWhenItIsTheNewest) {
  // a holds 3 blocks, b 2 of the 5; b's decode needs a third and b is the newest.
  Harness h(5, 4, {.max_batch_tokens = 32, .max_running = 8});
  Sequence* a = h.Add(Prompt(11, 1), 10);
  Sequence* b = h.Add(Prompt(8, 2), 10);
  StepPlan plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 11, true}, {b, 8, true}}));
  h.Apply(plan);
  plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 1, true}}));
  EXPECT_EQ(plan.preempted, (std::vector<Sequence*>{b}));
  EXPECT_EQ(h.scheduler().num_running(), 1);
  h.Apply(plan);
  EXPECT_TRUE(h.pool().CheckInvariants().empty());
}

TEST(SchedulerTest, ReplaysOutputTokensOneAtATimeAfterPreemption) {
  Harness h(8, 4, {.max_batch_tokens = 32, .max_running = 8, .prefix_cache = false});
  Sequence* a = h.Add(Prompt(6, 1), 10);
  for (int i = 0; i < 4; ++i) h.Apply(h.scheduler().Schedule());
  ASSERT_EQ(a->num_output(), 4);
  // Preempt by hand (as the scheduler does), then it is readmitted: prompt in one chunk, then
  // the four output tokens one per step, and only the last one samples.
  h.scheduler().Remove(a);
  a->Preempt();
  h.scheduler().Add(a);
  std::vector<Chunk> chunks;
  for (int i = 0; i < 5; ++i) {
    StepPlan plan = h.scheduler().Schedule();
    for (const Chunk& c : Chunks(plan)) chunks.push_back(c);
    h.Apply(plan);
  }
  EXPECT_EQ(chunks, (std::vector<Chunk>{
                        {a, 6, false}, {a, 1, false}, {a, 1, false}, {a, 1, false}, {a, 1, true}}));
  EXPECT_EQ(a->num_output(), 5);
}

// A preempted request's match may run past its prompt, so the cut before matching does not apply;
// when its later blocks were evicted the match can end one token short of the prompt's end.
TEST(SchedulerTest, PreemptedRequestsPartialMatchLeavesAtLeastTwoPromptTokens) {
  Harness h(4, 4, {.max_batch_tokens = 32, .max_running = 8});
  Sequence* a = h.Add(Prompt(9, 1), 10);
  for (int i = 0; i < 4; ++i) h.Apply(h.scheduler().Schedule());
  ASSERT_EQ(a->num_tokens(), 13);
  ASSERT_EQ(a->num_computed, 12);  // three full blocks, committed
  h.scheduler().Remove(a);
  a->Preempt();
  h.scheduler().Add(a);
  {
    // Evict a's deepest block (tokens 8..11): the free block goes first, then the LRU leaf.
    BlockLease other;
    ASSERT_TRUE(h.pool().Allocate(2, other));
  }
  ASSERT_EQ(h.pool().num_cached(), 2);
  StepPlan plan = h.scheduler().Schedule();
  // Blocks 0 and 1 match (8 tokens) but would leave the 9th prompt token alone: one is reused.
  EXPECT_EQ(a->num_computed, 4);
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 5, false}}));
  h.Apply(plan);
  EXPECT_TRUE(h.pool().CheckInvariants().empty());
}

TEST(SchedulerTest, RespectsMaxRunning) {
  Harness h(64, 4, {.max_batch_tokens = 64, .max_running = 2});
  Sequence* a = h.Add(Prompt(3, 1), 2);
  Sequence* b = h.Add(Prompt(3, 2), 2);
  Sequence* c = h.Add(Prompt(3, 3), 2);
  StepPlan plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 3, true}, {b, 3, true}}));
  h.Apply(plan);
  plan = h.scheduler().Schedule();  // a and b finish in this step
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 1, true}, {b, 1, true}}));
  h.Apply(plan);
  plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{c, 3, true}}));
}

TEST(SchedulerTest, TheQueueHeadBlocksSmallerRequestsBehindIt) {
  Harness h(6, 4, {.max_batch_tokens = 64, .max_running = 8});
  Sequence* a = h.Add(Prompt(12, 1), 8);  // 3 blocks
  h.Apply(h.scheduler().Schedule());
  Sequence* big = h.Add(Prompt(16, 2), 2);   // 4 blocks: does not fit next to a
  Sequence* small = h.Add(Prompt(2, 3), 2);  // 1 block: would fit
  for (int i = 0; i < 7; ++i) {
    StepPlan plan = h.scheduler().Schedule();
    EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{a, 1, true}})) << "step " << i;
    h.Apply(plan);
  }
  ASSERT_EQ(a->state, Sequence::State::kFinished);
  StepPlan plan = h.scheduler().Schedule();
  EXPECT_EQ(Chunks(plan), (std::vector<Chunk>{{big, 16, true}, {small, 2, true}}));
}

SampledToken Token(int32_t id) { return SampledToken{.id = id, .logprob = 0, .top = {}}; }

// Speculative rollback bookkeeping (the model side is in engine_test).
TEST(SequenceTest, RollbackToForgetsTokensHashesAndBlocks) {
  KvBlockPool pool(8, 4);
  RequestSpec spec;
  spec.id = "s";
  spec.prompt = Prompt(4, 1);
  spec.max_tokens = 20;
  spec.ignore_eos = true;
  Sequence seq(spec, std::make_shared<NullSink>(), TinyTokenizer(), pool);
  for (int i = 0; i < 8; ++i) seq.AppendToken(Token(kSampledToken), 1 << 20);
  ASSERT_EQ(seq.num_tokens(), 12);
  ASSERT_TRUE(pool.Allocate(3, seq.lease));
  seq.num_computed = 12;
  const std::vector<uint64_t> hashes = seq.block_hashes();
  ASSERT_EQ(hashes.size(), 3u);
  // The first two blocks are verified and published.
  for (int32_t b = 0; b < 2; ++b) {
    pool.Commit(seq.lease, b, b == 0 ? TenantRootHash(spec.tenant) : hashes[b - 1], hashes[b],
                std::span<const int32_t>(seq.tokens()).subspan(b * 4, 4));
  }
  seq.num_committed_blocks = 2;

  // Three tokens of the last block rejected.
  seq.RollbackTo(9);
  EXPECT_EQ(seq.num_tokens(), 9);
  EXPECT_EQ(seq.num_computed, 9);
  EXPECT_EQ(seq.lease.size(), 3);  // position 8 still lives in block 2
  EXPECT_EQ(seq.num_committed_blocks, 2);
  EXPECT_EQ(seq.block_hashes(), std::vector<uint64_t>(hashes.begin(), hashes.begin() + 2));
  // Other tokens in their place: the third block's hash is computed afresh.
  for (int i = 0; i < 3; ++i) seq.AppendToken(Token(kSampledToken + 1), 1 << 20);
  ASSERT_EQ(seq.block_hashes().size(), 3u);
  EXPECT_NE(seq.block_hashes()[2], hashes[2]);
  EXPECT_EQ(seq.block_hashes()[2],
            ChainBlockHash(hashes[1], std::span<const int32_t>(seq.tokens()).subspan(8, 4)));

  // Back to the prompt, on a block boundary: the published second block is released and stays
  // cached; the third goes back to the free list.
  seq.RollbackTo(4);
  EXPECT_EQ(seq.num_tokens(), 4);
  EXPECT_EQ(seq.num_computed, 4);
  EXPECT_EQ(seq.lease.size(), 1);
  EXPECT_EQ(seq.num_committed_blocks, 1);
  EXPECT_EQ(seq.block_hashes().size(), 1u);
  EXPECT_EQ(pool.num_in_use(), 1);
  EXPECT_EQ(pool.num_cached(), 2);
  EXPECT_EQ(pool.CheckInvariants(), "");
  seq.lease.Reset();
}

// Seeded random traffic over many steps: arrivals, cancellations, shared prefixes, a pool small
// enough to preempt. Checks every plan's rules, then that everything finishes and nothing leaks.
TEST(SchedulerTest, RandomTrafficFinishesEverythingAndLeaksNothing) {
  uint64_t total_preemptions = 0;
  int longest_head_wait = 0;
  int max_idle_steps = 0;
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    auto uniform = [&](int32_t lo, int32_t hi) {
      return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
    };
    const int32_t block_size = 4;
    const int32_t num_blocks = uniform(20, 40);
    Scheduler::Options options{.max_batch_tokens = uniform(3, 48),
                               .max_running = uniform(1, 12),
                               .prefix_cache = seed % 4 != 0};
    Harness h(num_blocks, block_size, options);
    const int32_t context = num_blocks * block_size;
    const std::vector<std::vector<int32_t>> prefixes = {Prompt(9, seed), Prompt(16, seed + 100)};

    constexpr int kRequests = 150;
    std::vector<Sequence*> all;
    std::set<const Sequence*> done;
    std::map<const Sequence*, int> head_steps;  // steps spent at the queue's head
    std::map<const Sequence*, int> idle_steps;  // steps in a row running without a chunk
    int max_head_steps = 0;
    int64_t steps = 0;
    uint64_t preemptions = 0;
    while (static_cast<int>(done.size()) < kRequests) {
      ASSERT_LT(steps, 20000) << "no progress";
      // Arrivals.
      while (static_cast<int>(all.size()) < kRequests && uniform(0, 2) == 0) {
        std::vector<int32_t> prompt;
        if (uniform(0, 2) == 0) prompt = prefixes[uniform(0, 1)];
        const std::vector<int32_t> tail = Prompt(uniform(1, 40), seed * 1000 + all.size());
        prompt.insert(prompt.end(), tail.begin(), tail.end());
        prompt.resize(std::min<size_t>(prompt.size(), context - 1));
        const int32_t max_tokens =
            std::min<int32_t>(uniform(1, 30), context - static_cast<int32_t>(prompt.size()));
        all.push_back(h.Add(std::move(prompt), max_tokens));
      }
      // Cancellations, now and then, of a live request.
      if (uniform(0, 40) == 0) {
        std::vector<Sequence*> live;
        for (Sequence* s : all) {
          if (!done.contains(s)) live.push_back(s);
        }
        if (!live.empty()) {
          Sequence* victim = live[uniform(0, static_cast<int32_t>(live.size()) - 1)];
          h.Cancel(victim);
          done.insert(victim);
        }
      }

      const std::vector<Sequence*> running_before = h.scheduler().running();
      const bool was_idle = running_before.empty();
      const int32_t waiting_before = h.scheduler().num_waiting();

      StepPlan plan = h.scheduler().Schedule();
      ++steps;
      preemptions += plan.preempted.size();

      // The budget, and chunk sizes by the rules.
      int32_t total = 0;
      bool in_prefill = false;
      std::set<const Sequence*> seen;
      for (const ScheduledChunk& c : plan.chunks) {
        const Sequence& s = *c.seq;
        ASSERT_TRUE(seen.insert(&s).second) << "two chunks for " << s.id();
        ASSERT_EQ(s.state, Sequence::State::kRunning);
        total += c.num_tokens;
        ASSERT_EQ(c.sample, s.num_computed + c.num_tokens == s.num_tokens());
        ASSERT_LE(s.num_computed + c.num_tokens, s.lease.size() * block_size);
        const bool admitted =
            std::find(plan.admitted.begin(), plan.admitted.end(), &s) != plan.admitted.end();
        if (s.num_computed >= s.prompt_len()) {
          ASSERT_EQ(c.num_tokens, 1) << s.id() << ": output tokens run one per step";
          // Decodes of running requests come before every prefill chunk.
          if (!admitted) {
            ASSERT_FALSE(in_prefill) << s.id() << ": decode after a prefill";
          }
        } else {
          in_prefill = true;
          ASSERT_LE(s.num_computed + c.num_tokens, s.prompt_len());
          ASSERT_TRUE(c.num_tokens >= 2 || s.prompt_len() == 1)
              << s.id() << " prompt " << s.prompt_len() << " computed " << s.num_computed
              << " tokens " << s.num_tokens() << " preemptions " << s.num_preemptions
              << " admitted now " << admitted << " budget " << options.max_batch_tokens;
          ASSERT_NE(s.prompt_len() - s.num_computed - c.num_tokens, 1) << s.id();
        }
      }
      ASSERT_EQ(total, plan.num_tokens);
      ASSERT_LE(total, options.max_batch_tokens);
      ASSERT_LE(h.scheduler().num_running(), options.max_running);
      if (!plan.preempted.empty()) {
        ASSERT_TRUE(plan.admitted.empty());
      }
      // Victims are the newest running requests, newest first.
      for (size_t i = 0; i < plan.preempted.size(); ++i) {
        ASSERT_EQ(plan.preempted[i], running_before[running_before.size() - 1 - i]);
      }
      for (const Sequence* p : plan.preempted) {
        ASSERT_EQ(p->lease.size(), 0);
        ASSERT_FALSE(seen.contains(p));
      }
      // An idle engine always admits the head of the queue: each request fits the pool alone.
      if (was_idle && waiting_before > 0) {
        ASSERT_FALSE(plan.admitted.empty());
      }

      // A running request that got no chunk waits for the budget (or blocks) older ones use.
      for (Sequence* r : h.scheduler().running()) {
        if (seen.contains(r)) {
          idle_steps[r] = 0;
        } else {
          max_idle_steps = std::max(max_idle_steps, ++idle_steps[r]);
        }
      }
      for (Sequence* f : h.Apply(plan)) {
        ASSERT_TRUE(f->num_output() == f->spec().max_tokens) << f->id();
        done.insert(f);
      }
      ASSERT_EQ(h.pool().CheckInvariants(), "");
      if (!h.scheduler().waiting().empty()) {
        const int n = ++head_steps[h.scheduler().waiting().front()];
        max_head_steps = std::max(max_head_steps, n);
      }
    }
    EXPECT_EQ(h.scheduler().num_running(), 0);
    EXPECT_EQ(h.scheduler().num_waiting(), 0);
    EXPECT_EQ(h.pool().num_in_use(), 0);
    EXPECT_EQ(h.pool().CheckInvariants(), "");
    // The head waits for running requests to finish or be preempted, never for newer ones:
    // under 70 steps here (requests of at most 86 tokens).
    EXPECT_LE(max_head_steps, 100);
    total_preemptions += preemptions;
    longest_head_wait = std::max(longest_head_wait, max_head_steps);
  }
  EXPECT_GT(total_preemptions, 0u);
  // Older requests go first, so a young one may sit out while they decode: bounded by their
  // lengths (83 steps at most over these seeds).
  EXPECT_LE(max_idle_steps, 300);
  std::printf("%llu preemptions in all; longest wait at the queue's head: %d steps; longest "
              "a running request went without a chunk: %d steps\n",
              static_cast<unsigned long long>(total_preemptions), longest_head_wait,
              max_idle_steps);
}

}  // namespace
}  // namespace saola::engine
