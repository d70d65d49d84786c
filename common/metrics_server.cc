#include "common/metrics_server.h"

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"

namespace saola {

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> ServeMetrics(
    absl::string_view flag, const std::string& host, int port,
    std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(absl::StrCat(host, ":", port));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat(flag, ": cannot listen on ", host, ":", port, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  return exposer;
}

int ListeningPort(const prometheus::Exposer* exposer) {
  if (exposer == nullptr) return 0;
  const std::vector<int> ports = exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace saola
