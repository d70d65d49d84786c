// GGUF (v2 and v3) reader: metadata of every type, tensor infos, and zero-copy tensor views over
// an mmap'd file.
//
// The file is untrusted input. Every count, length, offset and size read from it is checked
// against the bytes that remain and against integer overflow before it is used; a truncated,
// corrupt or hostile file yields an absl::Status naming what is wrong (the key or tensor and the
// byte offset), never a crash or an out-of-bounds read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/index_iterator.h"
#include "kernels/dtype.h"

namespace saola::model {

/// GGUF metadata value types, numbered as in the file format.
enum class GgufType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

/// The kernels::DType for a ggml tensor type id (F32=0, F16=1, Q4_0=2, Q4_1=3, Q8_0=8, Q8_1=9,
/// Q4_K=12, Q6_K=14, BF16=30); nullopt for every other id.
std::optional<kernels::DType> DTypeFromGgmlType(uint32_t ggml_type);
/// The ggml tensor type id of `type` (the inverse of DTypeFromGgmlType).
uint32_t GgmlTypeId(kernels::DType type);
/// ggml's name for a tensor type id ("Q5_K"), or "unknown" (for error messages).
std::string_view GgmlTypeName(uint32_t ggml_type);

/// A metadata array of strings, viewed in place: each element is a std::string_view into the
/// file's bytes, valid while the GgufFile that returned it lives. Only the element offsets are
/// stored (4 bytes each; 8 for an array spanning more than 4 GiB), not copies of the strings: a
/// 49152-token vocabulary costs about 200 KB instead of the 1.5 MB a std::vector<std::string>
/// would take.
class GgufStringArray {
 public:
  using Iterator = IndexIterator<GgufStringArray>;

  GgufStringArray() = default;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// Element i; requires i < size().
  std::string_view operator[](size_t i) const {
    const uint64_t begin = offsets32_.empty() ? offsets64_[i] : offsets32_[i];
    const uint64_t end = offsets32_.empty() ? offsets64_[i + 1] : offsets32_[i + 1];
    return std::string_view(base_ + begin + kLengthBytes, end - begin - kLengthBytes);
  }
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, size_); }

 private:
  friend struct GgufStringArrayBuilder;  // the parser (gguf.cc) fills it in
  static constexpr uint64_t kLengthBytes = 8;  // each element's u64 length prefix

  // Element i is encoded (length prefix, then bytes) at [base_ + offsets[i], base_ +
  // offsets[i + 1]); offsets32_ is used while the array spans less than 4 GiB, else offsets64_.
  const char* base_ = nullptr;
  size_t size_ = 0;
  std::vector<uint32_t> offsets32_;
  std::vector<uint64_t> offsets64_;
};

/// One metadata value. Scalars are widened into the variant; arrays of numbers keep their
/// element type and are widened too; arrays of strings are views into the file.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType array_type = GgufType::kUint8;  // element type when type == kArray
  // Scalars: uint64_t (all unsigned and bool), int64_t (signed), double (floats), std::string.
  // Arrays: one vector per number family, GgufStringArray for strings; nested arrays are
  // rejected.
  std::variant<uint64_t, int64_t, double, std::string, std::vector<uint64_t>,
               std::vector<int64_t>, std::vector<double>, GgufStringArray>
      value;
};

/// A tensor inside the mapped file. dims are in ggml order: dims[0] is the contiguous (row)
/// length, so a 2-D weight is dims = {cols, rows}.
struct GgufTensor {
  std::string name;
  kernels::DType type = kernels::DType::kF32;
  std::vector<int64_t> dims;
  int64_t num_elements = 0;
  const uint8_t* data = nullptr;  // points into the mapping; valid while the GgufFile lives
  size_t num_bytes = 0;
};

class ByteCursor;

class GgufFile {
 public:
  /// Maps the file at `path` read-only and parses it.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  /// Parses an in-memory copy (tests and fuzzers). The bytes are copied into a page-aligned
  /// buffer so tensor data has the same alignment as in a mapped file.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBytes(std::string bytes);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  /// The whole file (file_size() bytes); tensor data points into it.
  const uint8_t* data() const { return base_; }

  /// nullptr when the key is absent.
  const GgufValue* Find(std::string_view key) const;

  // Typed getters: NOT_FOUND when absent, INVALID_ARGUMENT naming the key when the stored type
  // does not convert (integers convert between widths only when the value fits).
  absl::StatusOr<uint64_t> GetUint(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  /// The elements view the file's bytes: valid while this GgufFile lives.
  absl::StatusOr<const GgufStringArray*> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;

  const std::vector<std::string>& keys() const { return keys_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  /// nullptr when absent.
  const GgufTensor* FindTensor(std::string_view name) const;

 private:
  struct AlignedDelete {
    void operator()(uint8_t* p) const;
  };

  GgufFile() = default;
  absl::Status Parse();
  absl::Status ParseMetadata(ByteCursor& cursor, uint64_t num_kv);
  absl::Status ApplyAlignment();
  absl::Status ParseTensorInfos(ByteCursor& cursor, uint64_t num_tensors);
  absl::Status PlaceTensorData(uint64_t data_start);

  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;  // base_ came from mmap and must be unmapped
  std::unique_ptr<uint8_t, AlignedDelete> owned_bytes_;  // backing store for FromBytes
  std::vector<uint64_t> tensor_offsets_;  // relative offsets, parallel to tensors_, while parsing
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::string> keys_;
  absl::flat_hash_map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
};

}  // namespace saola::model
