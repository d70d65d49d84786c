// The Prometheus /metrics HTTP endpoint that the worker and the router both serve: an Exposer on
// host:port (port 0: any free port) over one registry. prometheus-cpp reports a port it cannot
// bind with an exception; this turns it into a status, so no exception leaves the library.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace saola {

/// Serves `registry` at http://host:port/metrics. On failure, Unavailable with a message that
/// starts with `flag` (the command-line flag that chose the port, e.g. "--metrics-port").
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> ServeMetrics(
    absl::string_view flag, const std::string& host, int port,
    std::shared_ptr<prometheus::Registry> registry);

/// The port `exposer` listens on; 0 when it is null or listens on none.
int ListeningPort(const prometheus::Exposer* exposer);

}  // namespace saola
