// saola-membw: how fast this machine streams memory into the cores, as a yardstick for decode.
//
// Decode of a small model is bound by reading every weight once per token, so the best decode rate
// is about (memory read bandwidth) / (bytes of weights). This tool measures the first factor the
// way STREAM does, read-only: each of `--threads` threads sums its own contiguous slice of a buffer
// much larger than the last-level cache (default 2 GiB; set --mib above the L3 size that lscpu
// reports). Each thread first touches its own slice so pages land near it. One repetition reads
// the whole buffer once; the result is the best and the median of `--reps` repetitions after one
// warm-up pass, in GB/s (1e9 bytes per second), printed as one JSON line:
//
//   {"read_gb_per_s":best,"median_read_gb_per_s":median,"threads":2,"buffer_mib":2048,"reps":7}
//
// The inner loop uses GCC/Clang vector extensions with four independent accumulators, so the loads,
// not the additions, are the bottleneck at any instruction-set level the compiler targets.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Vec = uint64_t __attribute__((vector_size(32)));
constexpr size_t kVecBytes = sizeof(Vec);
constexpr size_t kUnroll = 4;

struct Options {
  int threads = 2;
  size_t mib = 2048;
  int reps = 7;
};

bool ParseInt(const char* s, long min, long* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < min) return false;
  *out = v;
  return true;
}

bool ParseOptions(int argc, char** argv, Options* opt) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    long v = 0;
    if (arg == "--help" || arg == "-h") return false;
    if (i + 1 >= argc) return false;
    const char* value = argv[++i];
    if (arg == "--threads" && ParseInt(value, 1, &v)) {
      opt->threads = static_cast<int>(v);
    } else if (arg == "--mib" && ParseInt(value, 1, &v)) {
      opt->mib = static_cast<size_t>(v);
    } else if (arg == "--reps" && ParseInt(value, 1, &v)) {
      opt->reps = static_cast<int>(v);
    } else {
      return false;
    }
  }
  return true;
}

// Sums n_vecs vectors starting at p; the result only keeps the loads from being optimised away.
uint64_t ReadSlice(const Vec* p, size_t n_vecs) {
  Vec acc[kUnroll] = {};
  size_t i = 0;
  for (; i + kUnroll <= n_vecs; i += kUnroll) {
    for (size_t u = 0; u < kUnroll; ++u) acc[u] += p[i + u];
  }
  for (; i < n_vecs; ++i) acc[0] += p[i];
  Vec total = acc[0] + acc[1] + acc[2] + acc[3];
  uint64_t sum = 0;
  for (size_t k = 0; k < kVecBytes / sizeof(uint64_t); ++k) sum += total[k];
  return sum;
}

// Runs fn(thread_index) on `threads` threads and joins them.
template <typename Fn>
void RunOnThreads(int threads, Fn fn) {
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) pool.emplace_back(fn, t);
  for (auto& th : pool) th.join();
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!ParseOptions(argc, argv, &opt)) {
    std::fprintf(stderr, "usage: %s [--threads N] [--mib MIB] [--reps R]\n", argv[0]);
    return 2;
  }
  const size_t bytes = opt.mib << 20;
  const size_t n_vecs = bytes / kVecBytes;
  auto* buffer = static_cast<Vec*>(std::aligned_alloc(4096, n_vecs * kVecBytes));
  if (buffer == nullptr) {
    std::fprintf(stderr, "saola-membw: cannot allocate %zu MiB\n", opt.mib);
    return 1;
  }
  const size_t per_thread = (n_vecs + opt.threads - 1) / opt.threads;
  auto slice = [&](int t, size_t* begin, size_t* count) {
    *begin = std::min(n_vecs, per_thread * t);
    *count = std::min(n_vecs, *begin + per_thread) - *begin;
  };

  // First touch by the thread that will read the slice.
  RunOnThreads(opt.threads, [&](int t) {
    size_t begin, count;
    slice(t, &begin, &count);
    std::memset(buffer + begin, t + 1, count * kVecBytes);
  });

  std::vector<uint64_t> sums(opt.threads);
  std::vector<double> rates;
  for (int rep = 0; rep <= opt.reps; ++rep) {  // rep 0 is the warm-up
    auto start = std::chrono::steady_clock::now();
    RunOnThreads(opt.threads, [&](int t) {
      size_t begin, count;
      slice(t, &begin, &count);
      sums[t] += ReadSlice(buffer + begin, count);
    });
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    if (rep > 0) rates.push_back(static_cast<double>(n_vecs * kVecBytes) / elapsed.count() / 1e9);
  }
  std::free(buffer);

  uint64_t checksum = 0;
  for (uint64_t s : sums) checksum ^= s;
  std::sort(rates.begin(), rates.end());
  std::printf(
      "{\"read_gb_per_s\":%.2f,\"median_read_gb_per_s\":%.2f,\"threads\":%d,\"buffer_mib\":%zu,"
      "\"reps\":%d,\"checksum\":%llu}\n",
      rates.back(), rates[rates.size() / 2], opt.threads, opt.mib, opt.reps,
      static_cast<unsigned long long>(checksum));
  return 0;
}
