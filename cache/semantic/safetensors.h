// Reader for the safetensors format (huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON header, then the data buffer. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data buffer), plus an
// optional "__metadata__" object of strings.
//
// The file is untrusted. Loading validates everything the header claims before any tensor is
// handed out: a known dtype, non-negative dimensions whose product times the dtype size equals
// end - begin without overflow, and offsets that tile the data buffer exactly (sorted by begin,
// each tensor starts where the previous one ends, the last ends at the end of the file), which
// also rules out overlaps. Errors are INVALID_ARGUMENT and name the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace saola::cache {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // "F32", "I64", ... as in the header
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the file's bytes
  size_t num_bytes = 0;
};

class SafetensorsFile {
 public:
  /// Maps the file at `path` read-only and parses it.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  /// Parses a file held in memory (tests, fuzzing).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  /// All tensors, in the order of their data offsets.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  /// The tensor called `name`, or nullptr.
  const SafetensorsTensor* Find(std::string_view name) const;
  /// The data of the F32 tensor `name`, which must have exactly `shape`; NOT_FOUND when absent,
  /// INVALID_ARGUMENT for another dtype or shape, or data not aligned to 4 bytes. The pointer
  /// lives as long as this object.
  absl::StatusOr<const float*> GetF32(std::string_view name,
                                      absl::Span<const int64_t> shape) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::string owned_;  // FromBytes
  void* mapping_ = nullptr;  // Open
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;  // name -> position in tensors_
};

}  // namespace saola::cache
