#include "tests/common/gguf_writer.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace saola::test {
namespace {

using model::GgufType;
using model::GgufValue;

constexpr uint32_t kMagic = 0x46554747;  // "GGUF"
constexpr uint64_t kDefaultAlignment = 32;

/// Writes one scalar of `type`; `u`, `i`, `d` carry the value of its family.
void PutScalar(ByteWriter& out, GgufType type, uint64_t u, int64_t i, double d) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kBool: out.U8(static_cast<uint8_t>(u)); break;
    case GgufType::kInt8: out.U8(static_cast<uint8_t>(i)); break;
    case GgufType::kUint16: out.U16(static_cast<uint16_t>(u)); break;
    case GgufType::kInt16: out.U16(static_cast<uint16_t>(i)); break;
    case GgufType::kUint32: out.U32(static_cast<uint32_t>(u)); break;
    case GgufType::kInt32: out.U32(static_cast<uint32_t>(i)); break;
    case GgufType::kUint64: out.U64(u); break;
    case GgufType::kInt64: out.U64(static_cast<uint64_t>(i)); break;
    case GgufType::kFloat32: out.F32(static_cast<float>(d)); break;
    case GgufType::kFloat64: out.F64(d); break;
    default: SAOLA_CHECK(false && "not a scalar type");
  }
}

/// Writes `value` (scalar, or each element of an array of scalars) as `type`.
template <typename Value>
void PutAs(ByteWriter& out, GgufType type, const Value& v) {
  if constexpr (std::is_same_v<Value, uint64_t>) PutScalar(out, type, v, 0, 0);
  if constexpr (std::is_same_v<Value, int64_t>) PutScalar(out, type, 0, v, 0);
  if constexpr (std::is_same_v<Value, double>) PutScalar(out, type, 0, 0, v);
  if constexpr (std::is_same_v<Value, std::string>) out.Str(v);
  if constexpr (std::is_same_v<Value, std::vector<uint64_t>> ||
                std::is_same_v<Value, std::vector<int64_t>> ||
                std::is_same_v<Value, std::vector<double>>) {
    for (const auto& e : v) PutAs(out, type, e);
  }
}

template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};

uint64_t AlignUp(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

}  // namespace

ByteWriter& ByteWriter::Int(uint64_t v, int n) {
  for (int k = 0; k < n; ++k) bytes_.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  return *this;
}

ByteWriter& ByteWriter::F32(float v) { return U32(std::bit_cast<uint32_t>(v)); }
ByteWriter& ByteWriter::F64(double v) { return U64(std::bit_cast<uint64_t>(v)); }

GgufWriter::GgufWriter(uint32_t version, uint64_t alignment)
    : version_(version), alignment_(alignment) {
  if (alignment != kDefaultAlignment) {
    AddUint32("general.alignment", static_cast<uint32_t>(alignment));
  }
}

void GgufWriter::AddValue(std::string key, const GgufValue& value) {
  ByteWriter out;
  if (value.type == GgufType::kArray) {
    out.U32(static_cast<uint32_t>(value.array_type));
    std::visit(
        [&](const auto& v) {
          if constexpr (IsVector<std::decay_t<decltype(v)>>::value) {
            out.U64(v.size());
            PutAs(out, value.array_type, v);
          } else if constexpr (std::is_same_v<std::decay_t<decltype(v)>,
                                              model::GgufStringArray>) {
            out.U64(v.size());
            for (std::string_view s : v) out.Str(s);
          } else {
            SAOLA_CHECK(false && "an array value must hold a vector");
          }
        },
        value.value);
  } else {
    std::visit([&](const auto& v) { PutAs(out, value.type, v); }, value.value);
  }
  kvs_.push_back({std::move(key), static_cast<uint32_t>(value.type), out.bytes()});
}

void GgufWriter::Add(std::string key, GgufValue value) { AddValue(std::move(key), value); }

void GgufWriter::AddRawKv(std::string key, uint32_t type, std::string value_bytes) {
  kvs_.push_back({std::move(key), type, std::move(value_bytes)});
}

void GgufWriter::AddUint8(std::string key, uint8_t v) {
  AddValue(std::move(key), {GgufType::kUint8, {}, uint64_t{v}});
}
void GgufWriter::AddInt8(std::string key, int8_t v) {
  AddValue(std::move(key), {GgufType::kInt8, {}, int64_t{v}});
}
void GgufWriter::AddUint16(std::string key, uint16_t v) {
  AddValue(std::move(key), {GgufType::kUint16, {}, uint64_t{v}});
}
void GgufWriter::AddInt16(std::string key, int16_t v) {
  AddValue(std::move(key), {GgufType::kInt16, {}, int64_t{v}});
}
void GgufWriter::AddUint32(std::string key, uint32_t v) {
  AddValue(std::move(key), {GgufType::kUint32, {}, uint64_t{v}});
}
void GgufWriter::AddInt32(std::string key, int32_t v) {
  AddValue(std::move(key), {GgufType::kInt32, {}, int64_t{v}});
}
void GgufWriter::AddUint64(std::string key, uint64_t v) {
  AddValue(std::move(key), {GgufType::kUint64, {}, v});
}
void GgufWriter::AddInt64(std::string key, int64_t v) {
  AddValue(std::move(key), {GgufType::kInt64, {}, v});
}
void GgufWriter::AddFloat32(std::string key, float v) {
  AddValue(std::move(key), {GgufType::kFloat32, {}, double{v}});
}
void GgufWriter::AddFloat64(std::string key, double v) {
  AddValue(std::move(key), {GgufType::kFloat64, {}, v});
}
void GgufWriter::AddBool(std::string key, bool v) {
  AddValue(std::move(key), {GgufType::kBool, {}, uint64_t{v}});
}
void GgufWriter::AddString(std::string key, std::string v) {
  AddValue(std::move(key), {GgufType::kString, {}, std::move(v)});
}

void GgufWriter::AddUintArray(std::string key, GgufType element_type, std::vector<uint64_t> v) {
  AddValue(std::move(key), {GgufType::kArray, element_type, std::move(v)});
}
void GgufWriter::AddIntArray(std::string key, GgufType element_type, std::vector<int64_t> v) {
  AddValue(std::move(key), {GgufType::kArray, element_type, std::move(v)});
}
void GgufWriter::AddFloatArray(std::string key, GgufType element_type, std::vector<double> v) {
  AddValue(std::move(key), {GgufType::kArray, element_type, std::move(v)});
}
void GgufWriter::AddStringArray(std::string key, std::vector<std::string> v) {
  // Written directly: a GgufValue holds string arrays only as views into a parsed file.
  ByteWriter out;
  out.U32(static_cast<uint32_t>(GgufType::kString)).U64(v.size());
  for (const std::string& s : v) out.Str(s);
  kvs_.push_back({std::move(key), static_cast<uint32_t>(GgufType::kArray), out.bytes()});
}

void GgufWriter::AddTensor(std::string name, kernels::DType type, std::vector<int64_t> dims,
                           std::string data) {
  int64_t num_elements = 1;
  for (int64_t d : dims) num_elements *= d;
  const kernels::DTypeInfo info = kernels::GetDTypeInfo(type);
  SAOLA_CHECK(!dims.empty() && dims[0] % info.block_elems == 0);
  SAOLA_CHECK(data.size() ==
              static_cast<size_t>(num_elements / info.block_elems * info.block_bytes));
  RawTensor raw{std::move(name), model::GgmlTypeId(type), {}, std::move(data), std::nullopt};
  for (int64_t d : dims) raw.dims.push_back(static_cast<uint64_t>(d));
  tensors_.push_back(std::move(raw));
}

void GgufWriter::AddRawTensor(RawTensor tensor) { tensors_.push_back(std::move(tensor)); }

std::string GgufWriter::ToBytes() const {
  ByteWriter out;
  out.U32(kMagic).U32(version_).U64(tensors_.size()).U64(kvs_.size());
  for (const Kv& kv : kvs_) out.Str(kv.key).U32(kv.type).Raw(kv.value_bytes);

  // Data offsets: packed in order, each aligned.
  std::vector<uint64_t> offsets;
  uint64_t next = 0;
  for (const RawTensor& t : tensors_) {
    offsets.push_back(t.offset.value_or(next));
    next = AlignUp(offsets.back() + t.data.size(), alignment_);
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const RawTensor& t = tensors_[i];
    out.Str(t.name).U32(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) out.U64(d);
    out.U32(t.ggml_type).U64(offsets[i]);
  }
  if (tensors_.empty()) return out.bytes();

  const uint64_t data_start = AlignUp(out.size(), alignment_);
  out.Zeros(data_start - out.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (tensors_[i].data.empty()) continue;  // a raw info without data (offset tests)
    std::string& bytes = out.mutable_bytes();
    const uint64_t begin = data_start + offsets[i];
    const uint64_t end = begin + tensors_[i].data.size();
    if (bytes.size() < end) bytes.resize(end, '\0');
    bytes.replace(begin, tensors_[i].data.size(), tensors_[i].data);
  }
  return out.bytes();
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  const std::string bytes = ToBytes();
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) return absl::InternalError(absl::StrCat("gguf_writer: cannot create ", path));
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  file.close();
  if (!file) return absl::InternalError(absl::StrCat("gguf_writer: cannot write ", path));
  return absl::OkStatus();
}

std::string RandomBytes(size_t num_bytes, uint64_t seed) {
  std::string out(num_bytes, '\0');
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < num_bytes; ++i) {
    // splitmix64, one byte per step: cheap and fully deterministic across platforms.
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    out[i] = static_cast<char>((z ^ (z >> 31)) & 0xff);
  }
  return out;
}

namespace {

/// IEEE half bits of `f`, for normal values of moderate size (round to nearest even).
uint16_t HalfBits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int exponent = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  if (exponent <= 0) return static_cast<uint16_t>(sign);  // flush tiny values to zero
  uint32_t mantissa = x & 0x7fffff;
  uint32_t half = (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;
  return static_cast<uint16_t>(sign | half);
}

void PutHalf(std::string& bytes, size_t at, float f) {
  const uint16_t h = HalfBits(f);
  bytes[at] = static_cast<char>(h & 0xff);
  bytes[at + 1] = static_cast<char>(h >> 8);
}

/// Byte offsets of the f16 scales inside one block of `type`.
std::vector<size_t> ScaleOffsets(kernels::DType type) {
  using kernels::DType;
  switch (type) {
    case DType::kQ8_0:
    case DType::kQ4_0: return {0};
    case DType::kQ4_1:
    case DType::kQ8_1:
    case DType::kQ4_K: return {0, 2};
    case DType::kQ6_K: return {208};  // after ql[128], qh[64], scales[16]
    default: return {};
  }
}

}  // namespace

std::string RandomTensorData(kernels::DType type, int64_t num_elements, uint64_t seed) {
  using kernels::DType;
  const kernels::DTypeInfo info = kernels::GetDTypeInfo(type);
  SAOLA_CHECK(num_elements % info.block_elems == 0);
  const std::string noise = RandomBytes(static_cast<size_t>(num_elements) * 4, seed);
  const auto uniform = [&](int64_t i) {  // in [-1, 1)
    uint32_t r;
    std::memcpy(&r, noise.data() + 4 * i, 4);
    return static_cast<float>(r >> 8) / static_cast<float>(1 << 23) - 1.0f;
  };
  if (type == DType::kF32 || type == DType::kF16 || type == DType::kBF16) {
    std::string out(static_cast<size_t>(num_elements) * info.block_bytes, '\0');
    for (int64_t i = 0; i < num_elements; ++i) {
      const float f = uniform(i);
      if (type == DType::kF32) {
        std::memcpy(out.data() + 4 * i, &f, 4);
      } else if (type == DType::kF16) {
        PutHalf(out, 2 * i, f);
      } else {
        const uint16_t b = static_cast<uint16_t>(std::bit_cast<uint32_t>(f) >> 16);
        std::memcpy(out.data() + 2 * i, &b, 2);
      }
    }
    return out;
  }
  const int64_t num_blocks = num_elements / info.block_elems;
  std::string out = RandomBytes(static_cast<size_t>(num_blocks) * info.block_bytes, seed + 1);
  for (int64_t b = 0; b < num_blocks; ++b) {
    for (size_t at : ScaleOffsets(type)) {
      const float scale = 0.001f + 0.019f * (0.5f + 0.5f * uniform(b % num_elements));
      PutHalf(out, static_cast<size_t>(b) * info.block_bytes + at, scale);
    }
  }
  return out;
}

}  // namespace saola::test
