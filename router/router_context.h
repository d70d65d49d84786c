// Everything a routed call needs, owned by the router server and shared by all calls.
#pragma once

#include <atomic>

#include "cache/exact/exact_cache.h"
#include "cache/semantic/embedder.h"
#include "cache/semantic/semantic_cache.h"
#include "router/api_keys.h"
#include "router/executor.h"
#include "router/router_metrics.h"
#include "router/worker_pool.h"

namespace saola::router {

struct RouterContext {
  WorkerPool* pool = nullptr;
  cache::ExactCache* exact = nullptr;        // null: the exact cache is off
  cache::SemanticCache* semantic = nullptr;  // null: the semantic cache is off (--semantic-cache)
  const ApiKeys* api_keys = nullptr;
  Executor* executor = nullptr;              // cache lookups and writes run here
  RouterMetrics* metrics = nullptr;
  float semantic_threshold = 0.85f;          // when the request gives none
  int max_attempts = 3;                      // workers tried before the first token
  std::atomic<int> live_calls{0};            // CallStates alive (shutdown waits for none)
};

}  // namespace saola::router
