#include "router/routing/load.h"

#include "absl/container/inlined_vector.h"
#include "common/check.h"

namespace saola::routing {

size_t LeastLoadedIndex(std::span<const WorkerLoad> workers, uint64_t turn,
                        absl::FunctionRef<bool(size_t)> eligible) {
  absl::InlinedVector<size_t, 16> ties;
  for (size_t i = 0; i < workers.size(); ++i) {
    if (!eligible(i)) continue;
    if (ties.empty()) {
      ties.push_back(i);
      continue;
    }
    const int cmp = CompareLoad(workers[i], workers[ties.front()]);
    if (cmp < 0) ties.clear();
    if (cmp <= 0) ties.push_back(i);
  }
  SAOLA_CHECK(!ties.empty());
  return ties[turn % ties.size()];
}

}  // namespace saola::routing
