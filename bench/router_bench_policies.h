// Part (d) of saola-router-bench: routing policies compared on a multi-turn chat workload (see
// the comment at the top of router_bench.cc and of router_bench_policies.cc).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/router_bench_support.h"

namespace saola::bench {

struct PolicyWorkload {
  int num_workers = 2;
  std::vector<std::string> policies;  // --policy values of saola-router serve
  int conversations = 12;             // concurrent, one client thread each
  int turns = 4;                      // sequential within a conversation
  int turn_tokens = 16;               // generated per turn (ignore_eos)
  int rounds = 2;                     // every policy this many times, the order rotated per round
};

/// For each round and policy: fresh workers and a fresh router, the workload, one table row.
/// Prints the table (grouped by policy) on stdout; an error when a server does not start or a
/// request fails.
absl::Status RunPolicies(Cluster& cluster, const PolicyWorkload& workload);

}  // namespace saola::bench
