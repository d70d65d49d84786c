// The byte encoding of a cached response, as stored in Redis (and anywhere else that keeps bytes).
//
//   offset 0   4 bytes   magic "SXC1"
//   offset 4   u32 LE    payload length (must equal the bytes that follow, at most the limit)
//   offset 8   u64 LE    checksum: HashBytes128(payload).lo (cache/exact/hash128.h)
//   offset 16  payload   saola.v1.CachedResponse (protobuf)
//
// Protobuf alone would accept a value cut at a field boundary as a shorter, valid message; the
// length and checksum catch truncation and corruption before the parser runs. Decode then checks
// what a replay needs: the known version, a fingerprint, and a stream that ends with `finish`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "saola/v1/cache.pb.h"

namespace saola::cache {

/// The only CachedResponse.version this code writes and reads.
inline constexpr uint32_t kCachedResponseVersion = 1;
/// Default bound on one encoded value (header included). A response larger than this is not
/// cached: replaying it saves little next to generating it, and it would crowd out many others.
inline constexpr size_t kMaxCachedValueBytes = 4 << 20;
/// Bytes of the header before the protobuf payload.
inline constexpr size_t kCachedValueHeaderBytes = 16;

/// Encodes `response` (its version must already be set). INVALID_ARGUMENT when the version is
/// unknown or the stream is empty; RESOURCE_EXHAUSTED when the encoding exceeds `max_bytes`.
absl::StatusOr<std::string> EncodeCachedResponse(const saola::v1::CachedResponse& response,
                                                 size_t max_bytes = kMaxCachedValueBytes);

/// Decodes bytes from a cache, which may be anything (truncated, planted, written by another
/// version). DATA_LOSS for a bad header, length, checksum or payload; FAILED_PRECONDITION for an
/// unknown version; RESOURCE_EXHAUSTED when longer than `max_bytes`.
absl::StatusOr<saola::v1::CachedResponse> DecodeCachedResponse(
    std::string_view bytes, size_t max_bytes = kMaxCachedValueBytes);

}  // namespace saola::cache
