// GGUF reader. Layout of a v2/v3 file (all integers little-endian):
//
//   magic "GGUF" | u32 version | u64 num_tensors | u64 num_kv
//   num_kv x      { string key | u32 value_type | value }
//   num_tensors x { string name | u32 n_dims | u64 dims[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32)
//   data section: tensor bytes, each at its offset relative to the aligned start of this section
//
// A string is a u64 length followed by that many bytes; an array value is u32 element_type,
// u64 count, then the elements. The parse is strictly bounds-checked: every count is compared
// with the bytes that remain (times the smallest encoding of one element) before anything is
// reserved, so a hostile count fails fast instead of allocating.
#include "worker/model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/model/byte_cursor.h"

namespace saola::model {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
constexpr uint32_t kMaxGgufType = static_cast<uint32_t>(GgufType::kFloat64);
// Smallest encodings, used to bound counts by the bytes that remain.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;                  // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, 1 dim, type, offset
constexpr size_t kBufferAlignment = 4096;                    // FromBytes copies land page-aligned

// This abseil build has its own string_view type; the header's API uses std::string_view.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

template <typename... Args>
absl::Status InvalidAt(size_t offset, const absl::FormatSpec<Args...>& format,
                       const Args&... args) {
  return absl::InvalidArgumentError(
      absl::StrCat("gguf: ", absl::StrFormat(format, args...), " at offset ", offset));
}

std::string_view GgufTypeName(GgufType type) {
  static constexpr std::string_view kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                                "int32",  "float32", "bool",   "string", "array",
                                                "uint64", "int64",   "float64"};
  const auto index = static_cast<uint32_t>(type);
  return index <= kMaxGgufType ? kNames[index] : "unknown";
}

enum class Family { kUnsigned, kSigned, kFloat, kString, kArray };

Family FamilyOf(GgufType type) {
  switch (type) {
    case GgufType::kInt8:
    case GgufType::kInt16:
    case GgufType::kInt32:
    case GgufType::kInt64: return Family::kSigned;
    case GgufType::kFloat32:
    case GgufType::kFloat64: return Family::kFloat;
    case GgufType::kString: return Family::kString;
    case GgufType::kArray: return Family::kArray;
    default: return Family::kUnsigned;  // uint8..uint64 and bool
  }
}

/// Bytes of one encoded element; strings count their 8-byte length (the least they can take).
uint64_t MinEncodedBytes(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool: return 1;
    case GgufType::kUint16:
    case GgufType::kInt16: return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32: return 4;
    default: return 8;  // 64-bit scalars, string length
  }
}

/// Reads a Narrow and widens it into *out.
template <typename Narrow, typename Wide>
bool ReadAs(ByteCursor& cursor, Wide* out) {
  Narrow v;
  if (!cursor.Read(&v)) return false;
  *out = v;
  return true;
}

bool ReadUnsigned(ByteCursor& cursor, GgufType type, uint64_t* out) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kBool: return ReadAs<uint8_t>(cursor, out);
    case GgufType::kUint16: return ReadAs<uint16_t>(cursor, out);
    case GgufType::kUint32: return ReadAs<uint32_t>(cursor, out);
    default: return ReadAs<uint64_t>(cursor, out);
  }
}

bool ReadSigned(ByteCursor& cursor, GgufType type, int64_t* out) {
  switch (type) {
    case GgufType::kInt8: return ReadAs<int8_t>(cursor, out);
    case GgufType::kInt16: return ReadAs<int16_t>(cursor, out);
    case GgufType::kInt32: return ReadAs<int32_t>(cursor, out);
    default: return ReadAs<int64_t>(cursor, out);
  }
}

bool ReadFloat(ByteCursor& cursor, GgufType type, double* out) {
  return type == GgufType::kFloat32 ? ReadAs<float>(cursor, out) : ReadAs<double>(cursor, out);
}

/// Reads a u32 type tag and checks it names a known type; arrays are allowed only when
/// `allow_array` (nested arrays are rejected).
absl::StatusOr<GgufType> ReadTypeTag(ByteCursor& cursor, bool allow_array, std::string_view key) {
  const size_t at = cursor.offset();
  uint32_t raw = 0;
  if (!cursor.Read(&raw)) {
    return cursor.Truncated(
        absl::StrFormat("%s of key '%s'", allow_array ? "type" : "element type", key));
  }
  if (raw > kMaxGgufType) {
    return InvalidAt(at, "unknown metadata %s %d for key '%s'",
                     allow_array ? "type" : "array element type", raw, key);
  }
  const auto type = static_cast<GgufType>(raw);
  if (type == GgufType::kArray && !allow_array) {
    return InvalidAt(at, "nested arrays are not supported (key '%s')", key);
  }
  return type;
}

/// Reads `count` elements of a scalar family into a vector; Reader is ReadUnsigned etc.
template <typename T, typename Reader>
absl::StatusOr<std::vector<T>> ReadScalarArray(ByteCursor& cursor, GgufType type, uint64_t count,
                                               std::string_view key, Reader read) {
  std::vector<T> values;
  values.reserve(count);  // the caller bounded count by the bytes that remain
  for (uint64_t i = 0; i < count; ++i) {
    const size_t at = cursor.offset();
    T v{};
    if (!read(cursor, type, &v)) {
      return cursor.Truncated(absl::StrFormat("element %d of key '%s'", i, key));
    }
    if constexpr (std::is_same_v<T, uint64_t>) {
      if (type == GgufType::kBool && v > 1) {
        return InvalidAt(at, "invalid bool value %d in element %d of key '%s'", v, i, key);
      }
    }
    values.push_back(v);
  }
  return values;
}

}  // namespace

// Fills a GgufStringArray with the offsets of elements the cursor has bounds-checked.
struct GgufStringArrayBuilder {
  static absl::StatusOr<GgufStringArray> Read(ByteCursor& cursor, uint64_t count,
                                              std::string_view key) {
    GgufStringArray array;
    array.size_ = count;
    array.offsets32_.reserve(count + 1);  // the caller bounded count by the bytes that remain
    const size_t start = cursor.offset();
    auto push = [&](uint64_t offset) {
      if (array.offsets64_.empty() && offset <= std::numeric_limits<uint32_t>::max()) {
        array.offsets32_.push_back(static_cast<uint32_t>(offset));
        return;
      }
      if (array.offsets64_.empty()) {  // past 4 GiB: widen what is there
        array.offsets64_.assign(array.offsets32_.begin(), array.offsets32_.end());
        array.offsets32_ = std::vector<uint32_t>();
      }
      array.offsets64_.push_back(offset);
    };
    for (uint64_t i = 0; i < count; ++i) {
      push(cursor.offset() - start);
      std::string_view s;
      if (!cursor.ReadString(&s)) {
        return cursor.Truncated(absl::StrFormat("string element %d of key '%s'", i, key));
      }
      if (i == 0) array.base_ = s.data() - GgufStringArray::kLengthBytes;
    }
    push(cursor.offset() - start);
    return array;
  }
};

namespace {

absl::Status ReadArray(ByteCursor& cursor, std::string_view key, GgufValue* value) {
  ASSIGN_OR_RETURN(const GgufType element_type, ReadTypeTag(cursor, /*allow_array=*/false, key));
  const size_t count_at = cursor.offset();
  uint64_t count = 0;
  if (!cursor.Read(&count)) {
    return cursor.Truncated(absl::StrFormat("element count of key '%s'", key));
  }
  const uint64_t min_bytes = MinEncodedBytes(element_type);
  if (count > cursor.remaining() / min_bytes) {
    return InvalidAt(count_at, "array '%s' claims %d %s elements but only %d bytes remain", key,
                     count, GgufTypeName(element_type), cursor.remaining());
  }
  value->type = GgufType::kArray;
  value->array_type = element_type;
  switch (FamilyOf(element_type)) {
    case Family::kUnsigned: {
      ASSIGN_OR_RETURN(value->value,
                       ReadScalarArray<uint64_t>(cursor, element_type, count, key, ReadUnsigned));
      return absl::OkStatus();
    }
    case Family::kSigned: {
      ASSIGN_OR_RETURN(value->value,
                       ReadScalarArray<int64_t>(cursor, element_type, count, key, ReadSigned));
      return absl::OkStatus();
    }
    case Family::kFloat: {
      ASSIGN_OR_RETURN(value->value,
                       ReadScalarArray<double>(cursor, element_type, count, key, ReadFloat));
      return absl::OkStatus();
    }
    default: {
      ASSIGN_OR_RETURN(value->value, GgufStringArrayBuilder::Read(cursor, count, key));
      return absl::OkStatus();
    }
  }
}

absl::StatusOr<GgufValue> ReadValue(ByteCursor& cursor, std::string_view key) {
  GgufValue value;
  ASSIGN_OR_RETURN(value.type, ReadTypeTag(cursor, /*allow_array=*/true, key));
  const size_t at = cursor.offset();
  const auto truncated = [&] {
    return cursor.Truncated(absl::StrFormat("value of key '%s'", key));
  };
  switch (FamilyOf(value.type)) {
    case Family::kUnsigned: {
      uint64_t v = 0;
      if (!ReadUnsigned(cursor, value.type, &v)) return truncated();
      if (value.type == GgufType::kBool && v > 1) {
        return InvalidAt(at, "invalid bool value %d for key '%s'", v, key);
      }
      value.value = v;
      break;
    }
    case Family::kSigned: {
      int64_t v = 0;
      if (!ReadSigned(cursor, value.type, &v)) return truncated();
      value.value = v;
      break;
    }
    case Family::kFloat: {
      double v = 0;
      if (!ReadFloat(cursor, value.type, &v)) return truncated();
      value.value = v;
      break;
    }
    case Family::kString: {
      std::string_view s;
      if (!cursor.ReadString(&s)) return truncated();
      value.value = std::string(s);
      break;
    }
    case Family::kArray: RETURN_IF_ERROR(ReadArray(cursor, key, &value)); break;
  }
  return value;
}

/// Fails with the version problem, or OK for v2/v3.
absl::Status CheckVersion(uint32_t version) {
  if (version == 2 || version == 3) return absl::OkStatus();
  const uint32_t swapped = __builtin_bswap32(version);
  if (swapped == 2 || swapped == 3) {
    return absl::UnimplementedError(absl::StrFormat(
        "gguf: big-endian (byte-swapped) GGUF v%d files are not supported; only little-endian",
        swapped));
  }
  if (version == 1) {
    return absl::UnimplementedError(
        "gguf: GGUF version 1 is not supported (only versions 2 and 3)");
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("gguf: unsupported GGUF version %d (only versions 2 and 3)", version));
}

/// The tensor's ggml type as a DType, or an error naming the tensor and the type id.
absl::StatusOr<kernels::DType> TensorType(uint32_t ggml_type, std::string_view name, size_t at) {
  if (std::optional<kernels::DType> type = DTypeFromGgmlType(ggml_type)) return *type;
  const std::string_view type_name = GgmlTypeName(ggml_type);
  if (type_name == "unknown") {
    return InvalidAt(at, "tensor '%s' has unknown ggml type id %d", name, ggml_type);
  }
  return absl::UnimplementedError(absl::StrFormat(
      "gguf: tensor '%s' has ggml type id %d (%s), which Saola does not support, at offset %d",
      name, ggml_type, type_name, at));
}

/// Reads n_dims and the dims of tensor `name`, checking each dim and the element count.
absl::Status ReadDims(ByteCursor& cursor, std::string_view name, GgufTensor* tensor) {
  size_t at = cursor.offset();
  uint32_t num_dims = 0;
  if (!cursor.Read(&num_dims)) {
    return cursor.Truncated(absl::StrFormat("n_dims of tensor '%s'", name));
  }
  if (num_dims == 0 || num_dims > kMaxDims) {
    return InvalidAt(at, "tensor '%s' has %d dims (1 to %d allowed)", name, num_dims, kMaxDims);
  }
  int64_t num_elements = 1;
  for (uint32_t d = 0; d < num_dims; ++d) {
    at = cursor.offset();
    uint64_t dim = 0;
    if (!cursor.Read(&dim)) {
      return cursor.Truncated(absl::StrFormat("dim %d of tensor '%s'", d, name));
    }
    if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidAt(at, "tensor '%s' has invalid dim %d = %d (must be positive)", name, d,
                       static_cast<int64_t>(dim));
    }
    tensor->dims.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(num_elements, static_cast<int64_t>(dim), &num_elements)) {
      return InvalidAt(at, "element count of tensor '%s' overflows", name);
    }
  }
  tensor->num_elements = num_elements;
  return absl::OkStatus();
}

/// Checks that rows are whole blocks and sets num_bytes.
absl::Status SizeTensor(std::string_view name, size_t at, GgufTensor* tensor) {
  const kernels::DTypeInfo info = kernels::GetDTypeInfo(tensor->type);
  if (tensor->dims[0] % info.block_elems != 0) {
    return InvalidAt(at, "tensor '%s' (%s) has row length %d, not a multiple of the block size %d",
                     name, info.name, tensor->dims[0], info.block_elems);
  }
  const uint64_t num_blocks = static_cast<uint64_t>(tensor->num_elements) / info.block_elems;
  uint64_t num_bytes = 0;
  if (__builtin_mul_overflow(num_blocks, static_cast<uint64_t>(info.block_bytes), &num_bytes)) {
    return InvalidAt(at, "byte size of tensor '%s' overflows", name);
  }
  tensor->num_bytes = num_bytes;
  return absl::OkStatus();
}

}  // namespace

std::optional<kernels::DType> DTypeFromGgmlType(uint32_t ggml_type) {
  using kernels::DType;
  switch (ggml_type) {
    case 0: return DType::kF32;
    case 1: return DType::kF16;
    case 2: return DType::kQ4_0;
    case 3: return DType::kQ4_1;
    case 8: return DType::kQ8_0;
    case 9: return DType::kQ8_1;
    case 12: return DType::kQ4_K;
    case 14: return DType::kQ6_K;
    case 30: return DType::kBF16;
    default: return std::nullopt;
  }
}

uint32_t GgmlTypeId(kernels::DType type) {
  using kernels::DType;
  switch (type) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kQ4_0: return 2;
    case DType::kQ4_1: return 3;
    case DType::kQ8_0: return 8;
    case DType::kQ8_1: return 9;
    case DType::kQ4_K: return 12;
    case DType::kQ6_K: return 14;
    case DType::kBF16: return 30;
  }
  return 0;
}

std::string_view GgmlTypeName(uint32_t ggml_type) {
  // ggml's numbering; the empty slots are ids ggml retired.
  static constexpr std::string_view kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "",       "",      "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16",  "",
      "",        "",       "TQ1_0",   "TQ2_0", "",       "",      "",      "MXFP4"};
  if (ggml_type >= std::size(kNames) || kNames[ggml_type].empty()) return "unknown";
  return kNames[ggml_type];
}

void GgufFile::AlignedDelete::operator()(uint8_t* p) const {
  ::operator delete[](p, std::align_val_t{kBufferAlignment});
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return absl::NotFoundError(absl::StrCat("gguf: no such file: ", path));
    return absl::ErrnoToStatus(error, absl::StrCat("gguf: cannot open ", path));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat("gguf: cannot stat ", path));
  }
  if (!S_ISREG(st.st_mode) || st.st_size == 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        "gguf: not a GGUF file: ", path, S_ISREG(st.st_mode) ? " is empty" : " is not a file"));
  }
  const auto size = static_cast<size_t>(st.st_size);
  // MAP_PRIVATE without MAP_POPULATE: pages are read on first touch, so RSS stays at what the
  // model actually uses (a tensor-parallel rank touches only its shard).
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int error = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    return absl::ErrnoToStatus(error, absl::StrCat("gguf: cannot map ", path));
  }

  auto file = std::unique_ptr<GgufFile>(new GgufFile());
  file->base_ = static_cast<const uint8_t*>(base);
  file->size_ = size;
  file->mapped_ = true;
  if (absl::Status status = file->Parse(); !status.ok()) {
    return absl::Status(status.code(), absl::StrCat(status.message(), " (in ", path, ")"));
  }
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBytes(std::string bytes) {
  auto file = std::unique_ptr<GgufFile>(new GgufFile());
  file->owned_bytes_.reset(
      static_cast<uint8_t*>(::operator new[](bytes.size(), std::align_val_t{kBufferAlignment})));
  if (!bytes.empty()) std::memcpy(file->owned_bytes_.get(), bytes.data(), bytes.size());
  file->base_ = file->owned_bytes_.get();
  file->size_ = bytes.size();
  bytes = std::string();  // free the caller's copy before the metadata is built
  RETURN_IF_ERROR(file->Parse());
  return file;
}

GgufFile::~GgufFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

absl::Status GgufFile::Parse() {
  ByteCursor cursor(base_, size_);
  uint32_t magic = 0;
  if (!cursor.Read(&magic)) return cursor.Truncated("magic (not a GGUF file)");
  if (magic != kMagic) {
    return absl::InvalidArgumentError("gguf: not a GGUF file (bad magic at offset 0)");
  }
  if (!cursor.Read(&version_)) return cursor.Truncated("version");
  RETURN_IF_ERROR(CheckVersion(version_));
  uint64_t num_tensors = 0;
  uint64_t num_kv = 0;
  if (!cursor.Read(&num_tensors)) return cursor.Truncated("tensor count");
  if (!cursor.Read(&num_kv)) return cursor.Truncated("metadata count");
  RETURN_IF_ERROR(ParseMetadata(cursor, num_kv));
  RETURN_IF_ERROR(ApplyAlignment());
  RETURN_IF_ERROR(ParseTensorInfos(cursor, num_tensors));

  // The data section starts at the next multiple of the alignment.
  uint64_t data_start = cursor.offset();
  const uint64_t misalignment = data_start % alignment_;
  if (misalignment != 0 &&
      __builtin_add_overflow(data_start, alignment_ - misalignment, &data_start)) {
    data_start = std::numeric_limits<uint64_t>::max();
  }
  return PlaceTensorData(data_start);
}

absl::Status GgufFile::ParseMetadata(ByteCursor& cursor, uint64_t num_kv) {
  if (num_kv > cursor.remaining() / kMinKvBytes) {
    return InvalidAt(16, "metadata count %d is impossible with %d bytes left", num_kv,
                     cursor.remaining());
  }
  keys_.reserve(num_kv);
  metadata_.reserve(num_kv);
  for (uint64_t i = 0; i < num_kv; ++i) {
    const size_t at = cursor.offset();
    std::string_view key;
    if (!cursor.ReadString(&key)) {
      return cursor.Truncated(absl::StrFormat("key %d (of %d)", i, num_kv));
    }
    if (metadata_.contains(AbslView(key))) return InvalidAt(at, "duplicate key '%s'", key);
    ASSIGN_OR_RETURN(GgufValue value, ReadValue(cursor, key));
    keys_.emplace_back(key);
    metadata_.emplace(key, std::move(value));
  }
  return absl::OkStatus();
}

absl::Status GgufFile::ApplyAlignment() {
  if (Find("general.alignment") == nullptr) {
    alignment_ = kDefaultAlignment;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const uint64_t alignment, GetUint("general.alignment"));
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "gguf: general.alignment is %d; it must be a nonzero power of two", alignment));
  }
  alignment_ = alignment;
  return absl::OkStatus();
}

absl::Status GgufFile::ParseTensorInfos(ByteCursor& cursor, uint64_t num_tensors) {
  if (num_tensors > cursor.remaining() / kMinTensorInfoBytes) {
    return InvalidAt(8, "tensor count %d is impossible with %d bytes left after the metadata",
                     num_tensors, cursor.remaining());
  }
  tensors_.reserve(num_tensors);
  tensor_offsets_.reserve(num_tensors);
  tensor_index_.reserve(num_tensors);
  for (uint64_t i = 0; i < num_tensors; ++i) {
    const size_t name_at = cursor.offset();
    std::string_view name;
    if (!cursor.ReadString(&name)) {
      return cursor.Truncated(absl::StrFormat("name of tensor %d (of %d)", i, num_tensors));
    }
    if (tensor_index_.contains(AbslView(name))) {
      return InvalidAt(name_at, "duplicate tensor name '%s'", name);
    }
    GgufTensor tensor;
    tensor.name = std::string(name);
    RETURN_IF_ERROR(ReadDims(cursor, name, &tensor));
    const size_t type_at = cursor.offset();
    uint32_t ggml_type = 0;
    if (!cursor.Read(&ggml_type)) {
      return cursor.Truncated(absl::StrFormat("type of tensor '%s'", name));
    }
    ASSIGN_OR_RETURN(tensor.type, TensorType(ggml_type, name, type_at));
    RETURN_IF_ERROR(SizeTensor(name, name_at, &tensor));
    const size_t offset_at = cursor.offset();
    uint64_t offset = 0;
    if (!cursor.Read(&offset)) {
      return cursor.Truncated(absl::StrFormat("offset of tensor '%s'", name));
    }
    if (offset % alignment_ != 0) {
      return InvalidAt(offset_at,
                       "tensor '%s' data offset %d is not a multiple of the alignment %d", name,
                       offset, alignment_);
    }
    tensor_index_.emplace(tensor.name, tensors_.size());
    tensors_.push_back(std::move(tensor));
    tensor_offsets_.push_back(offset);
  }
  return absl::OkStatus();
}

absl::Status GgufFile::PlaceTensorData(uint64_t data_start) {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensor& tensor = tensors_[i];
    uint64_t begin = 0;
    uint64_t end = 0;
    if (__builtin_add_overflow(data_start, tensor_offsets_[i], &begin) ||
        __builtin_add_overflow(begin, tensor.num_bytes, &end) || end > size_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "gguf: tensor '%s' data (offset %d + %d bytes after the data section at %d) lies "
          "outside the file (%d bytes)",
          tensor.name, tensor_offsets_[i], tensor.num_bytes, data_start, size_));
    }
    tensor.data = base_ + begin;
  }
  tensor_offsets_.clear();
  tensor_offsets_.shrink_to_fit();
  return absl::OkStatus();
}

// Typed getters. A value converts when its family matches, or when an integer of the other
// signedness holds a value that fits; floats accept integers too (exactly representable or not,
// as a model config would mean them).
namespace {

absl::Status WrongType(std::string_view key, const GgufValue& value, std::string_view wanted) {
  if (value.type == GgufType::kArray) {
    return absl::InvalidArgumentError(absl::StrFormat("gguf: key '%s' is an array of %s, not %s",
                                                      key, GgufTypeName(value.array_type), wanted));
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("gguf: key '%s' is a %s, not %s", key, GgufTypeName(value.type), wanted));
}

absl::Status NotFound(std::string_view key) {
  return absl::NotFoundError(absl::StrFormat("gguf: key '%s' not found", key));
}

bool IsInteger(GgufType type) {
  const Family family = FamilyOf(type);
  return type != GgufType::kBool && (family == Family::kUnsigned || family == Family::kSigned);
}

}  // namespace

absl::StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (IsInteger(value->type)) {
    if (const auto* u = std::get_if<uint64_t>(&value->value)) return *u;
    const int64_t i = std::get<int64_t>(value->value);
    if (i >= 0) return static_cast<uint64_t>(i);
    return absl::InvalidArgumentError(
        absl::StrFormat("gguf: key '%s' is %d, not an unsigned integer", key, i));
  }
  return WrongType(key, *value, "an unsigned integer");
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (IsInteger(value->type)) {
    if (const auto* i = std::get_if<int64_t>(&value->value)) return *i;
    const uint64_t u = std::get<uint64_t>(value->value);
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return static_cast<int64_t>(u);
    }
    return absl::InvalidArgumentError(
        absl::StrFormat("gguf: key '%s' is %d, too large for int64", key, u));
  }
  return WrongType(key, *value, "an integer");
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (const auto* d = std::get_if<double>(&value->value)) return *d;
  if (IsInteger(value->type)) {
    if (const auto* u = std::get_if<uint64_t>(&value->value)) return static_cast<double>(*u);
    return static_cast<double>(std::get<int64_t>(value->value));
  }
  return WrongType(key, *value, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (value->type != GgufType::kBool) return WrongType(key, *value, "a bool");
  return std::get<uint64_t>(value->value) != 0;
}

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (value->type != GgufType::kString) return WrongType(key, *value, "a string");
  return std::get<std::string>(value->value);
}

absl::StatusOr<const GgufStringArray*> GgufFile::GetStringArray(
    std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (value->type != GgufType::kArray || value->array_type != GgufType::kString) {
    return WrongType(key, *value, "an array of strings");
  }
  return &std::get<GgufStringArray>(value->value);
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (value->type != GgufType::kArray || !IsInteger(value->array_type)) {
    return WrongType(key, *value, "an array of integers");
  }
  if (const auto* i = std::get_if<std::vector<int64_t>>(&value->value)) return *i;
  const auto& u = std::get<std::vector<uint64_t>>(value->value);
  std::vector<int64_t> out;
  out.reserve(u.size());
  for (size_t k = 0; k < u.size(); ++k) {
    if (u[k] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrFormat("gguf: element %d of key '%s' is %d, too large for int64", k, key, u[k]));
    }
    out.push_back(static_cast<int64_t>(u[k]));
  }
  return out;
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) return NotFound(key);
  if (value->type == GgufType::kArray) {
    if (const auto* d = std::get_if<std::vector<double>>(&value->value)) return *d;
    if (IsInteger(value->array_type)) {
      std::vector<double> out;
      if (const auto* u = std::get_if<std::vector<uint64_t>>(&value->value)) {
        out.assign(u->begin(), u->end());
      } else {
        const auto& i = std::get<std::vector<int64_t>>(value->value);
        out.assign(i.begin(), i.end());
      }
      return out;
    }
  }
  return WrongType(key, *value, "an array of numbers");
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_.find(AbslView(key));
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(AbslView(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace saola::model
