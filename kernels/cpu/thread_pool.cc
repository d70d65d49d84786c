#include "kernels/cpu/thread_pool.h"

#include <immintrin.h>

namespace saola::kernels::cpu {
namespace {
// Spin iterations before a worker sleeps: long enough to cover the gap between two ops of one
// decode step (a pause is ~40-140 cycles, so this is well under a millisecond), short enough not
// to burn a core while the server is idle or starve another process sharing the cores.
constexpr int kSpinsBeforeSleep = 20000;
}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int tid = 1; tid < num_threads_; ++tid) {
    workers_.emplace_back([this, tid] { WorkerLoop(tid); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunRaw(RawFn fn, void* ctx) {
  if (num_threads_ == 1) {
    fn(ctx, 0);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  // Sequentially consistent on both sides (here and the sleeper's fetch_add then predicate
  // check) so a worker about to sleep either sees the new generation or is seen as a sleeper.
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
  }
  fn(ctx, 0);
  while (pending_.load(std::memory_order_acquire) != 0) _mm_pause();
}

void ThreadPool::WorkerLoop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    uint64_t gen;
    while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < kSpinsBeforeSleep) {
        _mm_pause();
        continue;
      }
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1);
      spins = 0;
    }
    seen = gen;
    if (stop_.load()) return;
    fn_(ctx_, tid);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace saola::kernels::cpu
