#include "router/api_keys.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace saola::router {
namespace {

constexpr size_t kMaxFieldBytes = 256;

bool ValidField(absl::string_view s) {
  if (s.empty() || s.size() > kMaxFieldBytes) return false;
  for (char c : s) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::FromMap(const std::map<std::string, std::string>& keys) {
  ApiKeys result;
  for (const auto& [key, tenant] : keys) {
    if (!ValidField(key) || !ValidField(tenant)) {
      return absl::InvalidArgumentError(
          "--api-keys: keys and tenants must be 1..256 printable ASCII bytes without spaces");
    }
    result.tenants_[key] = tenant;
  }
  return result;
}

absl::StatusOr<ApiKeys> ApiKeys::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrFormat("--api-keys: cannot read %s", path));
  std::map<std::string, std::string> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2 || !ValidField(fields[0]) || !ValidField(fields[1])) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--api-keys: %s line %d: expected `KEY TENANT`", path, number));
    }
    if (!keys.emplace(std::string(fields[0]), std::string(fields[1])).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--api-keys: %s line %d: duplicate key", path, number));
    }
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("--api-keys: %s holds no keys", path));
  }
  return FromMap(keys);
}

absl::StatusOr<std::string> ApiKeys::Resolve(
    const std::multimap<std::string, std::string>& metadata) const {
  if (!enabled()) return std::string(kDefaultTenant);
  absl::string_view key;
  if (auto it = metadata.find("x-api-key"); it != metadata.end()) {
    key = it->second;
  } else if (auto it = metadata.find("authorization"); it != metadata.end()) {
    key = it->second;
    if (!absl::ConsumePrefix(&key, "Bearer ") && !absl::ConsumePrefix(&key, "bearer ")) {
      return absl::UnauthenticatedError("authorization: expected `Bearer KEY`");
    }
  } else {
    return absl::UnauthenticatedError(
        "authorization: an API key is required (`authorization: Bearer KEY` or `x-api-key`)");
  }
  auto it = tenants_.find(std::string(key));
  if (it == tenants_.end()) return absl::UnauthenticatedError("authorization: unknown API key");
  return it->second;
}

}  // namespace saola::router
