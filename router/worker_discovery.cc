#include "router/worker_discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace saola::router {
namespace {

// Splits "host:port" or "[v6]:port".
bool SplitHostPort(absl::string_view s, std::string* host, std::string* port) {
  size_t colon = s.rfind(':');
  if (colon == absl::string_view::npos || colon == 0 || colon + 1 == s.size()) return false;
  absl::string_view h = s.substr(0, colon);
  if (absl::StartsWith(h, "[")) {
    if (!absl::EndsWith(h, "]")) return false;
    h = h.substr(1, h.size() - 2);
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(s.substr(colon + 1), &port_number) || port_number <= 0 ||
      port_number > 65535 || h.empty()) {
    return false;
  }
  *host = std::string(h);
  *port = std::string(s.substr(colon + 1));
  return true;
}

}  // namespace

absl::StatusOr<std::vector<WorkerTarget>> ParseWorkerTargets(std::string_view spec_in) {
  const absl::string_view spec(spec_in.data(), spec_in.size());
  std::vector<WorkerTarget> targets;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    WorkerTarget target;
    target.spec = std::string(entry);
    absl::string_view rest = entry;
    target.dns = absl::ConsumePrefix(&rest, "dns:///");
    if (!SplitHostPort(rest, &target.host, &target.port)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--workers: '%s' is not HOST:PORT or dns:///NAME:PORT", std::string(entry)));
    }
    targets.push_back(std::move(target));
  }
  if (targets.empty()) return absl::InvalidArgumentError("--workers: no workers given");
  return targets;
}

std::vector<std::string> ResolveWorkerTargets(const std::vector<WorkerTarget>& targets) {
  std::vector<std::string> addresses;
  for (const WorkerTarget& target : targets) {
    if (!target.dns) {
      addresses.push_back(target.spec);
      continue;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = getaddrinfo(target.host.c_str(), target.port.c_str(), &hints, &found);
    if (rc != 0) {
      std::fprintf(stderr, "saola-router: %s does not resolve (%s)\n", target.spec.c_str(),
                   gai_strerror(rc));
      continue;
    }
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
      char ip[INET6_ADDRSTRLEN] = {};
      if (a->ai_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, ip, sizeof ip);
        addresses.push_back(absl::StrFormat("%s:%s", ip, target.port));
      } else if (a->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, ip,
                  sizeof ip);
        addresses.push_back(absl::StrFormat("[%s]:%s", ip, target.port));
      }
    }
    freeaddrinfo(found);
  }
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  return addresses;
}

}  // namespace saola::router
