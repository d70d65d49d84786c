// Builds the router's exact cache from its flags: Redis when --redis names a server, else the
// in-process LRU.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "cache/exact/exact_cache.h"
#include "cache/exact/memory_cache.h"
#include "cache/exact/redis_cache.h"

namespace saola::cache {

struct ExactCacheOptions {
  MemoryCacheOptions memory;  ///< Used when the URL is empty.
  RedisCacheOptions redis;    ///< Used otherwise.
};

/// A RedisCache for `redis_url` (redis://host:port[/db]), or a MemoryCache when it is empty.
/// INVALID_ARGUMENT naming --redis for a malformed URL; never fails because Redis is down.
absl::StatusOr<std::unique_ptr<ExactCache>> MakeExactCache(std::string_view redis_url,
                                                           ExactCacheOptions options = {});

}  // namespace saola::cache
