#include "router/routing/routing_policy.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router/routing/least_load_policy.h"
#include "router/routing/prefix_aware_policy.h"
#include "router/routing/round_robin_policy.h"

namespace saola::routing {

absl::StatusOr<std::unique_ptr<RoutingPolicy>> MakeRoutingPolicy(std::string_view name,
                                                                const RoutingOptions& options) {
  if (name == "prefix-aware") {
    if (options.balance_abs_threshold < 0 || !(options.balance_rel_threshold >= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prefix-aware: balance thresholds must be >= 0 (absolute) and >= 1 (relative); got ",
          options.balance_abs_threshold, " and ", options.balance_rel_threshold));
    }
    if (options.max_blocks_per_worker <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prefix-aware: max_blocks_per_worker must be positive; got ",
          options.max_blocks_per_worker));
    }
    if (options.history_ttl < absl::ZeroDuration() || options.pending_ttl < absl::ZeroDuration()) {
      return absl::InvalidArgumentError("prefix-aware: history_ttl and pending_ttl must be >= 0");
    }
    return std::make_unique<PrefixAwarePolicy>(options);
  }
  if (name == "least-load") return std::make_unique<LeastLoadPolicy>();
  if (name == "round-robin") return std::make_unique<RoundRobinPolicy>();
  return absl::InvalidArgumentError(absl::StrCat(
      "--policy: unknown policy '", std::string(name), "' (prefix-aware, least-load, round-robin)"));
}

}  // namespace saola::routing
