#include "cache/semantic/semantic_cache_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace saola::cache {
namespace {

constexpr char kMagic[8] = {'S', 'A', 'O', 'L', 'A', 'S', 'C', '\0'};
constexpr size_t kHeaderBytes = 48;
constexpr size_t kChecksumBytes = 8;

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

template <typename T>
void Put(std::string* out, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // little-endian hosts only (x86-64, arm64)
  out->append(buf, sizeof(T));
}

void PutBytes(std::string* out, std::string_view s) {
  Put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// A cursor over untrusted bytes: every read checks what is left.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  size_t left() const { return bytes_.size() - pos_; }
  void Skip(size_t n) { pos_ += std::min(n, left()); }

  template <typename T>
  absl::Status Get(T* v, const char* what) {
    if (left() < sizeof(T)) return Truncated(what);
    std::memcpy(v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }
  absl::Status GetBytes(std::string* s, uint32_t max, const char* what) {
    uint32_t n = 0;
    if (absl::Status st = Get(&n, what); !st.ok()) return st;
    if (n > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("semantic cache file: ", what, " length ", n, " exceeds ", max));
    }
    if (left() < n) return Truncated(what);
    s->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status Truncated(const char* what) const {
    return absl::DataLossError(absl::StrCat("semantic cache file: truncated in ", what,
                                            " at offset ", pos_));
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace

std::string EncodeSemanticCacheFile(const SemanticCacheFileHeader& header,
                                    const std::vector<SemanticCacheRecord>& records) {
  std::string out(kMagic, sizeof(kMagic));
  Put<uint32_t>(&out, kSemanticCacheFileVersion);
  Put<uint32_t>(&out, header.dim);
  Put<int64_t>(&out, header.max_entries);
  Put<int64_t>(&out, absl::ToInt64Microseconds(header.ttl));
  Put<int64_t>(&out, header.hnsw_min_entries);
  Put<uint64_t>(&out, records.size());
  for (const SemanticCacheRecord& r : records) {
    PutBytes(&out, r.partition);
    PutBytes(&out, r.text);
    Put<int64_t>(&out, absl::ToUnixMicros(r.created));
    out.append(reinterpret_cast<const char*>(r.embedding.data()),
               r.embedding.size() * sizeof(float));
    PutBytes(&out, r.response_bytes);
  }
  Put<uint64_t>(&out, Fnv1a64(out));
  return out;
}

absl::StatusOr<std::vector<SemanticCacheRecord>> DecodeSemanticCacheFile(std::string_view bytes,
                                                                         uint32_t expected_dim) {
  if (bytes.size() < kHeaderBytes + kChecksumBytes) {
    return absl::DataLossError(
        absl::StrCat("semantic cache file: ", bytes.size(), " bytes is shorter than a header"));
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError("semantic cache file: bad magic (not a saola cache file)");
  }
  Reader r(bytes.substr(0, bytes.size() - kChecksumBytes));
  r.Skip(sizeof(kMagic));  // checked above
  uint32_t version = 0, dim = 0;
  int64_t max_entries = 0, ttl_us = 0, hnsw_min = 0;
  uint64_t n = 0;
  if (absl::Status s = r.Get(&version, "version"); !s.ok()) return s;
  if (version != kSemanticCacheFileVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "semantic cache file: version ", version, ", this build reads ", kSemanticCacheFileVersion));
  }
  if (absl::Status s = r.Get(&dim, "dim"); !s.ok()) return s;
  if (dim != expected_dim) {
    return absl::FailedPreconditionError(absl::StrCat(
        "semantic cache file: embedding dimension ", dim, ", the embedder's is ", expected_dim));
  }
  // The checksum comes after the version and dim checks so those errors say what is wrong.
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - kChecksumBytes, sizeof(stored));
  if (stored != Fnv1a64(bytes.substr(0, bytes.size() - kChecksumBytes))) {
    return absl::DataLossError("semantic cache file: checksum mismatch (corrupt or truncated)");
  }
  for (auto [v, what] : {std::pair<int64_t*, const char*>{&max_entries, "max_entries"},
                         {&ttl_us, "ttl"}, {&hnsw_min, "hnsw_min_entries"}}) {
    if (absl::Status s = r.Get(v, what); !s.ok()) return s;
  }
  if (absl::Status s = r.Get(&n, "entry count"); !s.ok()) return s;
  // The smallest entry: three lengths, a timestamp, the vector.
  const uint64_t min_entry = 3 * sizeof(uint32_t) + sizeof(int64_t) + uint64_t{dim} * 4;
  if (n > r.left() / min_entry) {
    return absl::DataLossError(absl::StrCat("semantic cache file: ", n,
                                            " entries cannot fit in ", r.left(), " bytes"));
  }
  std::vector<SemanticCacheRecord> records(n);
  for (uint64_t i = 0; i < n; ++i) {
    SemanticCacheRecord& rec = records[i];
    if (absl::Status s = r.GetBytes(&rec.partition, kMaxPartitionBytes, "partition"); !s.ok()) {
      return s;
    }
    if (absl::Status s = r.GetBytes(&rec.text, kMaxTextBytes, "text"); !s.ok()) return s;
    int64_t created_us = 0;
    if (absl::Status s = r.Get(&created_us, "created"); !s.ok()) return s;
    rec.created = absl::FromUnixMicros(created_us);
    rec.embedding.resize(dim);
    double norm2 = 0;
    for (uint32_t d = 0; d < dim; ++d) {
      if (absl::Status s = r.Get(&rec.embedding[d], "embedding"); !s.ok()) return s;
      if (!std::isfinite(rec.embedding[d])) {
        return absl::InvalidArgumentError(
            absl::StrCat("semantic cache file: entry ", i, " has a non-finite embedding"));
      }
      norm2 += double{rec.embedding[d]} * rec.embedding[d];
    }
    if (std::abs(std::sqrt(norm2) - 1.0) > 1e-3) {
      return absl::InvalidArgumentError(
          absl::StrCat("semantic cache file: entry ", i, " embedding is not unit length"));
    }
    if (absl::Status s = r.GetBytes(&rec.response_bytes, kMaxResponseBytes, "response");
        !s.ok()) {
      return s;
    }
  }
  if (r.left() != 0) {
    return absl::DataLossError(
        absl::StrCat("semantic cache file: ", r.left(), " unexpected bytes after the entries"));
  }
  return records;
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view bytes) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("open ", tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("write ", tmp, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("fsync/close ", tmp, ": ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("rename to ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return std::move(ss).str();
}

}  // namespace saola::cache
