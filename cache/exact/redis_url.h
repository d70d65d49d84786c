// Parsing of the router's --redis flag: redis://[[user]:password@]host[:port][/db].
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace saola::cache {

struct RedisEndpoint {
  std::string host;      ///< Name or address; an IPv6 address is written in brackets in the URL.
  int port = 6379;       ///< 1..65535.
  int db = 0;            ///< SELECTed after connecting when not 0.
  std::string username;  ///< AUTH user (Redis 6 ACL); empty: the default user.
  std::string password;  ///< AUTH password; empty: no AUTH.

  /// "host:port", for log lines (never the password).
  std::string Describe() const;
};

/// Parses `url`. INVALID_ARGUMENT, with a message that names --redis, when it is not of the form
/// above: another scheme, no host, a port outside 1..65535, a db that is not a small non-negative
/// integer, or anything after the db.
absl::StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url);

}  // namespace saola::cache
