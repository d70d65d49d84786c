#pragma once

#include <string>
#include <vector>

namespace saola::router {

/// `saola-router serve`: parses flags, runs the router until SIGTERM or SIGINT, then drains.
/// Returns the process exit code.
int RunServe(const std::vector<std::string>& args);

}  // namespace saola::router
