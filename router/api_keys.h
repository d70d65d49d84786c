// Tenants from API keys. With no key file every request belongs to the default tenant. With one,
// each call must carry a key, as `authorization: Bearer KEY` or `x-api-key: KEY` metadata, and
// the key names its tenant; a missing or unknown key is UNAUTHENTICATED. The tenant scopes every
// cache key and the KV prefix hashes, so one tenant never gets another's cached answer.
//
// Key file: one `KEY TENANT` pair per line; blank lines and lines starting with '#' are skipped.
// Keys and tenants are 1..256 printable ASCII bytes without spaces.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace saola::router {

inline constexpr char kDefaultTenant[] = "default";  // as the worker's default tenant

class ApiKeys {
 public:
  /// No keys: every call is the default tenant.
  ApiKeys() = default;
  /// Reads a key file; INVALID_ARGUMENT naming --api-keys and the line when malformed.
  static absl::StatusOr<ApiKeys> Load(const std::string& path);
  /// Builds from KEY -> TENANT pairs (tests).
  static absl::StatusOr<ApiKeys> FromMap(const std::map<std::string, std::string>& keys);

  bool enabled() const { return !tenants_.empty(); }
  /// The tenant of a call with this client metadata (lower-case keys, as gRPC gives them).
  absl::StatusOr<std::string> Resolve(const std::multimap<std::string, std::string>& metadata) const;

 private:
  absl::flat_hash_map<std::string, std::string> tenants_;  // key -> tenant
};

}  // namespace saola::router
