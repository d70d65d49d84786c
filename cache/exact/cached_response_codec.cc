#include "cache/exact/cached_response_codec.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cache/exact/hash128.h"

namespace saola::cache {
namespace {

constexpr char kMagic[4] = {'S', 'X', 'C', '1'};

void PutLittleEndian(uint64_t v, int num_bytes, char* out) {
  for (int i = 0; i < num_bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t GetLittleEndian(const char* p, int num_bytes) {
  uint64_t v = 0;
  for (int i = 0; i < num_bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

// What a replay needs beyond a well-formed message.
absl::Status CheckReplayable(const saola::v1::CachedResponse& response) {
  if (response.version() != kCachedResponseVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("cached response version ", response.version(), " is not ",
                     kCachedResponseVersion));
  }
  if (response.fingerprint().empty()) {
    return absl::InvalidArgumentError("cached response has no fingerprint");
  }
  if (response.messages().empty() || !response.messages().rbegin()->has_finish()) {
    return absl::InvalidArgumentError("cached response stream does not end with finish");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> EncodeCachedResponse(const saola::v1::CachedResponse& response,
                                                 size_t max_bytes) {
  if (absl::Status s = CheckReplayable(response); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  const size_t payload_bytes = response.ByteSizeLong();
  if (payload_bytes > max_bytes || kCachedValueHeaderBytes + payload_bytes > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cached response of ", kCachedValueHeaderBytes + payload_bytes, " bytes exceeds ", max_bytes));
  }
  std::string out(kCachedValueHeaderBytes + payload_bytes, '\0');
  char* payload = out.data() + kCachedValueHeaderBytes;
  if (!response.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(payload))) {
    return absl::InternalError("cannot serialize cached response");
  }
  std::memcpy(out.data(), kMagic, 4);
  PutLittleEndian(payload_bytes, 4, out.data() + 4);
  PutLittleEndian(HashBytes128(std::string_view(payload, payload_bytes)).lo, 8, out.data() + 8);
  return out;
}

absl::StatusOr<saola::v1::CachedResponse> DecodeCachedResponse(std::string_view bytes,
                                                               size_t max_bytes) {
  if (bytes.size() > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cached value of ", bytes.size(), " bytes exceeds ", max_bytes));
  }
  if (bytes.size() < kCachedValueHeaderBytes || std::memcmp(bytes.data(), kMagic, 4) != 0) {
    return absl::DataLossError("cached value has no valid header");
  }
  const uint64_t payload_bytes = GetLittleEndian(bytes.data() + 4, 4);
  if (payload_bytes != bytes.size() - kCachedValueHeaderBytes) {
    return absl::DataLossError(absl::StrCat("cached value header says ", payload_bytes,
                                            " payload bytes, but ",
                                            bytes.size() - kCachedValueHeaderBytes, " follow"));
  }
  const std::string_view payload = bytes.substr(kCachedValueHeaderBytes);
  if (GetLittleEndian(bytes.data() + 8, 8) != HashBytes128(payload).lo) {
    return absl::DataLossError("cached value checksum mismatch");
  }
  saola::v1::CachedResponse response;
  if (!response.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError("cached value payload is not a CachedResponse");
  }
  if (response.version() != kCachedResponseVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cached response version ", response.version(), " is not ", kCachedResponseVersion));
  }
  if (absl::Status s = CheckReplayable(response); !s.ok()) {
    return absl::DataLossError(s.message());
  }
  return response;
}

}  // namespace saola::cache
