// A bounds-checked, little-endian reader over an immutable byte range (the GGUF parser's only
// way to touch file bytes).
//
// Every read either succeeds completely or fails without moving the cursor, so the caller can
// report the offset where the failed read began. Reads return false instead of a Status so that
// the hot loops (tens of thousands of vocabulary strings) do not format an error message per
// element; the caller builds the message only on failure, with Truncated().
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace saola::model {

class ByteCursor {
 public:
  ByteCursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return size_ - offset_; }

  /// Reads one little-endian integer or IEEE float of type T.
  template <typename T>
  bool Read(T* out) {
    static_assert(std::is_arithmetic_v<T>);
    if (remaining() < sizeof(T)) return false;
    *out = LoadLittleEndian<T>(data_ + offset_);
    offset_ += sizeof(T);
    return true;
  }

  /// Views the next `n` bytes (no copy) and moves past them.
  bool ReadBytes(uint64_t n, std::string_view* out) {
    if (remaining() < n) return false;
    *out = std::string_view(reinterpret_cast<const char*>(data_ + offset_), n);
    offset_ += n;
    return true;
  }

  /// A GGUF string: a uint64 length, then that many bytes.
  bool ReadString(std::string_view* out) {
    const size_t start = offset_;
    uint64_t length = 0;
    if (!Read(&length) || !ReadBytes(length, out)) {
      offset_ = start;
      return false;
    }
    return true;
  }

  /// The error for a read that failed at the current offset; `what` names the value.
  absl::Status Truncated(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrFormat(
        "gguf: truncated at offset %d reading %s (%d bytes left)", offset_, what, remaining()));
  }

  template <typename T>
  static T LoadLittleEndian(const uint8_t* p) {
    using U = std::conditional_t<
        sizeof(T) == 1, uint8_t,
        std::conditional_t<sizeof(T) == 2, uint16_t,
                           std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>>;
    static_assert(sizeof(U) == sizeof(T));
    U bits = 0;
    for (size_t i = 0; i < sizeof(T); ++i) bits |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
    return std::bit_cast<T>(bits);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

}  // namespace saola::model
