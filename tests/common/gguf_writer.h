// A small GGUF writer for tests: builds v2/v3 files with metadata of every type and tensors of
// every supported type, in memory or on disk. Tests use it to make tiny models (random weights
// for tensor-parallel and model tests) and, through its raw hooks, deliberately broken files for
// the reader's tests.
//
//   GgufWriter w;                                   // v3, alignment 32
//   w.AddString("general.architecture", "llama");
//   w.AddUint32("llama.block_count", 2);
//   w.AddTensor("token_embd.weight", DType::kF32, {8, 16}, bytes);
//   std::string file = w.ToBytes();
//
// Tensors are laid out in the order added, each at the next multiple of the alignment; no
// padding follows the last tensor, so every strict prefix of the output is truncated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "worker/model/gguf.h"

namespace saola::test {

/// Appends little-endian GGUF primitives to a byte string (also for hand-made corrupt files).
class ByteWriter {
 public:
  ByteWriter& U8(uint8_t v) { return Int(v, 1); }
  ByteWriter& U16(uint16_t v) { return Int(v, 2); }
  ByteWriter& U32(uint32_t v) { return Int(v, 4); }
  ByteWriter& U64(uint64_t v) { return Int(v, 8); }
  ByteWriter& F32(float v);
  ByteWriter& F64(double v);
  /// u64 length, then the bytes.
  ByteWriter& Str(std::string_view s) {
    U64(s.size());
    return Raw(s);
  }
  ByteWriter& Raw(std::string_view bytes) {
    bytes_.append(bytes);
    return *this;
  }
  ByteWriter& Zeros(size_t n) {
    bytes_.append(n, '\0');
    return *this;
  }

  size_t size() const { return bytes_.size(); }
  const std::string& bytes() const { return bytes_; }
  std::string& mutable_bytes() { return bytes_; }

 private:
  ByteWriter& Int(uint64_t v, int n);
  std::string bytes_;
};

class GgufWriter {
 public:
  /// A tensor as written: the raw ggml type id and dims, so tests can write what the reader
  /// must reject. `offset` overrides the computed (aligned, packed) data offset.
  struct RawTensor {
    std::string name;
    uint32_t ggml_type = 0;
    std::vector<uint64_t> dims;
    std::string data;
    std::optional<uint64_t> offset;
  };

  /// `alignment` other than 32 is recorded as the uint32 key general.alignment.
  explicit GgufWriter(uint32_t version = 3, uint64_t alignment = 32);

  // Scalars.
  void AddUint8(std::string key, uint8_t v);
  void AddInt8(std::string key, int8_t v);
  void AddUint16(std::string key, uint16_t v);
  void AddInt16(std::string key, int16_t v);
  void AddUint32(std::string key, uint32_t v);
  void AddInt32(std::string key, int32_t v);
  void AddUint64(std::string key, uint64_t v);
  void AddInt64(std::string key, int64_t v);
  void AddFloat32(std::string key, float v);
  void AddFloat64(std::string key, double v);
  void AddBool(std::string key, bool v);
  void AddString(std::string key, std::string v);
  // Arrays. Values are narrowed to `element_type` (which must be of the matching family).
  void AddUintArray(std::string key, model::GgufType element_type, std::vector<uint64_t> v);
  void AddIntArray(std::string key, model::GgufType element_type, std::vector<int64_t> v);
  void AddFloatArray(std::string key, model::GgufType element_type, std::vector<double> v);
  void AddStringArray(std::string key, std::vector<std::string> v);
  /// Any value in the reader's representation (round trips a parsed file).
  void Add(std::string key, model::GgufValue value);
  /// A key whose value type tag and encoded value bytes are given verbatim.
  void AddRawKv(std::string key, uint32_t type, std::string value_bytes);

  /// `data` must hold exactly the tensor's bytes (checked when writing).
  void AddTensor(std::string name, kernels::DType type, std::vector<int64_t> dims,
                 std::string data);
  void AddRawTensor(RawTensor tensor);

  std::string ToBytes() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    uint32_t type;
    std::string value_bytes;
  };
  void AddValue(std::string key, const model::GgufValue& value);

  uint32_t version_;
  uint64_t alignment_;
  std::vector<Kv> kvs_;
  std::vector<RawTensor> tensors_;
};

/// `num_bytes` deterministic pseudo-random bytes from `seed`.
std::string RandomBytes(size_t num_bytes, uint64_t seed);

/// Deterministic random tensor bytes of `type` for `num_elements` values (a multiple of the
/// block size) that decode to finite numbers of moderate size: floats uniform in [-1, 1),
/// quantized blocks with random quants and scales in [0.001, 0.02]. For small random models.
std::string RandomTensorData(kernels::DType type, int64_t num_elements, uint64_t seed);

}  // namespace saola::test
