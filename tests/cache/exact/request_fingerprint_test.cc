#include "cache/exact/request_fingerprint.h"

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cache/exact/hash128.h"
#include "gtest/gtest.h"

// GCC 12 misreports a -Wrestrict overlap inside std::string::assign when protobuf's add_stop()
// inlines into these lambdas (GCC bug 105329); the code is plain string assignment.
#pragma GCC diagnostic ignored "-Wrestrict"

namespace saola::cache {
namespace {

using saola::v1::GenerateRequest;

const std::vector<int32_t> kPrompt = {1, 15043, 3186, 29991};

GenerateRequest BaseRequest() {
  GenerateRequest r;
  r.set_prompt("Hello world!");
  r.mutable_sampling()->set_temperature(0.0f);
  r.set_max_tokens(32);
  return r;
}

RequestFingerprint Fp(const GenerateRequest& r, std::string_view tenant = "acme",
                      std::string_view model = "tinyllama",
                      const std::vector<int32_t>& ids = kPrompt) {
  return FingerprintRequest(tenant, model, ids, r);
}

TEST(HashBytes128Test, IsFixedAcrossVersions) {
  // Keys written by one router version are read by the next: the algorithm must not drift.
  EXPECT_EQ(Hash128Hex(HashBytes128("")), "4334d534d4134f506d1f412a11790edf");
  EXPECT_EQ(Hash128Hex(HashBytes128("saola exact cache")), "33271ae4450a3fe44ac43129091cbaad");
}

TEST(HashBytes128Test, EveryByteAndTheLengthMatter) {
  std::set<std::string> seen;
  std::string s(19, 'x');
  seen.insert(Hash128Hex(HashBytes128(s)));
  for (size_t i = 0; i < s.size(); ++i) {
    std::string t = s;
    t[i] = 'y';
    EXPECT_TRUE(seen.insert(Hash128Hex(HashBytes128(t))).second) << i;
  }
  // Zero padding of the last word must not make "a" and "a\0" equal.
  EXPECT_NE(HashBytes128(std::string_view("a", 1)), HashBytes128(std::string_view("a\0", 2)));
}

TEST(RequestFingerprintTest, KeyIsPrefixedHexOfTheCanonicalHash) {
  RequestFingerprint fp = Fp(BaseRequest());
  ASSERT_EQ(fp.key.size(), kExactKeyPrefix.size() + 32);
  EXPECT_EQ(fp.key.substr(0, kExactKeyPrefix.size()), kExactKeyPrefix);
  EXPECT_EQ(fp.key.substr(kExactKeyPrefix.size()), Hash128Hex(HashBytes128(fp.canonical)));
  EXPECT_EQ(fp.key.find_first_not_of("0123456789abcdef", kExactKeyPrefix.size()),
            std::string::npos);
  // Deterministic.
  EXPECT_EQ(Fp(BaseRequest()).canonical, fp.canonical);
  EXPECT_EQ(Fp(BaseRequest()).key, fp.key);
}

TEST(RequestFingerprintTest, EveryFieldChangesTheKey) {
  std::vector<std::pair<std::string, std::function<RequestFingerprint()>>> variants = {
      {"base", [] { return Fp(BaseRequest()); }},
      {"tenant", [] { return Fp(BaseRequest(), "other"); }},
      {"empty tenant", [] { return Fp(BaseRequest(), ""); }},
      {"model", [] { return Fp(BaseRequest(), "acme", "llama3"); }},
      {"prompt id", [] { return Fp(BaseRequest(), "acme", "tinyllama", {1, 15043, 3186, 29992}); }},
      {"prompt longer", [] { return Fp(BaseRequest(), "acme", "tinyllama", {1, 15043, 3186, 29991, 2}); }},
      {"prompt empty", [] { return Fp(BaseRequest(), "acme", "tinyllama", {}); }},
  };
  auto add = [&](std::string name, std::function<void(GenerateRequest&)> mutate) {
    variants.emplace_back(std::move(name), [mutate] {
      GenerateRequest r = BaseRequest();
      mutate(r);
      return Fp(r);
    });
  };
  add("temperature", [](GenerateRequest& r) { r.mutable_sampling()->set_temperature(0.7f); });
  add("temperature unset", [](GenerateRequest& r) { r.mutable_sampling()->clear_temperature(); });
  add("top_p", [](GenerateRequest& r) { r.mutable_sampling()->set_top_p(0.9f); });
  add("top_k", [](GenerateRequest& r) { r.mutable_sampling()->set_top_k(40); });
  add("seed 0", [](GenerateRequest& r) { r.mutable_sampling()->set_seed(0); });
  add("seed 7", [](GenerateRequest& r) { r.mutable_sampling()->set_seed(7); });
  add("min_p", [](GenerateRequest& r) { r.mutable_sampling()->set_min_p(0.05f); });
  add("repetition_penalty",
      [](GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(1.1f); });
  add("presence_penalty",
      [](GenerateRequest& r) { r.mutable_sampling()->set_presence_penalty(0.5f); });
  add("frequency_penalty",
      [](GenerateRequest& r) { r.mutable_sampling()->set_frequency_penalty(-0.5f); });
  add("logprobs", [](GenerateRequest& r) { r.mutable_sampling()->set_logprobs(true); });
  add("top_logprobs", [](GenerateRequest& r) { r.mutable_sampling()->set_top_logprobs(5); });
  add("stop", [](GenerateRequest& r) { r.add_stop("\n"); });
  add("two stops", [](GenerateRequest& r) { r.add_stop("\n"); r.add_stop("."); });
  add("two stops reversed", [](GenerateRequest& r) { r.add_stop("."); r.add_stop("\n"); });
  add("stop_token_ids", [](GenerateRequest& r) { r.add_stop_token_ids(2); });
  add("max_tokens", [](GenerateRequest& r) { r.set_max_tokens(33); });
  add("max_tokens 0", [](GenerateRequest& r) { r.set_max_tokens(0); });
  add("ignore_eos", [](GenerateRequest& r) { r.set_ignore_eos(true); });

  std::set<std::string> keys;
  std::set<std::string> canonicals;
  for (const auto& [name, make] : variants) {
    RequestFingerprint fp = make();
    EXPECT_TRUE(keys.insert(fp.key).second) << name << " did not change the key";
    EXPECT_TRUE(canonicals.insert(fp.canonical).second) << name << " did not change canonical";
  }
}

TEST(RequestFingerprintTest, PromptTextChatModelFieldAndCacheControlsDoNotMatter) {
  const RequestFingerprint base = Fp(BaseRequest());
  GenerateRequest r = BaseRequest();
  r.set_prompt("different text that tokenized the same");
  r.set_model("alias-of-tinyllama");  // the resolved model is passed separately
  r.mutable_chat()->add_messages()->set_content("hi");
  r.mutable_cache()->set_semantic(true);
  r.mutable_cache()->set_semantic_threshold(0.9f);
  r.mutable_cache()->set_bypass(true);
  EXPECT_EQ(Fp(r).canonical, base.canonical);
  EXPECT_EQ(Fp(r).key, base.key);
}

TEST(RequestFingerprintTest, ExplicitDefaultsEqualUnset) {
  GenerateRequest unset;
  GenerateRequest explicit_defaults;
  auto* s = explicit_defaults.mutable_sampling();
  s->set_temperature(1.0f);
  s->set_top_p(1.0f);
  s->set_top_k(0);
  s->set_min_p(0.0f);
  s->set_repetition_penalty(1.0f);
  s->set_presence_penalty(0.0f);
  s->set_frequency_penalty(0.0f);
  s->set_logprobs(false);
  s->set_top_logprobs(0);
  explicit_defaults.set_max_tokens(0);
  explicit_defaults.set_ignore_eos(false);
  EXPECT_EQ(Fp(unset).canonical, Fp(explicit_defaults).canonical);

  // -0 samples like +0.
  GenerateRequest neg = BaseRequest();
  neg.mutable_sampling()->set_temperature(-0.0f);
  EXPECT_EQ(Fp(neg).key, Fp(BaseRequest()).key);
}

TEST(RequestFingerprintTest, CanonicalIsInjectiveOnBoundaryShifts) {
  GenerateRequest a = BaseRequest();
  a.add_stop("ab");
  a.add_stop("c");
  GenerateRequest b = BaseRequest();
  b.add_stop("a");
  b.add_stop("bc");
  EXPECT_NE(Fp(a).canonical, Fp(b).canonical);
  EXPECT_NE(Fp(a).key, Fp(b).key);

  // A byte moved between tenant and model.
  EXPECT_NE(Fp(BaseRequest(), "ab", "c").canonical, Fp(BaseRequest(), "a", "bc").canonical);
  // A stop string that is empty vs. none at all.
  GenerateRequest empty_stop = BaseRequest();
  empty_stop.add_stop("");
  EXPECT_NE(Fp(empty_stop).canonical, Fp(BaseRequest()).canonical);
  // A token moved from the prompt into stop_token_ids.
  GenerateRequest stop_tok = BaseRequest();
  stop_tok.add_stop_token_ids(29991);
  EXPECT_NE(Fp(BaseRequest()).canonical,
            Fp(stop_tok, "acme", "tinyllama", {1, 15043, 3186}).canonical);
  // Seed 0 given vs. no seed.
  GenerateRequest seed0 = BaseRequest();
  seed0.mutable_sampling()->set_seed(0);
  EXPECT_NE(Fp(seed0).canonical, Fp(BaseRequest()).canonical);
}

TEST(PartitionCanonicalTest, IgnoresThePromptButNotTheRest) {
  GenerateRequest r = BaseRequest();
  const std::string p = PartitionCanonical("acme", "tinyllama", r);
  EXPECT_EQ(PartitionCanonical("acme", "tinyllama", r), p);
  EXPECT_NE(PartitionCanonical("other", "tinyllama", r), p);
  EXPECT_NE(PartitionCanonical("acme", "llama3", r), p);
  GenerateRequest hotter = r;
  hotter.mutable_sampling()->set_temperature(0.5f);
  EXPECT_NE(PartitionCanonical("acme", "tinyllama", hotter), p);
  GenerateRequest other_prompt = r;
  other_prompt.set_prompt("something else entirely");
  EXPECT_EQ(PartitionCanonical("acme", "tinyllama", other_prompt), p);
  // Never equal to an exact canonical, even with no prompt ids.
  EXPECT_NE(Fp(r, "acme", "tinyllama", {}).canonical, p);
}

TEST(IsDeterministicTest, GreedyOrSeeded) {
  saola::v1::SamplingParams s;
  EXPECT_FALSE(IsDeterministic(s));  // default temperature 1.0, fresh seed
  s.set_temperature(0.0f);
  EXPECT_TRUE(IsDeterministic(s));
  s.set_temperature(0.7f);
  EXPECT_FALSE(IsDeterministic(s));
  s.set_seed(0);
  EXPECT_TRUE(IsDeterministic(s));
  s.clear_temperature();
  EXPECT_TRUE(IsDeterministic(s));
  s.clear_seed();
  s.set_top_k(1);  // effectively greedy, but not what the contract says: not cached
  EXPECT_FALSE(IsDeterministic(s));
}

}  // namespace
}  // namespace saola::cache
