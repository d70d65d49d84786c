#include "cache/semantic/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace saola::cache {
namespace {

// A header larger than this is not a model we want (the reference's is 11 KB); the bound keeps
// a hostile length from making us parse or allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 16 << 20;
// JSON numbers are doubles: integers up to 2^53 are exact, which bounds offsets and dimensions.
constexpr double kMaxExactInteger = 9007199254740992.0;

int DtypeSize(std::string_view dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" ||
      dtype == "F8_E5M2") {
    return 1;
  }
  return 0;
}

// A JSON number that is a non-negative integer no larger than 2^53.
bool AsCount(const json::Value& v, uint64_t* out) {
  if (!v.is_number()) return false;
  const double d = v.num();
  if (!(d >= 0 && d <= kMaxExactInteger) || std::floor(d) != d) return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

absl::Status TensorError(std::string_view name, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor '", std::string(name), "': ", std::string(what)));
}

// Fills `t` (all but the data pointer) from its header entry; `begin` and `end` are the data
// offsets.
absl::Status ParseEntry(const std::string& name, const json::Value& entry, SafetensorsTensor* t,
                        uint64_t* begin, uint64_t* end) {
  if (!entry.is_object()) return TensorError(name, "entry is not an object");
  const json::Value* dtype = entry.Find("dtype");
  const json::Value* shape = entry.Find("shape");
  const json::Value* offsets = entry.Find("data_offsets");
  if (dtype == nullptr || !dtype->is_string()) return TensorError(name, "no dtype string");
  const int elem_size = DtypeSize(dtype->str());
  if (elem_size == 0) return TensorError(name, absl::StrCat("unknown dtype ", dtype->str()));
  if (shape == nullptr || !shape->is_array()) return TensorError(name, "no shape array");
  if (offsets == nullptr || !offsets->is_array() || offsets->arr().size() != 2 ||
      !AsCount(offsets->arr()[0], begin) || !AsCount(offsets->arr()[1], end) || *begin > *end) {
    return TensorError(name, "data_offsets is not [begin, end] with begin <= end");
  }
  t->name = name;
  t->dtype = dtype->str();
  uint64_t num_bytes = static_cast<uint64_t>(elem_size);
  for (const json::Value& dim : shape->arr()) {
    uint64_t d;
    if (!AsCount(dim, &d)) return TensorError(name, "a dimension is not a non-negative integer");
    if (d != 0 && num_bytes > UINT64_MAX / d) return TensorError(name, "shape overflows");
    num_bytes *= d;
    t->shape.push_back(static_cast<int64_t>(d));
  }
  if (num_bytes != *end - *begin) {
    return TensorError(name, absl::StrCat("shape needs ", num_bytes, " bytes, data_offsets span ",
                                          *end - *begin));
  }
  t->num_bytes = static_cast<size_t>(num_bytes);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty or unreadable"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("cannot map ", path, ": ", std::strerror(errno)));
  }
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->mapping_ = base;
  file->bytes_ = static_cast<const uint8_t*>(base);
  file->size_ = size;
  absl::Status status = file->Parse();
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  }
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string bytes) {
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->owned_ = std::move(bytes);
  file->bytes_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  RETURN_IF_ERROR(file->Parse());
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

absl::Status SafetensorsFile::Parse() {
  if (size_ < 8) return absl::InvalidArgumentError("safetensors: shorter than its 8-byte header");
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes_[i];
  if (header_size > kMaxHeaderBytes || header_size > size_ - 8) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: header length ", header_size,
                                                   " exceeds the file (", size_, " bytes)"));
  }
  auto header = json::Parse(
      std::string_view(reinterpret_cast<const char*>(bytes_ + 8), static_cast<size_t>(header_size)));
  if (!header.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: header is not JSON: ", header.status().message()));
  }
  if (!header->is_object()) return absl::InvalidArgumentError("safetensors: header not an object");

  const uint8_t* data = bytes_ + 8 + header_size;
  const uint64_t data_size = size_ - 8 - header_size;
  struct Span {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header->obj()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return absl::InvalidArgumentError("safetensors: bad __metadata__");
      continue;
    }
    SafetensorsTensor t;
    uint64_t begin, end;
    RETURN_IF_ERROR(ParseEntry(name, entry, &t, &begin, &end));
    if (end > data_size) return TensorError(name, "data_offsets past the end of the file");
    t.data = data + begin;
    spans.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(t));
  }
  // The tensors must tile the data buffer: sorted by offset, no gap, no overlap.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  std::vector<SafetensorsTensor> ordered;
  ordered.reserve(spans.size());
  for (const Span& s : spans) {
    if (s.begin != expected) {
      return TensorError(tensors_[s.tensor].name,
                         s.begin < expected ? "overlaps another tensor" : "leaves a gap before it");
    }
    expected = s.end;
    ordered.push_back(std::move(tensors_[s.tensor]));
  }
  if (expected != data_size) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: tensors cover ", expected,
                                                   " of the ", data_size, " data bytes"));
  }
  tensors_ = std::move(ordered);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<const float*> SafetensorsFile::GetF32(std::string_view name,
                                                     absl::Span<const int64_t> shape) const {
  const SafetensorsTensor* t = Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("safetensors: no tensor '", std::string(name), "'"));
  if (t->dtype != "F32") return TensorError(name, absl::StrCat("dtype ", t->dtype, ", want F32"));
  if (!std::equal(t->shape.begin(), t->shape.end(), shape.begin(), shape.end())) {
    return TensorError(name, absl::StrCat("shape [", absl::StrJoin(t->shape, ", "), "], want [",
                                          absl::StrJoin(shape, ", "), "]"));
  }
  if (reinterpret_cast<uintptr_t>(t->data) % alignof(float) != 0) {
    return TensorError(name, "data not aligned to 4 bytes");
  }
  return reinterpret_cast<const float*>(t->data);
}

}  // namespace saola::cache
