// A small JSON reader and string escaper: enough for the CLI's JSON lines, golden test fixtures
// and config files. Input is untrusted: depth and sizes are bounded, errors are absl::Status.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace saola::json {

struct Value;
using Object = std::map<std::string, Value, std::less<>>;
using Array = std::vector<Value>;

struct Value {
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> v;

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_number() const { return std::holds_alternative<double>(v); }
  bool is_array() const { return std::holds_alternative<Array>(v); }
  bool is_object() const { return std::holds_alternative<Object>(v); }
  const std::string& str() const { return std::get<std::string>(v); }
  double num() const { return std::get<double>(v); }
  bool boolean() const { return std::get<bool>(v); }
  const Array& arr() const { return std::get<Array>(v); }
  const Object& obj() const { return std::get<Object>(v); }
  /// Member `key` of an object, or nullptr (also when this is not an object).
  const Value* Find(std::string_view key) const;
};

/// Parses one JSON document (RFC 8259; \u escapes incl. surrogate pairs become UTF-8). Trailing
/// non-space characters are an error. Nesting deeper than 64 levels is rejected.
absl::StatusOr<Value> Parse(std::string_view text);

/// `s` as a quoted JSON string. Control characters are escaped; bytes that are not valid UTF-8
/// become U+FFFD so the output is always valid JSON.
std::string Quote(std::string_view s);

}  // namespace saola::json
