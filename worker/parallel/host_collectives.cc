#include "worker/parallel/host_collectives.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "worker/parallel/host_shm_layout.h"

namespace saola::parallel {
namespace {

using host_internal::kBreaking;
using host_internal::kBroken;
using host_internal::kHealthy;
using host_internal::OpDescriptor;
using host_internal::OpKind;
using host_internal::RankControl;
using host_internal::SegmentHeader;
using host_internal::SegmentLayout;
using Clock = std::chrono::steady_clock;

constexpr int32_t kMaxWorldSize = 256;
// Longest single futex sleep: how often a sleeping waiter re-checks liveness and the broken flag.
constexpr auto kSleepSlice = std::chrono::milliseconds(20);

template <typename T>
std::atomic_ref<T> Atomic(T& field) {
  return std::atomic_ref<T>(field);
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// FUTEX_WAIT without FUTEX_PRIVATE_FLAG: the word is shared between processes.
void FutexWait(uint32_t* word, uint32_t expected, Clock::duration timeout) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeAll(uint32_t* word) { syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

// memcpy that accepts the null pointers of empty buffers (count 0 is a valid collective).
inline void CopyBytes(void* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

// Wrap-safe "a has reached b" for 32-bit phase counters.
inline bool Reached(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

absl::string_view OpName(uint32_t kind) {
  switch (static_cast<OpKind>(kind)) {
    case OpKind::kAllReduce: return "all-reduce";
    case OpKind::kBroadcast: return "broadcast";
    case OpKind::kAllGather: return "all-gather";
    case OpKind::kBarrier: return "barrier";
    case OpKind::kNone: break;
  }
  return "nothing";
}

std::string Describe(const OpDescriptor& d) {
  std::string s = absl::StrFormat("%s #%d of %d bytes", OpName(d.kind), d.call, d.bytes);
  if (static_cast<OpKind>(d.kind) == OpKind::kBroadcast) absl::StrAppend(&s, " from root ", d.root);
  return s;
}

std::string FormatTimeout(Clock::duration d) {
  return absl::FormatDuration(absl::FromChrono(d));
}

// True when `pid` no longer runs: it does not exist, or it is a zombie nobody has reaped yet.
bool ProcessGone(int32_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return errno == ENOENT;
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // "pid (comm) S ...": the state follows the last ')' since comm may contain anything.
  const char* paren = std::strrchr(buf, ')');
  if (paren == nullptr || paren[1] == '\0' || paren[2] == '\0') return false;
  return paren[2] == 'Z' || paren[2] == 'X';
}

absl::Status ErrnoStatus(absl::string_view what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

bool ValidGroupName(absl::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

class HostCollectives final : public Collectives {
 public:
  HostCollectives(const HostCollectivesOptions& options, std::string shm_name, char* base,
                  size_t mapped_bytes)
      : rank_(options.rank),
        world_size_(options.world_size),
        timeout_(absl::ToChronoNanoseconds(options.timeout)),
        spin_(absl::ToChronoNanoseconds(options.spin)),
        slot_bytes_(options.slot_bytes),
        max_message_bytes_(options.max_message_bytes),
        group_name_(options.group_name),
        shm_name_(std::move(shm_name)),
        base_(base),
        mapped_bytes_(mapped_bytes),
        layout_(SegmentLayout::For(world_size_, slot_bytes_)),
        header_(reinterpret_cast<SegmentHeader*>(base)),
        control_(reinterpret_cast<RankControl*>(base + layout_.control_offset)) {}

  ~HostCollectives() override {
    if (attached_) {
      // Peers still waiting for this rank learn at their next check that it will not come.
      Atomic(control_[rank_].left).store(1, std::memory_order_release);
      for (int32_t r = 0; r < world_size_; ++r) FutexWakeAll(&control_[r].seq);
    }
    if (rank_ == 0 && !unlinked_) shm_unlink(shm_name_.c_str());
    munmap(base_, mapped_bytes_);
  }

  int32_t rank() const override { return rank_; }
  int32_t world_size() const override { return world_size_; }

  absl::Status Attach();
  absl::Status AllReduceSum(float* data, size_t count) override;
  absl::Status Broadcast(void* data, size_t bytes, int32_t root) override;
  absl::Status AllGather(const float* send, size_t count, float* recv) override;
  absl::Status Barrier() override;

 private:
  char* Slot(uint32_t phase, int32_t r) const {
    size_t index = static_cast<size_t>(phase & 1) * world_size_ + r;
    return base_ + layout_.data_offset + index * slot_bytes_;
  }
  uint32_t next_phase() const { return phase_ + 1; }

  // Starts a call: fails fast on a broken group and checks the size cap (breaking the group,
  // since the other ranks would otherwise wait for this one until the timeout).
  absl::Status BeginCall(OpKind kind, size_t bytes, int32_t root);
  // Publishes arrival at next_phase() and waits until every rank has arrived.
  absl::Status Arrive();
  absl::Status WaitAll(uint32_t phase);
  // The first rank at or after `from` that has not reached `phase`, or -1.
  int32_t FirstMissing(uint32_t phase, int32_t from) const;
  absl::Status CheckMissing(int32_t r) const;
  absl::Status CheckDescriptors(uint32_t phase) const;
  absl::Status BrokenStatus() const;
  absl::Status Break(absl::Status status);

  const int32_t rank_;
  const int32_t world_size_;
  const Clock::duration timeout_;
  const Clock::duration spin_;
  const size_t slot_bytes_;
  const size_t max_message_bytes_;
  const std::string group_name_;
  const std::string shm_name_;
  char* const base_;
  const size_t mapped_bytes_;
  const SegmentLayout layout_;
  SegmentHeader* const header_;
  RankControl* const control_;
  bool attached_ = false;
  bool unlinked_ = false;
  uint32_t phase_ = 0;       // the last phase this rank arrived at
  uint64_t num_calls_ = 0;   // collective calls made, for messages and the descriptor check
  OpDescriptor current_{};   // the call in progress
};

absl::Status HostCollectives::Attach() {
  int32_t expected_pid = 0;
  if (!Atomic(control_[rank_].pid).compare_exchange_strong(expected_pid, getpid())) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "rank %d of group %s is already attached (pid %d)", rank_, group_name_, expected_pid));
  }
  attached_ = true;
  const auto deadline = Clock::now() + timeout_;
  for (int32_t r = 0; r < world_size_; ++r) {
    while (Atomic(control_[r].pid).load(std::memory_order_acquire) == 0) {
      RETURN_IF_ERROR(BrokenStatus());
      if (Clock::now() >= deadline) {
        return Break(absl::DeadlineExceededError(absl::StrFormat(
            "rank %d did not attach to group %s within %s", r, group_name_,
            FormatTimeout(timeout_))));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  // Everyone has the segment mapped: the name is no longer needed, and dropping it now means
  // nothing is left behind in /dev/shm however the group ends.
  if (rank_ == 0) {
    shm_unlink(shm_name_.c_str());
    unlinked_ = true;
  }
  return absl::OkStatus();
}

absl::Status HostCollectives::BrokenStatus() const {
  uint32_t state = Atomic(header_->broken).load(std::memory_order_acquire);
  if (state == kHealthy) return absl::OkStatus();
  // The breaking rank writes a few hundred bytes; give it a moment (it may also have died).
  for (int i = 0; i < 100000 && state == kBreaking; ++i) {
    CpuRelax();
    state = Atomic(header_->broken).load(std::memory_order_acquire);
  }
  if (state != kBroken) return absl::UnavailableError("shard group " + group_name_ + " is broken");
  std::string reason(header_->reason, strnlen(header_->reason, sizeof(header_->reason)));
  return absl::Status(static_cast<absl::StatusCode>(header_->broken_code), reason);
}

absl::Status HostCollectives::Break(absl::Status status) {
  uint32_t expected = kHealthy;
  if (Atomic(header_->broken).compare_exchange_strong(expected, kBreaking)) {
    absl::string_view message = status.message();
    size_t n = std::min(message.size(), sizeof(header_->reason) - 1);
    CopyBytes(header_->reason, message.data(), n);
    header_->reason[n] = '\0';
    header_->broken_code = static_cast<int32_t>(status.code());
    Atomic(header_->broken).store(kBroken, std::memory_order_release);
  }
  for (int32_t r = 0; r < world_size_; ++r) FutexWakeAll(&control_[r].seq);
  // Whoever broke the group first names the cause; every rank reports that one.
  return BrokenStatus();
}

absl::Status HostCollectives::BeginCall(OpKind kind, size_t bytes, int32_t root) {
  RETURN_IF_ERROR(BrokenStatus());
  ++num_calls_;
  current_ = OpDescriptor{static_cast<uint32_t>(kind), root, bytes, num_calls_};
  if (bytes > max_message_bytes_) {
    return Break(absl::InvalidArgumentError(absl::StrFormat(
        "rank %d: %s exceeds max_message_bytes (%d)", rank_, Describe(current_),
        max_message_bytes_)));
  }
  return absl::OkStatus();
}

int32_t HostCollectives::FirstMissing(uint32_t phase, int32_t from) const {
  for (int32_t r = from; r < world_size_; ++r) {
    if (!Reached(Atomic(control_[r].seq).load(std::memory_order_acquire), phase)) return r;
  }
  return -1;
}

absl::Status HostCollectives::CheckMissing(int32_t r) const {
  int32_t pid = Atomic(control_[r].pid).load(std::memory_order_relaxed);
  if (Atomic(control_[r].left).load(std::memory_order_acquire) != 0) {
    return absl::UnavailableError(absl::StrFormat(
        "rank %d (pid %d) left group %s before %s", r, pid, group_name_, Describe(current_)));
  }
  if (ProcessGone(pid)) {
    return absl::UnavailableError(absl::StrFormat("rank %d (pid %d) is gone (group %s, during %s)",
                                                  r, pid, group_name_, Describe(current_)));
  }
  return absl::OkStatus();
}

absl::Status HostCollectives::WaitAll(uint32_t phase) {
  int32_t missing = FirstMissing(phase, 0);
  if (missing < 0) return absl::OkStatus();
  const auto start = Clock::now();
  // Spin: ranks of a decode step arrive within microseconds of each other.
  for (uint32_t i = 1;; ++i) {
    missing = FirstMissing(phase, missing);
    if (missing < 0) return absl::OkStatus();
    if (Atomic(header_->broken).load(std::memory_order_relaxed) != kHealthy) return BrokenStatus();
    if ((i & 63) == 0 && Clock::now() - start >= spin_) break;
    CpuRelax();
  }
  // Sleep on the missing rank's futex word in bounded slices, checking on it in between.
  const auto deadline = start + timeout_;
  while (true) {
    missing = FirstMissing(phase, missing);
    if (missing < 0) return absl::OkStatus();
    RETURN_IF_ERROR(BrokenStatus());
    absl::Status alive = CheckMissing(missing);
    if (!alive.ok()) return Break(std::move(alive));
    auto now = Clock::now();
    if (now >= deadline) {
      return Break(absl::DeadlineExceededError(absl::StrFormat(
          "rank %d did not reach %s within %s (group %s)", missing, Describe(current_),
          FormatTimeout(timeout_), group_name_)));
    }
    RankControl& peer = control_[missing];
    Atomic(peer.waiters).fetch_add(1, std::memory_order_seq_cst);
    uint32_t seen = Atomic(peer.seq).load(std::memory_order_seq_cst);
    if (!Reached(seen, phase)) FutexWait(&peer.seq, seen, std::min<Clock::duration>(kSleepSlice, deadline - now));
    Atomic(peer.waiters).fetch_sub(1, std::memory_order_seq_cst);
  }
}

absl::Status HostCollectives::CheckDescriptors(uint32_t phase) const {
  for (int32_t r = 0; r < world_size_; ++r) {
    if (r == rank_) continue;
    OpDescriptor& d = control_[r].desc[phase & 1];
    OpDescriptor theirs{Atomic(d.kind).load(std::memory_order_relaxed),
                        Atomic(d.root).load(std::memory_order_relaxed),
                        Atomic(d.bytes).load(std::memory_order_relaxed),
                        Atomic(d.call).load(std::memory_order_relaxed)};
    if (theirs.kind != current_.kind || theirs.bytes != current_.bytes ||
        theirs.root != current_.root) {
      return absl::FailedPreconditionError(
          absl::StrFormat("collective mismatch in group %s: rank %d called %s, rank %d called %s",
                          group_name_, rank_, Describe(current_), r, Describe(theirs)));
    }
  }
  return absl::OkStatus();
}

absl::Status HostCollectives::Arrive() {
  const uint32_t phase = next_phase();
  RankControl& self = control_[rank_];
  OpDescriptor& d = self.desc[phase & 1];
  Atomic(d.kind).store(current_.kind, std::memory_order_relaxed);
  Atomic(d.root).store(current_.root, std::memory_order_relaxed);
  Atomic(d.bytes).store(current_.bytes, std::memory_order_relaxed);
  Atomic(d.call).store(current_.call, std::memory_order_relaxed);
  // seq_cst store then seq_cst load of `waiters` pairs with the waiter's increment-then-load:
  // either we see the waiter and wake it, or it sees our phase and does not sleep.
  Atomic(self.seq).store(phase, std::memory_order_seq_cst);
  if (Atomic(self.waiters).load(std::memory_order_seq_cst) != 0) FutexWakeAll(&self.seq);
  phase_ = phase;
  RETURN_IF_ERROR(WaitAll(phase));
  absl::Status same = CheckDescriptors(phase);
  if (!same.ok()) return Break(std::move(same));
  return absl::OkStatus();
}

// out[i] = slot(0)[i] + slot(1)[i] + ... in rank order, in blocks that stay in L1, so every rank
// performs the same float additions in the same order.
void SumSlots(const float* const* slots, int32_t num_slots, size_t count, float* out) {
  constexpr size_t kBlock = 1024;
  for (size_t begin = 0; begin < count; begin += kBlock) {
    const size_t n = std::min(kBlock, count - begin);
    float* __restrict o = out + begin;
    const float* __restrict s0 = slots[0] + begin;
    for (size_t i = 0; i < n; ++i) o[i] = s0[i];
    for (int32_t r = 1; r < num_slots; ++r) {
      const float* __restrict s = slots[r] + begin;
      for (size_t i = 0; i < n; ++i) o[i] += s[i];
    }
  }
}

absl::Status HostCollectives::AllReduceSum(float* data, size_t count) {
  RETURN_IF_ERROR(BeginCall(OpKind::kAllReduce, count * sizeof(float), 0));
  const size_t chunk = slot_bytes_ / sizeof(float);
  const float* slots[kMaxWorldSize];
  size_t done = 0;
  do {  // one phase even for count == 0, so every rank makes the same number of phases
    const size_t n = std::min(chunk, count - done);
    CopyBytes(Slot(next_phase(), rank_), data + done, n * sizeof(float));
    RETURN_IF_ERROR(Arrive());
    for (int32_t r = 0; r < world_size_; ++r) {
      slots[r] = reinterpret_cast<const float*>(Slot(phase_, r));
    }
    SumSlots(slots, world_size_, n, data + done);
    done += n;
  } while (done < count);
  return absl::OkStatus();
}

absl::Status HostCollectives::Broadcast(void* data, size_t bytes, int32_t root) {
  if (root < 0 || root >= world_size_) {
    return absl::InvalidArgumentError(absl::StrFormat("broadcast root %d out of range", root));
  }
  RETURN_IF_ERROR(BeginCall(OpKind::kBroadcast, bytes, root));
  char* bytes_ptr = static_cast<char*>(data);
  size_t done = 0;
  do {
    const size_t n = std::min(slot_bytes_, bytes - done);
    if (rank_ == root) CopyBytes(Slot(next_phase(), root), bytes_ptr + done, n);
    RETURN_IF_ERROR(Arrive());
    if (rank_ != root) CopyBytes(bytes_ptr + done, Slot(phase_, root), n);
    done += n;
  } while (done < bytes);
  return absl::OkStatus();
}

absl::Status HostCollectives::AllGather(const float* send, size_t count, float* recv) {
  RETURN_IF_ERROR(BeginCall(OpKind::kAllGather, count * sizeof(float), 0));
  const size_t chunk = slot_bytes_ / sizeof(float);
  size_t done = 0;
  do {
    const size_t n = std::min(chunk, count - done);
    CopyBytes(Slot(next_phase(), rank_), send + done, n * sizeof(float));
    RETURN_IF_ERROR(Arrive());
    for (int32_t r = 0; r < world_size_; ++r) {
      CopyBytes(recv + r * count + done, Slot(phase_, r), n * sizeof(float));
    }
    done += n;
  } while (done < count);
  return absl::OkStatus();
}

absl::Status HostCollectives::Barrier() {
  RETURN_IF_ERROR(BeginCall(OpKind::kBarrier, 0, 0));
  return Arrive();
}

absl::Status ValidateOptions(const HostCollectivesOptions& o) {
  if (!ValidGroupName(o.group_name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "group_name must be 1-200 characters of [A-Za-z0-9._-], got '", o.group_name, "'"));
  }
  if (o.world_size < 1 || o.world_size > kMaxWorldSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("world_size %d is not in [1, %d]", o.world_size, kMaxWorldSize));
  }
  if (o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank %d is not in [0, %d)", o.rank, o.world_size));
  }
  if (o.slot_bytes < host_internal::kCacheLine || o.slot_bytes % host_internal::kCacheLine != 0 ||
      o.slot_bytes > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("slot_bytes %d must be a multiple of 64 in [64, 1 GiB]", o.slot_bytes));
  }
  if (o.timeout <= absl::ZeroDuration() || o.spin < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout must be positive and spin not negative");
  }
  return absl::OkStatus();
}

// Rank 0: creates the segment, lays out the header and publishes the magic last.
absl::StatusOr<char*> CreateSegment(const std::string& name, const HostCollectivesOptions& o,
                                    const SegmentLayout& layout) {
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "shared-memory segment ", name, " already exists: another group uses the name ",
          o.group_name, ", or a crashed one left it (remove /dev/shm", name, ")"));
    }
    return ErrnoStatus(absl::StrCat("shm_open(", name, ")"), errno);
  }
  if (ftruncate(fd, static_cast<off_t>(layout.total_bytes)) != 0) {
    int err = errno;
    close(fd);
    shm_unlink(name.c_str());
    return ErrnoStatus(absl::StrCat("ftruncate(", name, ")"), err);
  }
  void* base = mmap(nullptr, layout.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (base == MAP_FAILED) {
    shm_unlink(name.c_str());
    return ErrnoStatus(absl::StrCat("mmap(", name, ")"), err);
  }
  // ftruncate zero-fills: every counter, pid and flag starts at 0.
  auto* header = static_cast<SegmentHeader*>(base);
  header->version = host_internal::kSegmentVersion;
  header->world_size = o.world_size;
  header->slot_bytes = o.slot_bytes;
  header->total_bytes = layout.total_bytes;
  Atomic(header->magic).store(host_internal::kSegmentMagic, std::memory_order_release);
  return static_cast<char*>(base);
}

// Ranks 1..N-1: open rank 0's segment once it exists, is sized and is initialized.
absl::StatusOr<char*> OpenSegment(const std::string& name, const HostCollectivesOptions& o,
                                  const SegmentLayout& layout, Clock::time_point deadline) {
  auto timed_out = [&](absl::string_view what) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "rank 0 did not %s group %s (%s) within %s", what, o.group_name, name,
        absl::FormatDuration(o.timeout)));
  };
  auto pause = [] { std::this_thread::sleep_for(std::chrono::microseconds(500)); };
  int fd = -1;
  while ((fd = shm_open(name.c_str(), O_RDWR, 0)) < 0) {
    if (errno != ENOENT) return ErrnoStatus(absl::StrCat("shm_open(", name, ")"), errno);
    if (Clock::now() >= deadline) return timed_out("create");
    pause();
  }
  struct stat st {};
  while (true) {  // rank 0 sizes the segment right after creating it
    if (fstat(fd, &st) != 0) {
      int err = errno;
      close(fd);
      return ErrnoStatus("fstat", err);
    }
    if (st.st_size != 0) break;
    if (Clock::now() >= deadline) {
      close(fd);
      return timed_out("size");
    }
    pause();
  }
  if (static_cast<size_t>(st.st_size) != layout.total_bytes) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrFormat(
        "group %s: segment is %d bytes but rank %d expects %d (world_size or slot_bytes differ "
        "from rank 0's)", o.group_name, st.st_size, o.rank, layout.total_bytes));
  }
  void* base = mmap(nullptr, layout.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (base == MAP_FAILED) return ErrnoStatus(absl::StrCat("mmap(", name, ")"), err);
  auto* header = static_cast<SegmentHeader*>(base);
  while (Atomic(header->magic).load(std::memory_order_acquire) != host_internal::kSegmentMagic) {
    if (Clock::now() >= deadline) {
      munmap(base, layout.total_bytes);
      return timed_out("initialize");
    }
    pause();
  }
  if (header->version != host_internal::kSegmentVersion || header->world_size != o.world_size ||
      header->slot_bytes != o.slot_bytes) {
    munmap(base, layout.total_bytes);
    return absl::InvalidArgumentError(absl::StrFormat(
        "group %s: rank 0 made a v%d segment for %d ranks with %d-byte slots; rank %d expects "
        "v%d, %d ranks, %d-byte slots", o.group_name, header->version, header->world_size,
        header->slot_bytes, o.rank, host_internal::kSegmentVersion, o.world_size, o.slot_bytes));
  }
  return static_cast<char*>(base);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collectives>> CreateHostCollectives(
    const HostCollectivesOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  const std::string name = "/saola-" + options.group_name;
  const SegmentLayout layout = SegmentLayout::For(options.world_size, options.slot_bytes);
  const auto deadline = Clock::now() + absl::ToChronoNanoseconds(options.timeout);
  absl::StatusOr<char*> base = options.rank == 0 ? CreateSegment(name, options, layout)
                                                 : OpenSegment(name, options, layout, deadline);
  if (!base.ok()) return base.status();
  auto group = std::make_unique<HostCollectives>(options, name, *base, layout.total_bytes);
  RETURN_IF_ERROR(group->Attach());
  return std::unique_ptr<Collectives>(std::move(group));
}

}  // namespace saola::parallel
