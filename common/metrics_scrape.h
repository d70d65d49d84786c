// Reading a process's Prometheus /metrics page: for tests and benchmarks that check what a
// worker or router reports.
#pragma once

#include <string>

namespace saola {

/// GET http://127.0.0.1:port/metrics over a plain socket: the body, or empty on failure.
std::string ScrapeMetrics(int port);

}  // namespace saola
