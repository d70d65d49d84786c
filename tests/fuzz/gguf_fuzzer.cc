// libFuzzer target for the GGUF reader: any byte string must parse or fail with a Status, never
// crash, hang or read out of bounds. On success every metadata value and the first and last
// byte of every tensor are read, so ASan sees any pointer the parser got wrong.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "worker/model/gguf.h"

namespace {

volatile uint64_t g_sink = 0;

template <typename T>
uint64_t Bits(const T& v) {
  if constexpr (sizeof(T) == sizeof(uint64_t)) {
    return std::bit_cast<uint64_t>(v);  // doubles too, without a range-checked conversion
  } else {
    return static_cast<uint64_t>(v);
  }
}

void TouchValue(const saola::model::GgufValue& value) {
  std::visit(
      [](const auto& v) {
        if constexpr (requires { v.size(); }) {
          g_sink = g_sink + v.size();
          for (const auto& e : v) {
            if constexpr (requires { e.size(); }) {
              g_sink = g_sink + e.size() + (e.empty() ? 0 : static_cast<uint8_t>(e.back()));
            } else {
              g_sink = g_sink + Bits(e);
            }
          }
        } else {
          g_sink = g_sink + Bits(v);
        }
      },
      value.value);
}

void TouchGetters(const saola::model::GgufFile& file, const std::string& key) {
  // Each getter either converts or returns a Status; the results are only counted.
  g_sink = g_sink + file.GetUint(key).ok() + file.GetInt(key).ok() + file.GetFloat(key).ok() +
           file.GetBool(key).ok() + file.GetString(key).ok() + file.GetStringArray(key).ok() +
           file.GetIntArray(key).ok() + file.GetFloatArray(key).ok();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file =
      saola::model::GgufFile::FromBytes(std::string(reinterpret_cast<const char*>(data), size));
  if (!file.ok()) return 0;
  const saola::model::GgufFile& f = **file;
  for (const std::string& key : f.keys()) {
    const saola::model::GgufValue* value = f.Find(key);
    if (value == nullptr) __builtin_trap();  // every listed key must be findable
    TouchValue(*value);
    TouchGetters(f, key);
  }
  for (const saola::model::GgufTensor& t : f.tensors()) {
    if (f.FindTensor(t.name) != &t) __builtin_trap();
    if (t.num_bytes == 0 || t.data < f.data() || t.data + t.num_bytes > f.data() + f.file_size()) {
      __builtin_trap();
    }
    g_sink = g_sink + t.data[0] + t.data[t.num_bytes - 1];
  }
  return 0;
}
