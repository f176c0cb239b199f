// ParallelFor on the library's one persistent worker pool.
//
// The pool is created on first use and grows to the largest thread count asked for; its workers
// sleep on a condition variable between jobs and are joined at exit. One job runs on the pool at a
// time: the caller takes part, and only the first `threads - 1` workers join in. Items are handed
// out dynamically in chunks of `grain`, exactly as before, so which thread runs an item never
// affects the (disjoint) outputs. A ParallelFor called from inside a work item runs inline; one
// called from another thread while the pool is busy runs on threads of its own.
#include "moeq/base/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moeq {
namespace {

/// True on a thread that is running work items of a ParallelFor (worker or caller).
thread_local bool t_in_parallel = false;

/// One ParallelFor call: the items, the next chunk to hand out, the first error.
struct Job {
  const std::function<void(int64_t)>* fn = nullptr;
  int64_t n = 0;
  int64_t grain = 1;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::mutex error_mu;
  std::exception_ptr error;

  void Run() {
    const bool was = t_in_parallel;
    t_in_parallel = true;
    while (true) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) break;
      const int64_t end = std::min(n, (c + 1) * grain);
      try {
        for (int64_t i = c * grain; i < end; ++i) (*fn)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        next.store(chunks);
      }
    }
    t_in_parallel = was;
  }
};

/// Runs `job` on `helpers` threads started for this call plus the caller (the fallback when the
/// pool is busy with another caller's job).
void RunOnOwnThreads(Job& job, int helpers) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(helpers));
  for (int i = 0; i < helpers; ++i) threads.emplace_back([&job] { job.Run(); });
  job.Run();
  for (auto& th : threads) th.join();
}

class WorkerPool {
 public:
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& th : workers_) th.join();
  }

  /// Runs `job` on the caller and `helpers` pool workers; false (nothing run) when the pool is
  /// busy with another job.
  bool TryRun(Job& job, int helpers) {
    std::unique_lock<std::mutex> busy(busy_mu_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (static_cast<int>(workers_.size()) < helpers) {
        const int index = static_cast<int>(workers_.size());
        workers_.emplace_back([this, index, seen = generation_] { WorkerLoop(index, seen); });
      }
      job_ = &job;
      job_helpers_ = helpers;
      finished_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    job.Run();
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return finished_ == job_helpers_; });
    job_ = nullptr;
    return true;
  }

 private:
  void WorkerLoop(int index, uint64_t seen) {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index >= job_helpers_) continue;
      Job* job = job_;
      lock.unlock();
      job->Run();
      lock.lock();
      if (++finished_ == job_helpers_) done_.notify_one();
    }
  }

  std::mutex busy_mu_;  // held by the caller whose job is on the pool
  std::mutex mu_;       // guards everything below
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;
  int job_helpers_ = 0;
  int finished_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

WorkerPool& Pool() {
  static WorkerPool pool;
  return pool;
}

}  // namespace

int ResolveThreads(int requested) {
  if (requested > 0) return requested;
  // hardware_concurrency() reads /sys on every call; the answer does not change.
  static const int hc = [] {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
  }();
  return hc;
}

void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn, int threads, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  const int t = static_cast<int>(std::min<int64_t>(ResolveThreads(threads), chunks));
  if (t <= 1 || t_in_parallel) {
    // Serial, or nested inside a work item: run inline on this thread.
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  job.grain = grain;
  job.chunks = chunks;
  if (!Pool().TryRun(job, t - 1)) RunOnOwnThreads(job, t - 1);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace moeq
