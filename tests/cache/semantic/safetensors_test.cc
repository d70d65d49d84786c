#include "cache/semantic/safetensors.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace saola::cache {
namespace {

using ::testing::HasSubstr;

// A safetensors file: the 8-byte little-endian header length, the header padded with spaces
// to a multiple of 8 bytes (as the format's writer does, so data is aligned), then `data`.
std::string MakeFile(std::string header, const std::string& data) {
  header.resize((header.size() + 7) / 8 * 8, ' ');
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

std::string Floats(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Tensor `name` of the header-only file must be rejected with a message naming it.
void ExpectRejected(const std::string& header, const std::string& data, const std::string& name) {
  auto file = SafetensorsFile::FromBytes(MakeFile(header, data));
  ASSERT_FALSE(file.ok()) << header;
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  EXPECT_THAT(file.status().message(), HasSubstr(name)) << header;
}

TEST(SafetensorsTest, ReadsTensorsInOffsetOrder) {
  const std::string header =
      R"({"__metadata__": {"format": "pt"},
          "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
          "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})";
  std::string data = Floats({1, 2, 3, 4}) + std::string("\x07\0\0\0\0\0\0\0", 8);
  auto file = SafetensorsFile::FromBytes(MakeFile(header, data));
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 2u);
  EXPECT_EQ((*file)->tensors()[0].name, "a");
  EXPECT_EQ((*file)->tensors()[1].name, "b");
  EXPECT_EQ((*file)->tensors()[1].dtype, "I64");
  EXPECT_EQ((*file)->tensors()[1].data[0], 7);

  auto a = (*file)->GetF32("a", {2, 2});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)[0], 1.0f);
  EXPECT_EQ((*a)[3], 4.0f);
  EXPECT_EQ((*file)->GetF32("a", {4}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*file)->GetF32("b", {1}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*file)->GetF32("c", {1}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*file)->Find("__metadata__"), nullptr);
}

TEST(SafetensorsTest, AcceptsEmptyTensorsAndNoTensors) {
  EXPECT_TRUE(SafetensorsFile::FromBytes(MakeFile("{}", "")).ok());
  auto file = SafetensorsFile::FromBytes(
      MakeFile(R"({"e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]}})", ""));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors()[0].num_bytes, 0u);
}

TEST(SafetensorsTest, RejectsMalformedFraming) {
  for (const std::string& bytes : {std::string(), std::string(7, '\0'),
                                   std::string("\xff\xff\xff\xff\xff\xff\xff\xff{}", 10),
                                   std::string("\x05\0\0\0\0\0\0\0{}", 10),
                                   MakeFile("[1, 2]", ""), MakeFile("{\"a\": ", ""),
                                   MakeFile(R"({"__metadata__": 3})", "")}) {
    auto file = SafetensorsFile::FromBytes(bytes);
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  }
}

TEST(SafetensorsTest, RejectsBadEntriesNamingTheTensor) {
  const std::string data = Floats({1, 2, 3, 4});
  const char* kBad[] = {
      R"({"w": 3})",
      R"({"w": {"shape": [4], "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "shape": [4.5], "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0]}})",
      R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}})",
      R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})",
      R"({"w": {"dtype": "F32", "shape": [1e300], "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296],
                "data_offsets": [0, 16]}})",
      R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",  // gap at 0
  };
  for (const char* header : kBad) ExpectRejected(header, data, "'w'");
}

TEST(SafetensorsTest, RejectsOverlapsAndUncoveredBytes) {
  const std::string data = Floats({1, 2, 3, 4});
  ExpectRejected(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                     "w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                 data, "'w'");
  auto file = SafetensorsFile::FromBytes(
      MakeFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", data));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("cover 8 of the 16"));
}

TEST(SafetensorsTest, RejectsMisalignedF32) {
  // A one-byte tensor first puts the F32 tensor at an odd address.
  auto file = SafetensorsFile::FromBytes(
      MakeFile(R"({"p": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                   "w": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]}})",
               std::string(5, '\0')));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->GetF32("w", {1}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, OpenMissingFileIsNotFound) {
  EXPECT_EQ(SafetensorsFile::Open("/nonexistent/model.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, OpensTheReferenceModel) {
  const std::string path = std::string(SAOLA_SOURCE_DIR) + "/models/all-MiniLM-L6-v2/model.safetensors";
  if (!std::filesystem::exists(path)) {
    GTEST_SKIP() << path << " missing: run scripts/fetch-models";
  }
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  // position_ids, 5 embedding tensors, 16 per layer, the pooler's weight and bias.
  EXPECT_EQ((*file)->tensors().size(), 6u + 6u * 16u + 2u);
  EXPECT_TRUE((*file)->GetF32("embeddings.word_embeddings.weight", {30522, 384}).ok());
}

}  // namespace
}  // namespace saola::cache
