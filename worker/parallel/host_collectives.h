// The host backend of Collectives: the ranks of a shard group are processes on one machine that
// meet in one POSIX shared-memory segment. CI uses it to run tensor parallelism for real on CPUs.
//
// Segment ("/saola-<group_name>", created by rank 0, opened by the others):
//
//   +--------------------+------------------------------+-------------------------------------+
//   | header (64 B line) | rank control[world_size]     | data: 2 buffers x world_size slots  |
//   | magic, sizes,      | one 64 B line per rank:      | of slot_bytes each; slot (b, r) is   |
//   | broken flag+reason | seq (futex word), waiters,   | written only by rank r               |
//   |                    | pid, left, op descriptor[2]  |                                     |
//   +--------------------+------------------------------+-------------------------------------+
//
// Attach: rank 0 creates the segment (O_EXCL), sizes it, fills the header and publishes the magic
// last; the others retry shm_open until it exists (or the timeout passes) and check that the
// header matches their own options. Each rank stores its pid; once every rank has, rank 0 unlinks
// the name, so nothing is left in /dev/shm whatever happens afterwards (the mappings live on until
// each rank unmaps them in its destructor). A rank that does not attach within the timeout fails
// creation with DEADLINE_EXCEEDED on every rank that did.
//
// Phases: every collective is a sequence of phases, and a phase is one barrier. Rank r writes its
// chunk into slot (p % 2, r) and its op descriptor (kind, bytes, root) into descriptor[p % 2],
// then publishes seq_r = p (a release store; a futex wake only when someone sleeps on it), then
// waits until every seq >= p and reads whatever slots the op needs. No second "done reading"
// barrier is needed: a rank can only be one phase ahead of the slowest, and it reuses buffer p % 2
// at phase p + 2, which it reaches only after every rank published p + 1, i.e. finished reading
// phase p. So a small all-reduce costs one barrier.
//
//   all-reduce:  slot(r) = my chunk; barrier; out = slot(0) + slot(1) + ... in rank order, so
//                every rank computes bit-identical sums (tensor parallelism must be deterministic)
//   broadcast:   slot(root) = root's chunk; barrier; the others copy it out
//   all-gather:  slot(r) = my chunk; barrier; everyone copies every slot out
//   barrier:     one phase with no data
// Buffers larger than a slot go through in slot-sized chunks, one phase each. After each barrier
// the ranks' descriptors are compared, so ranks that disagree on the call (a bug in the caller)
// break the group with FAILED_PRECONDITION instead of exchanging garbage.
//
// Waiting: spin (with a CPU pause) for `spin`, then sleep on the futex of the first rank not yet
// there in slices of at most 20 ms. Between slices the waiter checks the broken flag, whether the
// missing ranks' processes still exist (kill(pid, 0), and /proc/<pid>/stat for zombies) and the
// deadline. Any failure marks the group broken in shared memory with a reason ("rank 2 (pid N) is
// gone", "rank 1 did not reach all-reduce #123 within 30s") and wakes everyone, so every rank
// fails fast with the same message; a broken group never recovers.
//
// One thread at a time calls into a group object (a caller that shares one across threads, say an
// engine thread and a keep-alive thread, serializes its calls).
//
// Knobs (HostCollectivesOptions): timeout bounds each wait (and the attach); slot_bytes is the
// chunk size (memory = 2 * world_size * slot_bytes); spin trades CPU for latency;
// max_message_bytes rejects absurd sizes before any rank starts moving them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/parallel/collectives.h"

namespace saola::parallel {

struct HostCollectivesOptions {
  /// Names the shared-memory segment ("/saola-<group_name>"): unique per group on the machine
  /// and the same on every rank, e.g. rank 0's pid and a counter. [A-Za-z0-9._-], at most 200.
  std::string group_name;
  int32_t rank = 0;
  int32_t world_size = 1;
  /// Bounds every wait: for the other ranks to attach, and for each phase of a collective.
  absl::Duration timeout = absl::Seconds(30);
  /// Largest payload of one call per rank (all-gather: of one rank's send); larger is an error.
  size_t max_message_bytes = size_t{64} << 20;
  /// Bytes per rank per phase; larger buffers are moved in chunks. Every rank must agree.
  size_t slot_bytes = size_t{1} << 20;
  /// How long a waiter spins before sleeping on a futex.
  absl::Duration spin = absl::Microseconds(50);
};

/// Joins (rank 0: creates) the group's shared-memory segment and waits until every rank has
/// attached. Errors: INVALID_ARGUMENT for bad options or options that differ from rank 0's,
/// ALREADY_EXISTS when the segment name is taken or the rank attached twice, DEADLINE_EXCEEDED
/// when a rank does not show up within the timeout, INTERNAL for failed system calls.
absl::StatusOr<std::unique_ptr<Collectives>> CreateHostCollectives(
    const HostCollectivesOptions& options);

}  // namespace saola::parallel
