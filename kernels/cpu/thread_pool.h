// A fixed pool of worker threads for data-parallel kernels.
//
// Decode runs a few hundred small ops per token, so a parallel region must start and end in about
// a microsecond: workers spin on an atomic generation counter for a short while before sleeping on
// a condition variable, and the caller takes part as thread 0. One region runs at a time; Run is
// called from one thread only (the model's thread).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace saola::kernels::cpu {

class ThreadPool {
 public:
  /// num_threads counts the caller; 1 means no worker threads at all.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }

  /// Calls fn(thread_index) once on each of size() threads and returns when all have finished.
  template <typename F>
  void Run(F&& fn) {
    auto trampoline = [](void* ctx, int tid) { (*static_cast<F*>(ctx))(tid); };
    RunRaw(trampoline, &fn);
  }

 private:
  using RawFn = void (*)(void*, int);
  void RunRaw(RawFn fn, void* ctx);
  void WorkerLoop(int tid);

  const int num_threads_;
  std::vector<std::thread> workers_;
  RawFn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex mu_;
  std::condition_variable wake_;
};

/// Splits [0, n) into one contiguous range per thread (each a multiple of `align` long, except the
/// last) and calls fn(begin, end) for the non-empty ones in parallel. Small n runs inline.
template <typename F>
void ParallelFor(ThreadPool& pool, int64_t n, int64_t align, F&& fn) {
  const int threads = pool.size();
  if (threads == 1 || n <= align) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t units = (n + align - 1) / align;
  pool.Run([&](int tid) {
    const int64_t begin = std::min(n, units * tid / threads * align);
    const int64_t end = std::min(n, units * (tid + 1) / threads * align);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace saola::kernels::cpu
