// StringTable: an append-only list of byte strings kept in one buffer, for vocabularies and
// merge lists. 49152 tokens as std::vector<std::string> take about 1.6 MB (32 bytes of
// std::string each, plus heap blocks for the long ones); here they take their bytes plus 4 bytes
// of offset each (about 0.6 MB for SmolLM2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "common/check.h"
#include "common/index_iterator.h"

namespace saola::model {

class StringTable {
 public:
  /// The most bytes a table holds in all (offsets are 32-bit). Code that fills a table from
  /// untrusted input checks bytes() + s.size() <= kMaxBytes first; push_back CHECKs it.
  static constexpr size_t kMaxBytes = std::numeric_limits<uint32_t>::max();

  using Iterator = IndexIterator<StringTable>;

  StringTable() = default;
  StringTable(std::initializer_list<std::string_view> strings) {
    for (std::string_view s : strings) push_back(s);
  }

  size_t size() const { return ends_.size(); }
  bool empty() const { return ends_.empty(); }
  /// Total bytes of all strings.
  size_t bytes() const { return bytes_.size(); }

  /// String i; requires i < size(). Valid until the table is next modified.
  std::string_view operator[](size_t i) const {
    const uint32_t begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(bytes_.data() + begin, ends_[i] - begin);
  }
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, size()); }

  void reserve(size_t count, size_t total_bytes) {
    ends_.reserve(count);
    bytes_.reserve(total_bytes);
  }
  void push_back(std::string_view s) {
    SAOLA_CHECK(s.size() <= kMaxBytes - bytes_.size());
    bytes_.append(s);
    ends_.push_back(static_cast<uint32_t>(bytes_.size()));
  }
  /// Empties the table and frees its memory.
  void clear() {
    bytes_ = std::string();
    ends_ = std::vector<uint32_t>();
  }
  /// Drops spare capacity (after filling without an exact reserve).
  void shrink_to_fit() {
    bytes_.shrink_to_fit();
    ends_.shrink_to_fit();
  }

  friend bool operator==(const StringTable& a, const StringTable& b) {
    return a.ends_ == b.ends_ && a.bytes_ == b.bytes_;
  }

 private:
  std::string bytes_;
  std::vector<uint32_t> ends_;  // ends_[i]: offset just past string i in bytes_
};

}  // namespace saola::model
