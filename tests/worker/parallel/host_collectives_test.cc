// The host collectives between real processes: each test forks one child per rank; a child runs
// its rank's part and reports through its exit code (0 = all good; it prints why otherwise), so
// the assertions that span ranks (bit-identical sums) are made inside each child against the
// expected result computed the same way.
#include "worker/parallel/host_collectives.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace saola::parallel {
namespace {

using Clock = std::chrono::steady_clock;

#define CHILD_CHECK(cond, ...)                                                   \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", rank, __FILE__, \
                   __LINE__, #cond);                                             \
      std::fprintf(stderr, __VA_ARGS__);                                         \
      std::fprintf(stderr, "\n");                                                \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

#define CHILD_OK(expr)                                                                        \
  do {                                                                                        \
    absl::Status child_status_ = (expr);                                                      \
    CHILD_CHECK(child_status_.ok(), "%s", child_status_.ToString().c_str());                  \
  } while (0)

std::string GroupPrefix() { return absl::StrCat("t", getpid(), "-"); }

std::string NewGroupName() {
  static int counter = 0;
  return absl::StrCat(GroupPrefix(), ++counter);
}

HostCollectivesOptions Options(const std::string& group, int rank, int world_size) {
  HostCollectivesOptions options;
  options.group_name = group;
  options.rank = rank;
  options.world_size = world_size;
  options.timeout = absl::Seconds(10);
  options.slot_bytes = 4096;  // small, so that modest buffers exercise chunking
  return options;
}

// Forks one child per rank running body(rank); returns each rank's exit code (128 + signal when
// killed). Reaps children as they exit, so a dead rank does not linger as a zombie, and kills
// every child still running after `limit` so a bug cannot hang the test.
std::vector<int> RunRanks(int world_size, const std::function<int(int)>& body,
                          std::chrono::seconds limit = std::chrono::seconds(60)) {
  std::fflush(nullptr);
  std::vector<pid_t> pids(world_size, -1);
  for (int r = 0; r < world_size; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      int code = body(r);
      std::fflush(nullptr);
      _exit(code);
    }
    pids[r] = pid;
  }
  std::vector<int> codes(world_size, -1);
  int remaining = world_size;
  const auto deadline = Clock::now() + limit;
  while (remaining > 0) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "ranks still running after " << limit.count() << " s; killing them";
        for (int r = 0; r < world_size; ++r) {
          if (codes[r] == -1) kill(pids[r], SIGKILL);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    for (int r = 0; r < world_size; ++r) {
      if (pids[r] != pid) continue;
      codes[r] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      --remaining;
    }
  }
  return codes;
}

std::vector<float> RandomFloats(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = dist(rng);
  return v;
}

// Bitwise equality of n floats (memcmp with the null pointers of empty vectors is undefined).
bool SameBits(const float* a, const float* b, size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;
}

class HostCollectivesTest : public ::testing::TestWithParam<int> {
 protected:
  // Whatever happened, the group's segments are gone from /dev/shm.
  void TearDown() override {
    DIR* dir = opendir("/dev/shm");
    ASSERT_NE(dir, nullptr);
    const std::string prefix = "saola-" + GroupPrefix();
    while (dirent* entry = readdir(dir)) {
      EXPECT_FALSE(absl::StartsWith(entry->d_name, prefix)) << "left behind: " << entry->d_name;
    }
    closedir(dir);
  }
};

TEST_P(HostCollectivesTest, AllReduceIsTheRankOrderSumOnEveryRank) {
  const int n = GetParam();
  const std::string group = NewGroupName();
  const std::vector<size_t> sizes = {0, 1, 7, 576, 1024, 1027, 5000};  // 1024 floats = one slot
  auto codes = RunRanks(n, [&](int rank) {
    auto comm = CreateHostCollectives(Options(group, rank, n));
    CHILD_OK(comm.status());
    CHILD_CHECK((*comm)->rank() == rank && (*comm)->world_size() == n, "identity");
    for (size_t size : sizes) {
      std::vector<float> data = RandomFloats(size, 1000 * rank + size);
      std::vector<float> expected = RandomFloats(size, size);
      for (int r = 1; r < n; ++r) {
        std::vector<float> theirs = RandomFloats(size, 1000 * r + size);
        for (size_t i = 0; i < size; ++i) expected[i] += theirs[i];
      }
      CHILD_OK((*comm)->AllReduceSum(data.data(), size));
      CHILD_CHECK(SameBits(data.data(), expected.data(), size),
                  "size %zu: sum differs from the rank-order sum", size);
    }
    return 0;
  });
  EXPECT_EQ(codes, std::vector<int>(n, 0));
}

TEST_P(HostCollectivesTest, BroadcastFromEveryRoot) {
  const int n = GetParam();
  const std::string group = NewGroupName();
  auto codes = RunRanks(n, [&](int rank) {
    auto comm = CreateHostCollectives(Options(group, rank, n));
    CHILD_OK(comm.status());
    for (int root = 0; root < n; ++root) {
      for (size_t bytes : {size_t{0}, size_t{13}, size_t{4096}, size_t{10001}}) {
        std::string expected(bytes, '\0');
        for (size_t i = 0; i < bytes; ++i) expected[i] = static_cast<char>(i * 7 + root);
        std::string data = rank == root ? expected : std::string(bytes, 'x');
        CHILD_OK((*comm)->Broadcast(data.data(), bytes, root));
        CHILD_CHECK(data == expected, "root %d, %zu bytes: wrong data", root, bytes);
      }
    }
    return 0;
  });
  EXPECT_EQ(codes, std::vector<int>(n, 0));
}

TEST_P(HostCollectivesTest, AllGatherConcatenatesInRankOrder) {
  const int n = GetParam();
  const std::string group = NewGroupName();
  auto codes = RunRanks(n, [&](int rank) {
    auto comm = CreateHostCollectives(Options(group, rank, n));
    CHILD_OK(comm.status());
    for (size_t count : {size_t{0}, size_t{5}, size_t{3000}}) {
      std::vector<float> send = RandomFloats(count, 77 * rank + count);
      std::vector<float> recv(count * n, -1.0f);
      CHILD_OK((*comm)->AllGather(send.data(), count, recv.data()));
      for (int r = 0; r < n; ++r) {
        std::vector<float> theirs = RandomFloats(count, 77 * r + count);
        CHILD_CHECK(SameBits(recv.data() + r * count, theirs.data(), count),
                    "count %zu: rank %d's part is wrong", count, r);
      }
    }
    return 0;
  });
  EXPECT_EQ(codes, std::vector<int>(n, 0));
}

// 10,000 small all-reduces back to back, mixed with barriers and broadcasts, with integer-valued
// floats so every result is exact: a race in slot reuse shows up as a wrong sum.
TEST_P(HostCollectivesTest, TenThousandCallsInARow) {
  const int n = GetParam();
  const std::string group = NewGroupName();
  auto codes = RunRanks(n, [&](int rank) {
    auto comm = CreateHostCollectives(Options(group, rank, n));
    CHILD_OK(comm.status());
    float data[8];
    for (int it = 0; it < 10000; ++it) {
      for (int i = 0; i < 8; ++i) data[i] = static_cast<float>(it + i * rank);
      CHILD_OK((*comm)->AllReduceSum(data, 8));
      for (int i = 0; i < 8; ++i) {
        float expected = static_cast<float>(n * it + i * n * (n - 1) / 2);
        CHILD_CHECK(data[i] == expected, "iteration %d, element %d: %g != %g", it, i, data[i],
                    expected);
      }
      if (it % 100 == 0) CHILD_OK((*comm)->Barrier());
      if (it % 250 == 0) {
        int32_t value = rank == it % n ? it : -1;
        CHILD_OK((*comm)->Broadcast(&value, sizeof(value), it % n));
        CHILD_CHECK(value == it, "broadcast %d got %d", it, value);
      }
    }
    return 0;
  });
  EXPECT_EQ(codes, std::vector<int>(n, 0));
}

INSTANTIATE_TEST_SUITE_P(Ranks, HostCollectivesTest, ::testing::Values(2, 3, 4),
                         [](const auto& info) { return absl::StrCat(info.param, "Ranks"); });

// Failure cases: short timeouts; each surviving rank checks the code, the rank named in the
// message and how long it took to fail.
class HostCollectivesFailureTest : public HostCollectivesTest {};

int ExpectFailure(int rank, const absl::Status& status, absl::StatusCode code,
                  const std::string& needle, Clock::time_point since, double max_seconds) {
  double seconds = std::chrono::duration<double>(Clock::now() - since).count();
  CHILD_CHECK(status.code() == code, "unexpected status: %s", status.ToString().c_str());
  CHILD_CHECK(absl::StrContains(status.message(), needle), "'%s' does not name '%s'",
              std::string(status.message()).c_str(), needle.c_str());
  CHILD_CHECK(seconds < max_seconds, "took %.2f s to fail", seconds);
  return 0;
}

TEST_F(HostCollectivesFailureTest, KilledRankFailsTheOthersNamingIt) {
  const std::string group = NewGroupName();
  auto codes = RunRanks(3, [&](int rank) {
    HostCollectivesOptions options = Options(group, rank, 3);
    options.timeout = absl::Seconds(1);
    auto comm = CreateHostCollectives(options);
    CHILD_OK(comm.status());
    std::vector<float> data(576, 1.0f);
    for (int it = 0; it < 100; ++it) CHILD_OK((*comm)->AllReduceSum(data.data(), data.size()));
    if (rank == 2) raise(SIGKILL);
    const auto start = Clock::now();
    absl::Status status;
    for (int it = 0; it < 100 && status.ok(); ++it) {
      status = (*comm)->AllReduceSum(data.data(), data.size());
    }
    int code = ExpectFailure(rank, status, absl::StatusCode::kUnavailable, "rank 2 (pid", start,
                             1.5);
    if (code != 0) return code;
    // The group stays broken: the next call fails at once with the same cause.
    const auto again = Clock::now();
    return ExpectFailure(rank, (*comm)->Barrier(), absl::StatusCode::kUnavailable, "rank 2",
                         again, 0.1);
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0, 128 + SIGKILL}));
}

TEST_F(HostCollectivesFailureTest, RankThatLeavesFailsTheOthers) {
  const std::string group = NewGroupName();
  auto codes = RunRanks(2, [&](int rank) {
    HostCollectivesOptions options = Options(group, rank, 2);
    options.timeout = absl::Seconds(1);
    auto comm = CreateHostCollectives(options);
    CHILD_OK(comm.status());
    CHILD_OK((*comm)->Barrier());
    if (rank == 1) {
      comm->reset();  // leaves the group but the process lives on
      std::this_thread::sleep_for(std::chrono::seconds(2));
      return 0;
    }
    const auto start = Clock::now();
    return ExpectFailure(rank, (*comm)->Barrier(), absl::StatusCode::kUnavailable,
                         "rank 1 (pid", start, 0.5);
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST_F(HostCollectivesFailureTest, HungRankTimesOutAndThenFailsFast) {
  const std::string group = NewGroupName();
  auto codes = RunRanks(3, [&](int rank) {
    HostCollectivesOptions options = Options(group, rank, 3);
    options.timeout = absl::Milliseconds(500);
    auto comm = CreateHostCollectives(options);
    CHILD_OK(comm.status());
    std::vector<float> data(576, 1.0f);
    CHILD_OK((*comm)->AllReduceSum(data.data(), data.size()));
    if (rank == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // hangs past the timeout
      const auto start = Clock::now();
      return ExpectFailure(rank, (*comm)->AllReduceSum(data.data(), data.size()),
                           absl::StatusCode::kDeadlineExceeded, "rank 1 did not reach all-reduce #2",
                           start, 0.1);
    }
    const auto start = Clock::now();
    return ExpectFailure(rank, (*comm)->AllReduceSum(data.data(), data.size()),
                         absl::StatusCode::kDeadlineExceeded, "rank 1 did not reach all-reduce #2",
                         start, 1.0);
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0, 0}));
}

TEST_F(HostCollectivesFailureTest, RankThatNeverAttachesTimesOut) {
  const std::string group = NewGroupName();
  auto codes = RunRanks(2, [&](int rank) {  // a group of 3 whose rank 2 never starts
    HostCollectivesOptions options = Options(group, rank, 3);
    options.timeout = absl::Milliseconds(500);
    const auto start = Clock::now();
    return ExpectFailure(rank, CreateHostCollectives(options).status(),
                         absl::StatusCode::kDeadlineExceeded, "rank 2 did not attach", start, 1.5);
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST_F(HostCollectivesFailureTest, MissingRankZeroTimesOut) {
  HostCollectivesOptions options = Options(NewGroupName(), 1, 2);
  options.timeout = absl::Milliseconds(200);
  absl::Status status = CreateHostCollectives(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "rank 0 did not create")) << status;
}

TEST_F(HostCollectivesFailureTest, MismatchedCallsBreakTheGroup) {
  const std::string group = NewGroupName();
  auto codes = RunRanks(2, [&](int rank) {
    auto comm = CreateHostCollectives(Options(group, rank, 2));
    CHILD_OK(comm.status());
    float x[4] = {};
    absl::Status status = rank == 0 ? (*comm)->AllReduceSum(x, 4) : (*comm)->Broadcast(x, 16, 0);
    return ExpectFailure(rank, status, absl::StatusCode::kFailedPrecondition, "collective mismatch",
                         Clock::now(), 1.0);
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST_F(HostCollectivesFailureTest, DifferentWorldSizesAreRejected) {
  const std::string group = NewGroupName();
  auto codes = RunRanks(2, [&](int rank) {
    HostCollectivesOptions options = Options(group, rank, rank == 0 ? 2 : 3);
    options.timeout = absl::Milliseconds(500);
    absl::Status status = CreateHostCollectives(options).status();
    if (rank == 0) {  // rank 1 never attaches to a 2-rank group
      return ExpectFailure(rank, status, absl::StatusCode::kDeadlineExceeded, "rank 1", Clock::now(),
                           1.0);
    }
    return ExpectFailure(rank, status, absl::StatusCode::kInvalidArgument, "expects", Clock::now(),
                         1.0);
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST(HostCollectivesOptionsTest, RejectsBadOptions) {
  HostCollectivesOptions options = Options("ok", 0, 2);
  options.rank = 2;
  EXPECT_EQ(CreateHostCollectives(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options("no/slash", 0, 2);
  EXPECT_EQ(CreateHostCollectives(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options("ok", 0, 2);
  options.slot_bytes = 100;
  EXPECT_EQ(CreateHostCollectives(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HostCollectivesOptionsTest, OneRankIsItsOwnGroup) {
  auto comm = CreateHostCollectives(Options(NewGroupName(), 0, 1));
  ASSERT_TRUE(comm.ok()) << comm.status();
  float x[3] = {1, 2, 3};
  ASSERT_TRUE((*comm)->AllReduceSum(x, 3).ok());
  EXPECT_EQ(x[2], 3.0f);
  float gathered[3];
  ASSERT_TRUE((*comm)->AllGather(x, 3, gathered).ok());
  EXPECT_EQ(gathered[1], 2.0f);
  EXPECT_TRUE((*comm)->Barrier().ok());
}

TEST(HostCollectivesOptionsTest, RejectsOversizedCalls) {
  HostCollectivesOptions options = Options(NewGroupName(), 0, 1);
  options.max_message_bytes = 64;
  auto comm = CreateHostCollectives(options);
  ASSERT_TRUE(comm.ok()) << comm.status();
  float x[32] = {};
  EXPECT_EQ((*comm)->AllReduceSum(x, 32).code(), absl::StatusCode::kInvalidArgument);
}

// Latency of the all-reduce a TP decode step makes 2 x num_layers times (SmolLM2: 576 floats),
// with the default spin. Prints the figure; asserts only that it is not absurd.
TEST(HostCollectivesLatencyTest, SmallAllReduceOnTwoRanks) {
  const std::string group = NewGroupName();
  constexpr int kWarmup = 2000;
  constexpr int kIterations = 20000;
  auto codes = RunRanks(2, [&](int rank) {
    HostCollectivesOptions options = Options(group, rank, 2);
    options.slot_bytes = size_t{1} << 20;
    auto comm = CreateHostCollectives(options);
    CHILD_OK(comm.status());
    std::vector<float> data(576, 1.0f);
    for (size_t count : {size_t{576}, size_t{576 * 16}}) {
      data.assign(count, 1.0f);
      for (int it = 0; it < kWarmup; ++it) CHILD_OK((*comm)->AllReduceSum(data.data(), count));
      const auto start = Clock::now();
      for (int it = 0; it < kIterations; ++it) CHILD_OK((*comm)->AllReduceSum(data.data(), count));
      double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() /
                  kIterations;
      if (rank == 0) std::printf("all-reduce of %zu floats on 2 ranks: %.2f us\n", count, us);
      CHILD_CHECK(us < 2000, "%.2f us per all-reduce", us);
    }
    const auto start = Clock::now();
    for (int it = 0; it < kIterations; ++it) CHILD_OK((*comm)->Barrier());
    double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / kIterations;
    if (rank == 0) std::printf("barrier on 2 ranks: %.2f us\n", us);
    return 0;
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

}  // namespace
}  // namespace saola::parallel
