// Where the workers are. Each --workers entry is either a fixed address (`host:port`, handed to
// gRPC as is: one worker) or a DNS name whose every address is a worker (`dns:///name:port`,
// e.g. a Kubernetes headless Service; resolved again every refresh, so workers that come and go
// are added and removed).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace saola::router {

struct WorkerTarget {
  std::string spec;      // as given
  bool dns = false;      // dns:///name:port
  std::string host;      // for dns targets
  std::string port;
};

/// Parses a comma-separated --workers value; INVALID_ARGUMENT naming --workers when malformed.
absl::StatusOr<std::vector<WorkerTarget>> ParseWorkerTargets(std::string_view spec);

/// The worker addresses of `targets` now: fixed ones as given, DNS ones resolved ("ip:port",
/// "[ipv6]:port"), sorted and without duplicates. A name that does not resolve contributes
/// nothing (and is logged), so one bad name does not empty the pool.
std::vector<std::string> ResolveWorkerTargets(const std::vector<WorkerTarget>& targets);

}  // namespace saola::router
