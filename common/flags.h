// A strict command-line flag parser for the saola binaries: `--name value`, `--name=value` and
// bare boolean `--name`. Unknown flags, missing values and malformed numbers are errors that name
// the flag, so a typo never silently falls back to a default.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace saola::cli {

class Flags {
 public:
  /// Parses args against the allowed value flags and boolean flags (names without "--").
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& value_flags,
                                     const std::set<std::string>& bool_flags);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  bool Bool(const std::string& name) const { return Has(name); }
  absl::StatusOr<std::string> String(const std::string& name) const;  // required
  /// Integer in [min, max]; `fallback` when absent.
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback, int64_t min,
                              int64_t max) const;
  absl::StatusOr<uint64_t> Uint64(const std::string& name, uint64_t fallback) const;
  /// Finite float in [min, max]; `fallback` when absent.
  absl::StatusOr<double> Float(const std::string& name, double fallback, double min,
                               double max) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace saola::cli
