// The layout of the host collectives' shared-memory segment (the protocol is described in
// host_collectives.h). Private to the host backend. Fields that more than one process touches
// are accessed only through std::atomic_ref; the structs are plain so that rank 0 can lay them out
// in fresh zeroed memory with no constructors.
#pragma once

#include <cstddef>
#include <cstdint>

namespace saola::parallel::host_internal {

inline constexpr uint64_t kSegmentMagic = 0x4c4f43414c4f4153ULL;  // "SAOLACOL", little-endian
inline constexpr uint32_t kSegmentVersion = 1;
inline constexpr size_t kCacheLine = 64;
inline constexpr size_t kReasonBytes = 384;

/// Values of SegmentHeader::broken.
inline constexpr uint32_t kHealthy = 0;
inline constexpr uint32_t kBreaking = 1;  // the first rank to fail is writing the reason
inline constexpr uint32_t kBroken = 2;    // reason and code are readable

struct alignas(kCacheLine) SegmentHeader {
  uint64_t magic;  // published last by rank 0 (release); the rest is valid once it reads right
  uint32_t version;
  int32_t world_size;
  uint64_t slot_bytes;
  uint64_t total_bytes;
  alignas(kCacheLine) uint32_t broken;  // kHealthy -> kBreaking -> kBroken, never back
  int32_t broken_code;                  // absl::StatusCode of the first failure
  char reason[kReasonBytes];            // NUL-terminated message of the first failure
};

enum class OpKind : uint32_t { kNone = 0, kAllReduce, kBroadcast, kAllGather, kBarrier };

/// What a rank is doing in a phase, compared across ranks after the barrier.
struct OpDescriptor {
  uint32_t kind;
  int32_t root;
  uint64_t bytes;     // the call's whole payload per rank, not the chunk
  uint64_t call;      // 1-based index of the call among this rank's collective calls
};

/// One cache line per rank, written only by that rank (waiters aside).
struct alignas(kCacheLine) RankControl {
  uint32_t seq;       // futex word: the last phase this rank has arrived at
  uint32_t waiters;   // processes sleeping on `seq`; the publisher wakes only when > 0
  int32_t pid;        // set once at attach (0 = not attached)
  uint32_t left;      // 1 once the rank destroyed its Collectives
  OpDescriptor desc[2];  // descriptor of phases with parity 0 and 1
};
static_assert(sizeof(RankControl) == kCacheLine);

/// Byte offsets of each part of a segment for `world_size` ranks and `slot_bytes` per slot.
struct SegmentLayout {
  size_t control_offset = 0;
  size_t data_offset = 0;
  size_t total_bytes = 0;

  static SegmentLayout For(int32_t world_size, size_t slot_bytes) {
    SegmentLayout layout;
    layout.control_offset = sizeof(SegmentHeader);
    size_t control_end = layout.control_offset + sizeof(RankControl) * world_size;
    layout.data_offset = (control_end + 4095) / 4096 * 4096;
    layout.total_bytes = layout.data_offset + 2 * static_cast<size_t>(world_size) * slot_bytes;
    return layout;
  }
};

}  // namespace saola::parallel::host_internal
