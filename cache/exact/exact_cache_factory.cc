#include "cache/exact/exact_cache_factory.h"

#include <utility>

#include "common/status_macros.h"

namespace saola::cache {

absl::StatusOr<std::unique_ptr<ExactCache>> MakeExactCache(std::string_view redis_url,
                                                           ExactCacheOptions options) {
  if (redis_url.empty()) return std::make_unique<MemoryCache>(std::move(options.memory));
  ASSIGN_OR_RETURN(std::unique_ptr<RedisCache> redis,
                   RedisCache::Create(redis_url, std::move(options.redis)));
  return std::unique_ptr<ExactCache>(std::move(redis));
}

}  // namespace saola::cache
