// The semantic cache's file format. The file may come from anywhere (a volume, a copy from
// another host), so it is parsed as untrusted bytes: every length is checked against what is
// left, a checksum covers everything, and the FAISS indexes are rebuilt from the vectors rather
// than read with FAISS's own deserializer.
//
// Layout, all integers little-endian:
//
//   offset  size  field
//   0       8     magic "SAOLASC\0"
//   8       4     version (kSemanticCacheFileVersion)
//   12      4     dim (must equal the loading cache's embedder)
//   16      8     max_entries        } the writer's options, informational: the loading cache
//   24      8     ttl, microseconds  } keeps its own
//   32      8     hnsw_min_entries   }
//   40      8     number of entries N
//   48      ...   N entries, each:
//                   u32 partition length, partition bytes   (<= kMaxPartitionBytes)
//                   u32 text length, text bytes             (<= kMaxTextBytes)
//                   i64 created, Unix microseconds
//                   dim x f32 embedding (finite, unit length within 1e-3)
//                   u32 response length, response bytes     (<= kMaxResponseBytes; a
//                                                            serialized saola.v1.CachedResponse)
//   end-8   8     FNV-1a 64 of every byte before it
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace saola::cache {

inline constexpr uint32_t kSemanticCacheFileVersion = 1;
inline constexpr uint32_t kMaxPartitionBytes = 1 << 20;
inline constexpr uint32_t kMaxTextBytes = 1 << 20;
inline constexpr uint32_t kMaxResponseBytes = 64 << 20;

/// One stored entry as written and read.
struct SemanticCacheRecord {
  std::string partition;
  std::string text;
  std::vector<float> embedding;
  absl::Time created;
  std::string response_bytes;  // a serialized saola.v1.CachedResponse
};

struct SemanticCacheFileHeader {
  uint32_t dim = 0;
  int64_t max_entries = 0;
  absl::Duration ttl;
  int64_t hnsw_min_entries = 0;
};

/// The file's bytes. Precondition: every record's embedding has header.dim floats.
std::string EncodeSemanticCacheFile(const SemanticCacheFileHeader& header,
                                    const std::vector<SemanticCacheRecord>& records);

/// Parses and validates `bytes`; `expected_dim` must match the file's. Errors name the problem
/// (bad magic, unknown version, dimension mismatch, truncation, checksum, bad vector).
absl::StatusOr<std::vector<SemanticCacheRecord>> DecodeSemanticCacheFile(std::string_view bytes,
                                                                         uint32_t expected_dim);

/// Writes `bytes` to `path` through a temporary file in the same directory, fsync, rename.
absl::Status WriteFileAtomically(const std::string& path, std::string_view bytes);
/// Reads the whole file.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace saola::cache
