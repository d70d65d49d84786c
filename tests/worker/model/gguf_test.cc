#include "worker/model/gguf.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "tests/common/gguf_writer.h"

namespace saola::model {
namespace {

using kernels::DType;
using test::ByteWriter;
using test::GgufWriter;

constexpr uint32_t kMagic = 0x46554747;

std::string ModelPath() {
  return std::string(SAOLA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

/// Expects `result` to fail with `code` and a message containing `substr`.
template <typename T>
void ExpectError(const absl::StatusOr<T>& result, absl::StatusCode code, std::string_view substr) {
  ASSERT_FALSE(result.ok()) << "expected an error containing '" << substr << "'";
  EXPECT_EQ(result.status().code(), code) << result.status();
  EXPECT_NE(std::string(result.status().message()).find(substr), std::string::npos)
      << "message: " << result.status().message() << "\nexpected substring: " << substr;
}

/// A small valid file: a few keys of different types and two tensors, the last one ending the
/// file (so every strict prefix is truncated).
std::string SmallValidFile() {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 2);
  w.AddFloat32("llama.rope.freq_base", 10000.0f);
  w.AddBool("tokenizer.ggml.add_bos_token", true);
  w.AddStringArray("tokenizer.ggml.tokens", {"<s>", "a", "bc"});
  w.AddIntArray("tokenizer.ggml.token_type", GgufType::kInt32, {3, 1, 1});
  w.AddTensor("norm.weight", DType::kF32, {4}, test::RandomTensorData(DType::kF32, 4, 1));
  w.AddTensor("w", DType::kQ8_0, {32, 2}, test::RandomTensorData(DType::kQ8_0, 64, 2));
  return w.ToBytes();
}

/// A header for a v3 file claiming the given counts; callers append the rest.
ByteWriter Header(uint64_t num_tensors, uint64_t num_kv, uint32_t version = 3) {
  ByteWriter b;
  b.U32(kMagic).U32(version).U64(num_tensors).U64(num_kv);
  return b;
}

/// A file with one tensor info given verbatim (no metadata).
std::string OneTensorFile(GgufWriter::RawTensor tensor, uint64_t alignment = 32) {
  GgufWriter w(3, alignment);
  w.AddRawTensor(std::move(tensor));
  return w.ToBytes();
}

// ---- Round trips through the writer -------------------------------------------------------

TEST(GgufTest, EveryScalarTypeRoundTrips) {
  GgufWriter w;
  w.AddUint8("u8", 250);
  w.AddInt8("i8", -120);
  w.AddUint16("u16", 65000);
  w.AddInt16("i16", -32000);
  w.AddUint32("u32", 4000000000u);
  w.AddInt32("i32", -2000000000);
  w.AddUint64("u64", std::numeric_limits<uint64_t>::max());
  w.AddInt64("i64", std::numeric_limits<int64_t>::min());
  w.AddFloat32("f32", 1.5f);
  w.AddFloat64("f64", -2.25e300);
  w.AddBool("b", true);
  w.AddString("s", std::string("h\0llo", 5));
  w.AddString("empty", "");
  auto file = GgufFile::FromBytes(w.ToBytes());
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.keys(), (std::vector<std::string>{"u8", "i8", "u16", "i16", "u32", "i32", "u64",
                                                "i64", "f32", "f64", "b", "s", "empty"}));
  EXPECT_EQ(f.Find("u8")->type, GgufType::kUint8);
  EXPECT_EQ(f.Find("i16")->type, GgufType::kInt16);
  EXPECT_EQ(f.Find("f64")->type, GgufType::kFloat64);
  EXPECT_EQ(*f.GetUint("u8"), 250u);
  EXPECT_EQ(*f.GetInt("i8"), -120);
  EXPECT_EQ(*f.GetUint("u16"), 65000u);
  EXPECT_EQ(*f.GetInt("i16"), -32000);
  EXPECT_EQ(*f.GetUint("u32"), 4000000000u);
  EXPECT_EQ(*f.GetInt("i32"), -2000000000);
  EXPECT_EQ(*f.GetUint("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(*f.GetInt("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(*f.GetFloat("f32"), 1.5);
  EXPECT_EQ(*f.GetFloat("f64"), -2.25e300);
  EXPECT_EQ(*f.GetBool("b"), true);
  EXPECT_EQ(*f.GetString("s"), std::string("h\0llo", 5));
  EXPECT_EQ(*f.GetString("empty"), "");
  EXPECT_EQ(f.tensors().size(), 0u);
}

TEST(GgufTest, EveryArrayTypeRoundTrips) {
  GgufWriter w;
  w.AddUintArray("u8", GgufType::kUint8, {0, 255});
  w.AddIntArray("i8", GgufType::kInt8, {-128, 127});
  w.AddUintArray("u16", GgufType::kUint16, {1, 65535});
  w.AddIntArray("i16", GgufType::kInt16, {-32768, 5});
  w.AddUintArray("u32", GgufType::kUint32, {7, 4294967295u});
  w.AddIntArray("i32", GgufType::kInt32, {-1, 2, -3});
  w.AddUintArray("u64", GgufType::kUint64, {1ull << 63});
  w.AddIntArray("i64", GgufType::kInt64, {-(1ll << 62)});
  w.AddFloatArray("f32", GgufType::kFloat32, {0.5, -1.0});
  w.AddFloatArray("f64", GgufType::kFloat64, {1e-300});
  w.AddUintArray("bool", GgufType::kBool, {1, 0, 1});
  w.AddStringArray("str", {"a", "", "ccc"});
  w.AddIntArray("empty", GgufType::kInt32, {});
  auto file = GgufFile::FromBytes(w.ToBytes());
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.Find("u16")->type, GgufType::kArray);
  EXPECT_EQ(f.Find("u16")->array_type, GgufType::kUint16);
  EXPECT_EQ(std::get<std::vector<uint64_t>>(f.Find("u8")->value), (std::vector<uint64_t>{0, 255}));
  EXPECT_EQ(std::get<std::vector<uint64_t>>(f.Find("bool")->value),
            (std::vector<uint64_t>{1, 0, 1}));
  EXPECT_EQ(*f.GetIntArray("i8"), (std::vector<int64_t>{-128, 127}));
  EXPECT_EQ(*f.GetIntArray("u16"), (std::vector<int64_t>{1, 65535}));
  EXPECT_EQ(*f.GetIntArray("i16"), (std::vector<int64_t>{-32768, 5}));
  EXPECT_EQ(*f.GetIntArray("u32"), (std::vector<int64_t>{7, 4294967295ll}));
  EXPECT_EQ(*f.GetIntArray("i32"), (std::vector<int64_t>{-1, 2, -3}));
  EXPECT_EQ(std::get<std::vector<uint64_t>>(f.Find("u64")->value),
            (std::vector<uint64_t>{1ull << 63}));
  EXPECT_EQ(*f.GetIntArray("i64"), (std::vector<int64_t>{-(1ll << 62)}));
  EXPECT_EQ(*f.GetFloatArray("f32"), (std::vector<double>{0.5, -1.0}));
  EXPECT_EQ(*f.GetFloatArray("f64"), (std::vector<double>{1e-300}));
  EXPECT_EQ(*f.GetFloatArray("i32"), (std::vector<double>{-1, 2, -3}));
  const GgufStringArray& strs = **f.GetStringArray("str");
  EXPECT_EQ(std::vector<std::string>(strs.begin(), strs.end()),
            (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.GetIntArray("empty")->size(), 0u);
}

TEST(GgufTest, EveryTensorTypeRoundTrips) {
  struct Case {
    DType type;
    std::vector<int64_t> dims;
  };
  const std::vector<Case> cases = {
      {DType::kF32, {3}},      {DType::kF16, {5, 3}},         {DType::kBF16, {2, 2, 2}},
      {DType::kQ8_0, {64, 3}}, {DType::kQ4_0, {32, 1, 2, 2}}, {DType::kQ4_1, {96, 2}},
      {DType::kQ8_1, {32}},    {DType::kQ4_K, {256, 2}},      {DType::kQ6_K, {512, 1}},
  };
  GgufWriter w;
  std::vector<std::string> payloads;
  for (size_t i = 0; i < cases.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : cases[i].dims) n *= d;
    payloads.push_back(test::RandomTensorData(cases[i].type, n, i));
    w.AddTensor("t" + std::to_string(i), cases[i].type, cases[i].dims, payloads.back());
  }
  auto file = GgufFile::FromBytes(w.ToBytes());
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(kernels::GetDTypeInfo(cases[i].type).name);
    const GgufTensor* t = (*file)->FindTensor("t" + std::to_string(i));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t, &(*file)->tensors()[i]);
    EXPECT_EQ(t->type, cases[i].type);
    EXPECT_EQ(t->dims, cases[i].dims);
    EXPECT_EQ(t->num_bytes, payloads[i].size());
    EXPECT_EQ(static_cast<size_t>(t->num_elements) / kernels::GetDTypeInfo(t->type).block_elems *
                  kernels::GetDTypeInfo(t->type).block_bytes,
              t->num_bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 32, 0u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t->data), t->num_bytes), payloads[i]);
  }
  EXPECT_EQ((*file)->FindTensor("nope"), nullptr);
}

/// Decodes IEEE half bits (normal numbers and zero only; enough for the writer's scales).
float HalfToFloat(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const float mantissa = 1.0f + static_cast<float>(h & 0x3ff) / 1024.0f;
  const float magnitude = exponent == 0 ? 0.0f : std::ldexp(mantissa, exponent - 15);
  return (h & 0x8000) ? -magnitude : magnitude;
}

TEST(GgufTest, WriterRandomTensorsDecodeToModerateNumbers) {
  const std::string f32 = test::RandomTensorData(DType::kF32, 1000, 3);
  ASSERT_EQ(f32.size(), 4000u);
  for (size_t i = 0; i < 1000; ++i) {
    float v;
    std::memcpy(&v, f32.data() + 4 * i, 4);
    EXPECT_TRUE(v >= -1.0f && v < 1.0f) << v;
  }
  EXPECT_EQ(f32, test::RandomTensorData(DType::kF32, 1000, 3));  // deterministic
  EXPECT_NE(f32, test::RandomTensorData(DType::kF32, 1000, 4));
  for (DType type : {DType::kQ8_0, DType::kQ4_1, DType::kQ6_K}) {
    const kernels::DTypeInfo info = kernels::GetDTypeInfo(type);
    const std::string q = test::RandomTensorData(type, 4 * info.block_elems, 5);
    ASSERT_EQ(q.size(), 4u * info.block_bytes);
    const size_t scale_at = type == DType::kQ6_K ? 208 : 0;
    for (int b = 0; b < 4; ++b) {
      uint16_t h;
      std::memcpy(&h, q.data() + b * info.block_bytes + scale_at, 2);
      const float d = HalfToFloat(h);
      EXPECT_TRUE(d >= 0.00099f && d <= 0.0201f) << info.name << " block " << b << ": " << d;
    }
  }
}

TEST(GgufTest, GgmlTypeIdsMatchGgml) {
  EXPECT_EQ(GgmlTypeId(DType::kF32), 0u);
  EXPECT_EQ(GgmlTypeId(DType::kF16), 1u);
  EXPECT_EQ(GgmlTypeId(DType::kQ4_0), 2u);
  EXPECT_EQ(GgmlTypeId(DType::kQ4_1), 3u);
  EXPECT_EQ(GgmlTypeId(DType::kQ8_0), 8u);
  EXPECT_EQ(GgmlTypeId(DType::kQ4_K), 12u);
  EXPECT_EQ(GgmlTypeId(DType::kQ6_K), 14u);
  EXPECT_EQ(GgmlTypeId(DType::kBF16), 30u);
  for (uint32_t id = 0; id < 64; ++id) {
    if (auto type = DTypeFromGgmlType(id)) {
      EXPECT_EQ(GgmlTypeId(*type), id);
    }
  }
  EXPECT_EQ(GgmlTypeName(13), "Q5_K");
  EXPECT_EQ(GgmlTypeName(4), "unknown");
  EXPECT_EQ(GgmlTypeName(1000), "unknown");
}

TEST(GgufTest, Version2AndCustomAlignmentRoundTrip) {
  for (uint64_t alignment : {1ull, 8ull, 64ull, 4096ull}) {
    SCOPED_TRACE(alignment);
    GgufWriter w(2, alignment);
    w.AddString("general.name", "tiny");
    const std::string a = test::RandomTensorData(DType::kF32, 3, 7);
    const std::string b = test::RandomTensorData(DType::kQ4_1, 64, 8);
    w.AddTensor("a", DType::kF32, {3}, a);
    w.AddTensor("b", DType::kQ4_1, {64}, b);
    auto file = GgufFile::FromBytes(w.ToBytes());
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ((*file)->version(), 2u);
    EXPECT_EQ((*file)->alignment(), alignment);
    const GgufTensor* tb = (*file)->FindTensor("b");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(tb->data) % alignment, 0u);
    EXPECT_EQ((tb->data - (*file)->data()) % alignment, 0);
    EXPECT_EQ(std::memcmp(tb->data, b.data(), b.size()), 0);
    EXPECT_EQ(std::memcmp((*file)->FindTensor("a")->data, a.data(), a.size()), 0);
  }
}

TEST(GgufTest, OpenMapsAFileWrittenToDisk) {
  const std::string path = ::testing::TempDir() + "/gguf_test_open.gguf";
  const std::string bytes = SmallValidFile();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->file_size(), bytes.size());
  EXPECT_EQ(std::memcmp((*file)->data(), bytes.data(), bytes.size()), 0);
  EXPECT_EQ(*(*file)->GetString("general.architecture"), "llama");
  const GgufTensor* w = (*file)->FindTensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->data + w->num_bytes, (*file)->data() + (*file)->file_size());
  std::filesystem::remove(path);
}

TEST(GgufTest, OpenMissingFileIsNotFoundWithPath) {
  ExpectError(GgufFile::Open("/nonexistent/dir/model.gguf"), absl::StatusCode::kNotFound,
              "/nonexistent/dir/model.gguf");
}

TEST(GgufTest, OpenRejectsEmptyFileAndDirectory) {
  const std::string path = ::testing::TempDir() + "/gguf_test_empty.gguf";
  { std::ofstream out(path, std::ios::binary); }
  ExpectError(GgufFile::Open(path), absl::StatusCode::kInvalidArgument, "not a GGUF file");
  std::filesystem::remove(path);
  ExpectError(GgufFile::Open(::testing::TempDir()), absl::StatusCode::kInvalidArgument,
              "not a file");
}

TEST(GgufTest, OpenErrorsNameThePath) {
  const std::string path = ::testing::TempDir() + "/gguf_test_bad.gguf";
  {
    std::ofstream out(path, std::ios::binary);
    out << "NOPE and more bytes";
  }
  ExpectError(GgufFile::Open(path), absl::StatusCode::kInvalidArgument, path);
  std::filesystem::remove(path);
}

TEST(GgufTest, GettersConvertOnlyWhenTheValueFits) {
  GgufWriter w;
  w.AddInt32("neg", -1);
  w.AddInt32("pos", 7);
  w.AddUint64("big", std::numeric_limits<uint64_t>::max());
  w.AddString("s", "x");
  w.AddBool("b", false);
  w.AddUintArray("bigs", GgufType::kUint64, {1ull << 63});
  w.AddStringArray("strs", {"a"});
  auto file = GgufFile::FromBytes(w.ToBytes());
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(*f.GetUint("pos"), 7u);
  EXPECT_EQ(*f.GetFloat("pos"), 7.0);
  EXPECT_EQ(*f.GetBool("b"), false);
  ExpectError(f.GetUint("neg"), absl::StatusCode::kInvalidArgument, "'neg'");
  ExpectError(f.GetInt("big"), absl::StatusCode::kInvalidArgument, "too large for int64");
  ExpectError(f.GetUint("s"), absl::StatusCode::kInvalidArgument, "key 's' is a string");
  ExpectError(f.GetString("pos"), absl::StatusCode::kInvalidArgument, "not a string");
  ExpectError(f.GetBool("pos"), absl::StatusCode::kInvalidArgument, "not a bool");
  ExpectError(f.GetUint("b"), absl::StatusCode::kInvalidArgument, "not an unsigned integer");
  ExpectError(f.GetUint("missing"), absl::StatusCode::kNotFound, "'missing'");
  ExpectError(f.GetStringArray("bigs"), absl::StatusCode::kInvalidArgument,
              "array of uint64, not an array of strings");
  ExpectError(f.GetIntArray("bigs"), absl::StatusCode::kInvalidArgument, "too large for int64");
  ExpectError(f.GetIntArray("strs"), absl::StatusCode::kInvalidArgument, "array of string");
  ExpectError(f.GetFloatArray("s"), absl::StatusCode::kInvalidArgument, "not an array");
  EXPECT_EQ(f.Find("missing"), nullptr);
}

// ---- The reference model --------------------------------------------------------------------

TEST(GgufTest, ReadsTheReferenceModel) {
  if (!std::filesystem::exists(ModelPath())) {
    GTEST_SKIP() << ModelPath() << " is absent; run scripts/fetch-models";
  }
  auto file = GgufFile::Open(ModelPath());
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.file_size(), 98362432u);
  EXPECT_EQ(f.keys().size(), 33u);
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(*f.GetString("general.architecture"), "llama");
  EXPECT_EQ(*f.GetUint("llama.block_count"), 30u);
  EXPECT_EQ(*f.GetUint("llama.embedding_length"), 576u);
  EXPECT_EQ(*f.GetUint("llama.attention.head_count"), 9u);
  EXPECT_EQ(*f.GetUint("llama.attention.head_count_kv"), 3u);
  EXPECT_EQ(*f.GetInt("llama.context_length"), 8192);
  EXPECT_EQ(*f.GetFloat("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(*f.GetFloat("llama.attention.layer_norm_rms_epsilon"), static_cast<double>(1e-5f));
  EXPECT_EQ(*f.GetBool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_EQ(*f.GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*f.GetUint("tokenizer.ggml.eos_token_id"), 2u);

  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ((*tokens)->size(), 49152u);
  EXPECT_EQ((**tokens)[0], "<|endoftext|>");
  EXPECT_EQ((**tokens)[1], "<|im_start|>");
  EXPECT_EQ((**tokens)[2], "<|im_end|>");
  EXPECT_EQ((**tokens)[100], "t");
  EXPECT_EQ((**tokens)[49151], "ectable");
  auto merges = f.GetStringArray("tokenizer.ggml.merges");
  ASSERT_TRUE(merges.ok());
  ASSERT_EQ((*merges)->size(), 48900u);
  EXPECT_EQ((**merges)[0], "\xC4\xA0 t");  // "Ġ t"
  auto token_types = f.GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(token_types.ok());
  ASSERT_EQ(token_types->size(), 49152u);
  EXPECT_EQ((*token_types)[0], 3);
  EXPECT_EQ((*token_types)[17], 1);

  const GgufTensor* embd = f.FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, DType::kQ8_0);
  EXPECT_EQ(embd->dims, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(embd->num_elements, 576 * 49152);
  EXPECT_EQ(embd->num_bytes, 30081024u);
  EXPECT_EQ(embd->data - f.data(), 1785664);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(embd->data) % 32, 0u);
  const uint8_t kFirstBytes[] = {0x32, 0x19, 0xd6, 0x0d, 0x13, 0xf7, 0xe5, 0xee};
  EXPECT_EQ(std::memcmp(embd->data, kFirstBytes, sizeof(kFirstBytes)), 0);

  const GgufTensor* down = f.FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->type, DType::kQ4_1);
  EXPECT_EQ(down->dims, (std::vector<int64_t>{1536, 576}));
  const GgufTensor& last = f.tensors().back();
  EXPECT_EQ(last.name, "output_norm.weight");
  EXPECT_EQ(last.type, DType::kF32);
  EXPECT_EQ(last.data + last.num_bytes, f.data() + f.file_size());

  int num_q4_1 = 0, num_f32 = 0, num_q8_0 = 0;
  for (const GgufTensor& t : f.tensors()) {
    EXPECT_GE(t.data, f.data());
    EXPECT_LE(t.data + t.num_bytes, f.data() + f.file_size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << t.name;
    num_q4_1 += t.type == DType::kQ4_1;
    num_f32 += t.type == DType::kF32;
    num_q8_0 += t.type == DType::kQ8_0;
  }
  EXPECT_EQ(num_q4_1, 210);
  EXPECT_EQ(num_f32, 61);
  EXPECT_EQ(num_q8_0, 1);
}

// ---- Seed corpus written by the Python `gguf` package (tests/fuzz/make_gguf_corpus.py) -------

TEST(GgufTest, ParsesTheSeedCorpus) {
  const std::filesystem::path dir =
      std::filesystem::path(SAOLA_SOURCE_DIR) / "tests/fuzz/corpus/gguf";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " is absent";
  int num_valid = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto file = GgufFile::FromBytes(bytes);
    if (name.rfind("valid_", 0) == 0) {
      EXPECT_TRUE(file.ok()) << name << ": " << file.status();
      ++num_valid;
    } else if (name.rfind("bad_", 0) == 0) {
      EXPECT_FALSE(file.ok()) << name;
    }
  }
  EXPECT_GE(num_valid, 3);
}

// ---- Corrupt and hostile files ------------------------------------------------------------

TEST(GgufTest, RejectsBadMagic) {
  std::string bytes = SmallValidFile();
  bytes[0] = 'X';
  ExpectError(GgufFile::FromBytes(bytes), absl::StatusCode::kInvalidArgument, "not a GGUF file");
  ExpectError(GgufFile::FromBytes("GG"), absl::StatusCode::kInvalidArgument, "magic");
}

TEST(GgufTest, RejectsVersion1AndUnknownVersions) {
  ExpectError(GgufFile::FromBytes(Header(0, 0, 1).bytes()), absl::StatusCode::kUnimplemented,
              "version 1 is not supported");
  ExpectError(GgufFile::FromBytes(Header(0, 0, 4).bytes()), absl::StatusCode::kInvalidArgument,
              "unsupported GGUF version 4");
  ExpectError(GgufFile::FromBytes(Header(0, 0, 0).bytes()), absl::StatusCode::kInvalidArgument,
              "unsupported GGUF version 0");
}

TEST(GgufTest, RejectsBigEndianFiles) {
  ByteWriter b;
  b.U32(kMagic).Raw(std::string("\0\0\0\3", 4)).Zeros(16);
  ExpectError(GgufFile::FromBytes(b.bytes()), absl::StatusCode::kUnimplemented, "big-endian");
}

TEST(GgufTest, EveryStrictPrefixOfAValidFileFailsCleanly) {
  const std::string bytes = SmallValidFile();
  ASSERT_TRUE(GgufFile::FromBytes(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto file = GgufFile::FromBytes(bytes.substr(0, n));
    ASSERT_FALSE(file.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
    const std::string message(file.status().message());
    EXPECT_TRUE(message.find("truncated at offset") != std::string::npos ||
                message.find("outside the file") != std::string::npos ||
                message.find("impossible") != std::string::npos ||
                message.find("claims") != std::string::npos)
        << n << ": " << message;
  }
}

TEST(GgufTest, TruncationMessageNamesTheKeyAndOffset) {
  ByteWriter b = Header(0, 1);
  b.Str("tokenizer.ggml.tokens").U32(9).U32(8).U64(2).Str("a").U64(100).Raw("short");
  ExpectError(GgufFile::FromBytes(b.bytes()), absl::StatusCode::kInvalidArgument,
              "truncated at offset 78 reading string element 1 of key 'tokenizer.ggml.tokens'");
}

TEST(GgufTest, RejectsHugeStringLengthWithoutAllocating) {
  ByteWriter key = Header(0, 1);
  key.U64(1ull << 62).Raw("abc").Zeros(16);
  ExpectError(GgufFile::FromBytes(key.bytes()), absl::StatusCode::kInvalidArgument,
              "truncated at offset 24 reading key 0");
  ByteWriter value = Header(0, 1);
  value.Str("general.name").U32(8).U64(std::numeric_limits<uint64_t>::max()).Raw("abc");
  ExpectError(GgufFile::FromBytes(value.bytes()), absl::StatusCode::kInvalidArgument,
              "reading value of key 'general.name'");
}

TEST(GgufTest, RejectsHugeArrayCountWithoutAllocating) {
  for (uint32_t element_type : {0u, 4u, 8u, 12u}) {
    ByteWriter b = Header(0, 1);
    b.Str("arr").U32(9).U32(element_type).U64(1ull << 60).Zeros(64);
    ExpectError(GgufFile::FromBytes(b.bytes()), absl::StatusCode::kInvalidArgument,
                "array 'arr' claims 1152921504606846976");
  }
}

TEST(GgufTest, RejectsHugeTensorAndKeyCounts) {
  ExpectError(GgufFile::FromBytes(Header(1ull << 60, 0).Zeros(100).bytes()),
              absl::StatusCode::kInvalidArgument, "tensor count 1152921504606846976 is impossible");
  ExpectError(GgufFile::FromBytes(Header(0, std::numeric_limits<uint64_t>::max()).bytes()),
              absl::StatusCode::kInvalidArgument, "metadata count 18446744073709551615");
}

TEST(GgufTest, RejectsTensorDataOutsideTheFile) {
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {8}, "", 64})),
              absl::StatusCode::kInvalidArgument, "tensor 't' data (offset 64 + 32 bytes");
  // An offset near 2^64 must not wrap around into the file.
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {8}, "", ~uint64_t{31}})),
              absl::StatusCode::kInvalidArgument, "lies outside the file");
  // Data cut short by one byte.
  std::string bytes = OneTensorFile({"t", 0, {8}, std::string(32, 'x'), std::nullopt});
  bytes.pop_back();
  ExpectError(GgufFile::FromBytes(bytes), absl::StatusCode::kInvalidArgument, "outside the file");
}

TEST(GgufTest, RejectsMisalignedOffset) {
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {1}, std::string(4, 'x'), 4})),
              absl::StatusCode::kInvalidArgument,
              "tensor 't' data offset 4 is not a multiple of the alignment 32");
}

TEST(GgufTest, RejectsBadDims) {
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {1ull << 32, 1ull << 32}, "", 0})),
              absl::StatusCode::kInvalidArgument, "element count of tensor 't' overflows");
  ExpectError(
      GgufFile::FromBytes(OneTensorFile({"t", 0, {1ull << 40, 1ull << 40, 1ull << 40}, "", 0})),
      absl::StatusCode::kInvalidArgument, "overflows");
  // Elements fit in int64 but their byte size does not.
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {1ull << 62}, "", 0})),
              absl::StatusCode::kInvalidArgument, "byte size of tensor 't' overflows");
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {4, 0}, "", 0})),
              absl::StatusCode::kInvalidArgument, "invalid dim 1 = 0");
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {~uint64_t{0}}, "", 0})),
              absl::StatusCode::kInvalidArgument, "invalid dim 0 = -1");
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {1, 1, 1, 1, 1}, "", 0})),
              absl::StatusCode::kInvalidArgument, "tensor 't' has 5 dims (1 to 4 allowed)");
  ExpectError(GgufFile::FromBytes(OneTensorFile({"t", 0, {}, "", 0})),
              absl::StatusCode::kInvalidArgument, "has 0 dims");
}

TEST(GgufTest, RejectsUnknownAndUnsupportedTensorTypes) {
  ExpectError(GgufFile::FromBytes(OneTensorFile({"blk.0.w", 200, {32}, std::string(32, 'x'), 0})),
              absl::StatusCode::kInvalidArgument, "tensor 'blk.0.w' has unknown ggml type id 200");
  ExpectError(GgufFile::FromBytes(OneTensorFile({"blk.0.w", 13, {256}, std::string(176, 'x'), 0})),
              absl::StatusCode::kUnimplemented, "tensor 'blk.0.w' has ggml type id 13 (Q5_K)");
}

TEST(GgufTest, RejectsRowLengthNotAMultipleOfTheBlockSize) {
  ExpectError(GgufFile::FromBytes(OneTensorFile({"q", 8, {48, 2}, std::string(102, 'x'), 0})),
              absl::StatusCode::kInvalidArgument,
              "tensor 'q' (Q8_0) has row length 48, not a multiple of the block size 32");
  ExpectError(GgufFile::FromBytes(OneTensorFile({"k", 12, {128, 2}, std::string(144, 'x'), 0})),
              absl::StatusCode::kInvalidArgument, "block size 256");
}

TEST(GgufTest, RejectsUnknownMetadataType) {
  GgufWriter w;
  w.AddRawKv("weird", 13, std::string(8, '\0'));
  ExpectError(GgufFile::FromBytes(w.ToBytes()), absl::StatusCode::kInvalidArgument,
              "unknown metadata type 13 for key 'weird' at offset 37");
  GgufWriter arr;
  arr.AddRawKv("weird_array", 9, ByteWriter().U32(99).U64(1).Zeros(8).bytes());
  ExpectError(GgufFile::FromBytes(arr.ToBytes()), absl::StatusCode::kInvalidArgument,
              "unknown metadata array element type 99 for key 'weird_array'");
}

TEST(GgufTest, RejectsNestedArrays) {
  GgufWriter w;
  w.AddRawKv("nested", 9, ByteWriter().U32(9).U64(1).U32(4).U64(1).U32(5).bytes());
  ExpectError(GgufFile::FromBytes(w.ToBytes()), absl::StatusCode::kInvalidArgument,
              "nested arrays are not supported (key 'nested')");
}

TEST(GgufTest, RejectsInvalidBool) {
  GgufWriter w;
  w.AddRawKv("flag", 7, "\x02");
  ExpectError(GgufFile::FromBytes(w.ToBytes()), absl::StatusCode::kInvalidArgument,
              "invalid bool value 2 for key 'flag'");
}

TEST(GgufTest, RejectsBadAlignment) {
  for (uint32_t alignment : {0u, 3u, 48u}) {
    GgufWriter w;
    w.AddUint32("general.alignment", alignment);
    ExpectError(GgufFile::FromBytes(w.ToBytes()), absl::StatusCode::kInvalidArgument,
                "it must be a nonzero power of two");
  }
  GgufWriter s;
  s.AddString("general.alignment", "32");
  ExpectError(GgufFile::FromBytes(s.ToBytes()), absl::StatusCode::kInvalidArgument,
              "key 'general.alignment' is a string, not an unsigned integer");
}

TEST(GgufTest, RejectsDuplicateKey) {
  GgufWriter w;
  w.AddUint32("llama.block_count", 2);
  w.AddString("general.name", "x");
  w.AddUint32("llama.block_count", 3);
  ExpectError(GgufFile::FromBytes(w.ToBytes()), absl::StatusCode::kInvalidArgument,
              "duplicate key 'llama.block_count'");
}

TEST(GgufTest, RejectsDuplicateTensorName) {
  GgufWriter w;
  w.AddTensor("w", DType::kF32, {1}, std::string(4, 'a'));
  w.AddTensor("w", DType::kF32, {1}, std::string(4, 'b'));
  ExpectError(GgufFile::FromBytes(w.ToBytes()), absl::StatusCode::kInvalidArgument,
              "duplicate tensor name 'w'");
}

}  // namespace
}  // namespace saola::model
