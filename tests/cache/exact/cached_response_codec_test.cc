#include "cache/exact/cached_response_codec.h"

#include <string>

#include "absl/status/status.h"
#include "cache/exact/hash128.h"
#include "gtest/gtest.h"
#include "tests/cache/exact/test_responses.h"

namespace saola::cache {
namespace {

using testing::MakeResponse;

saola::v1::CachedResponse Versioned(saola::v1::CachedResponse r, uint32_t version = 1) {
  r.set_version(version);
  r.set_fingerprint(std::string("canonical\0bytes", 15));
  r.set_created_unix_seconds(1700000000);
  return r;
}

// The header the codec documents, around any payload: lets a test plant what Encode refuses.
std::string Frame(const std::string& payload) {
  std::string out = "SXC1";
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xff));
  const uint64_t sum = HashBytes128(payload).lo;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((sum >> (8 * i)) & 0xff));
  return out + payload;
}

TEST(CachedResponseCodecTest, RoundTrips) {
  const saola::v1::CachedResponse in = Versioned(MakeResponse(5, 40));
  absl::StatusOr<std::string> bytes = EncodeCachedResponse(in);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->size(), kCachedValueHeaderBytes + in.ByteSizeLong());
  EXPECT_EQ(*bytes, Frame(in.SerializeAsString()));
  absl::StatusOr<saola::v1::CachedResponse> out = DecodeCachedResponse(*bytes);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->SerializeAsString(), in.SerializeAsString());
  EXPECT_EQ(out->messages(4).finish().reason(), saola::v1::LENGTH);
}

TEST(CachedResponseCodecTest, RejectsEveryTruncation) {
  const std::string bytes = *EncodeCachedResponse(Versioned(MakeResponse()));
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeCachedResponse(bytes.substr(0, n)).ok()) << "length " << n;
  }
  EXPECT_FALSE(DecodeCachedResponse(bytes + "x").ok());
}

TEST(CachedResponseCodecTest, RejectsGarbageAndFlippedBytes) {
  EXPECT_EQ(DecodeCachedResponse("").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeCachedResponse("garbage").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeCachedResponse(std::string(64, '\xff')).status().code(),
            absl::StatusCode::kDataLoss);
  const std::string bytes = *EncodeCachedResponse(Versioned(MakeResponse()));
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string flipped = bytes;
    flipped[i] ^= 0x20;
    EXPECT_FALSE(DecodeCachedResponse(flipped).ok()) << "byte " << i;
  }
  // A well-framed payload that is not a protobuf message.
  EXPECT_EQ(DecodeCachedResponse(Frame("\xff\xff\xff")).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(CachedResponseCodecTest, RejectsOversized) {
  const saola::v1::CachedResponse big = Versioned(MakeResponse(64, 1024));
  EXPECT_EQ(EncodeCachedResponse(big, 4096).status().code(),
            absl::StatusCode::kResourceExhausted);
  const std::string bytes = *EncodeCachedResponse(big);
  EXPECT_EQ(DecodeCachedResponse(bytes, 4096).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(DecodeCachedResponse(bytes, bytes.size()).ok());
  EXPECT_FALSE(DecodeCachedResponse(bytes, bytes.size() - 1).ok());
}

TEST(CachedResponseCodecTest, RejectsUnknownVersion) {
  const saola::v1::CachedResponse v2 = Versioned(MakeResponse(), 2);
  EXPECT_EQ(EncodeCachedResponse(v2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeCachedResponse(Frame(v2.SerializeAsString())).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const saola::v1::CachedResponse v0 = Versioned(MakeResponse(), 0);
  EXPECT_EQ(DecodeCachedResponse(Frame(v0.SerializeAsString())).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(CachedResponseCodecTest, RejectsUnreplayableStreams) {
  saola::v1::CachedResponse no_finish = Versioned(MakeResponse());
  no_finish.mutable_messages(3)->clear_finish();
  EXPECT_FALSE(EncodeCachedResponse(no_finish).ok());
  EXPECT_EQ(DecodeCachedResponse(Frame(no_finish.SerializeAsString())).status().code(),
            absl::StatusCode::kDataLoss);
  saola::v1::CachedResponse empty = Versioned(saola::v1::CachedResponse());
  EXPECT_FALSE(EncodeCachedResponse(empty).ok());
  saola::v1::CachedResponse no_fingerprint = Versioned(MakeResponse());
  no_fingerprint.clear_fingerprint();
  EXPECT_FALSE(EncodeCachedResponse(no_fingerprint).ok());
  EXPECT_FALSE(DecodeCachedResponse(Frame(no_fingerprint.SerializeAsString())).ok());
}

}  // namespace
}  // namespace saola::cache
