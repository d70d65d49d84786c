// The identity of a request for the response caches.
//
// Two requests get the same canonical bytes exactly when a deterministic model must give them the
// same answer: same tenant, same model, same prompt token ids, same sampling parameters (defaults
// resolved, so an unset field equals its documented default set explicitly), same stop
// conditions and length limit. The prompt text or chat is not included: the token ids the router
// computed from it stand for it. Cache controls are not included: they say whether to use the
// cache, not what the answer is.
//
// Canonical layout (all integers little endian; "str" = u32 length then the bytes; floats as
// their IEEE-754 bits with -0 folded into +0 and every NaN into one pattern):
//   "saola-exact-v1\0" | "saola-partition-v1\0"   (tag: the two kinds never share bytes)
//   str tenant, str model
//   [exact only] u32 num_prompt_ids, then each id as i32
//   f32 temperature(1.0) f32 top_p(1.0) i32 top_k(0) u8 has_seed u64 seed(0 when absent)
//   f32 min_p(0) f32 repetition_penalty(1.0) f32 presence_penalty(0) f32 frequency_penalty(0)
//   u8 logprobs u32 top_logprobs
//   u32 num_stop, then each str stop (order kept)
//   u32 num_stop_token_ids, then each u32
//   u32 max_tokens u8 ignore_eos
// Every variable-length field is length-prefixed and every fixed field has a fixed width, so the
// encoding is injective: different requests never share canonical bytes.
//
// The key is "saola:v1:exact:" followed by the 32 hex digits of HashBytes128(canonical)
// (cache/exact/hash128.h). The hash is not collision-proof, and need not be: a cache stores the
// canonical bytes with each entry and serves a hit only when they match the request's.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "saola/v1/llm.pb.h"

namespace saola::cache {

/// The prefix of every exact-cache key.
inline constexpr std::string_view kExactKeyPrefix = "saola:v1:exact:";

/// Whether the request's output is a function of its inputs: temperature explicitly 0 (greedy),
/// or a seed given. Only such requests are served from or written to the exact cache.
bool IsDeterministic(const saola::v1::SamplingParams& sampling);

struct RequestFingerprint {
  /// Deterministic bytes that identify the request (layout above). Stored with each cache entry.
  std::string canonical;
  /// Short printable key: kExactKeyPrefix + 32 hex digits of the 128-bit hash of `canonical`.
  std::string key;
};

/// The fingerprint of `request` as `tenant` sends it to `model`, whose prompt tokenized to
/// `prompt_ids`. `model` is the resolved model name (request.model may be empty); request.model,
/// request.prompt, request.chat and request.cache are ignored.
RequestFingerprint FingerprintRequest(std::string_view tenant, std::string_view model,
                                      std::span<const int32_t> prompt_ids,
                                      const saola::v1::GenerateRequest& request);

/// The canonical bytes of everything but the prompt: the semantic cache keeps one partition per
/// distinct value, so it only compares prompts whose answers were produced under the same tenant,
/// model and parameters. Never equal to any FingerprintRequest canonical (different tag).
std::string PartitionCanonical(std::string_view tenant, std::string_view model,
                               const saola::v1::GenerateRequest& request);

}  // namespace saola::cache
