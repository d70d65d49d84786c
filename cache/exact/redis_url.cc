#include "cache/exact/redis_url.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace saola::cache {
namespace {

constexpr int kMaxDb = 1 << 16;  // Redis allows any `databases` setting; this bounds typos.

// (Debian's Abseil has its own string_view type, so these take std::string_view themselves.)
bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (s->substr(0, prefix.size()) != prefix) return false;
  s->remove_prefix(prefix.size());
  return true;
}

// A decimal number of 1..max_digits digits and nothing else, or -1.
int ParseDecimal(std::string_view s, size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return -1;
  int value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

// The URL for an error message, its credentials (if any) masked.
std::string Redact(std::string_view url) {
  const size_t start = url.find("://");
  const size_t at = url.rfind('@');
  if (start == std::string_view::npos || at == std::string_view::npos || at < start) {
    return std::string(url);
  }
  return absl::StrCat(std::string(url.substr(0, start + 3)), "***", std::string(url.substr(at)));
}

absl::Status Invalid(std::string_view url, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--redis: ", std::string(why), " in \"", Redact(url),
                                                 "\" (expected redis://[[user]:password@]host[:port][/db])"));
}

}  // namespace

std::string RedisEndpoint::Describe() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url) {
  std::string_view rest = url;
  if (!ConsumePrefix(&rest, "redis://")) return Invalid(url, "the scheme is not redis://");
  RedisEndpoint ep;

  // The path: "/db", or nothing.
  std::string_view authority = rest;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    authority = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      const int value = ParseDecimal(db, 6);
      if (value < 0 || value > kMaxDb) {
        return Invalid(url, absl::StrCat("the database \"", std::string(db), "\" is not a number"));
      }
      ep.db = value;
    }
  }

  // The credentials: "[user]:password@".
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      return Invalid(url, "the credentials before '@' are not [user]:password");
    }
    ep.username = std::string(userinfo.substr(0, colon));
    ep.password = std::string(userinfo.substr(colon + 1));
  }

  // host[:port], the host possibly a bracketed IPv6 address.
  std::string_view host = authority;
  std::string_view port;
  if (ConsumePrefix(&host, "[")) {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return Invalid(url, "an IPv6 address lacks its ']'");
    std::string_view after = host.substr(close + 1);
    host = host.substr(0, close);
    if (!after.empty()) {
      if (!ConsumePrefix(&after, ":")) return Invalid(url, "junk after the IPv6 address");
      port = after;
      if (port.empty()) return Invalid(url, "the port is empty");
    }
  } else if (size_t colon = host.find(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
    if (port.empty()) return Invalid(url, "the port is empty");
  }
  if (host.empty()) return Invalid(url, "the host is empty");
  if (host.find_first_of(" \t/@?#") != std::string_view::npos) {
    return Invalid(url, "the host has characters a host name cannot have");
  }
  ep.host = std::string(host);
  if (!port.empty()) {
    const int value = ParseDecimal(port, 5);
    if (value < 1 || value > 65535) {
      return Invalid(url, absl::StrCat("the port \"", std::string(port), "\" is not in 1..65535"));
    }
    ep.port = value;
  }
  return ep;
}

}  // namespace saola::cache
