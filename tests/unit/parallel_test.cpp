// ParallelFor on the persistent worker pool: coverage for any thread count and grain, nested
// calls, concurrent callers, exceptions. The suite name matches `make test-tsan`'s filter.
#include "moeq/base/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

namespace moeq {
namespace {

TEST(ParallelForThreads, EveryIndexRunsOnceForAnyThreadCountAndGrain) {
  for (int threads : {1, 2, 3, 4, 8}) {
    for (int64_t grain : {1, 3, 64}) {
      for (int64_t n : {1, 7, 100, 1000}) {
        std::vector<int> hits(static_cast<size_t>(n), 0);
        ParallelFor(
            n, [&](int64_t i) { ++hits[static_cast<size_t>(i)]; }, threads, grain);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)], 1)
              << "threads " << threads << " grain " << grain << " n " << n << " i " << i;
        }
      }
    }
  }
}

TEST(ParallelForThreads, NestedCallsCompleteAndCoverEveryPair) {
  constexpr int64_t kOuter = 16, kInner = 50;
  std::vector<int> hits(kOuter * kInner, 0);
  ParallelFor(
      kOuter,
      [&](int64_t o) {
        ParallelFor(
            kInner, [&](int64_t i) { ++hits[static_cast<size_t>(o * kInner + i)]; }, 4);
      },
      4);
  for (int h : hits) ASSERT_EQ(h, 1);
}

TEST(ParallelForThreads, ConcurrentCallersFromSeveralThreadsAllFinish) {
  constexpr int kCallers = 4, kCalls = 50;
  constexpr int64_t kN = 257;
  std::vector<int64_t> sums(kCallers, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int k = 0; k < kCalls; ++k) {
        std::vector<int64_t> out(kN, 0);
        ParallelFor(
            kN, [&](int64_t i) { out[static_cast<size_t>(i)] = i * (k + 1); }, 3, 8);
        sums[static_cast<size_t>(c)] += std::accumulate(out.begin(), out.end(), int64_t{0});
      }
    });
  }
  for (auto& t : callers) t.join();
  const int64_t per_call = kN * (kN - 1) / 2;
  const int64_t want = per_call * (kCalls * (kCalls + 1) / 2);
  for (int64_t s : sums) EXPECT_EQ(s, want);
}

TEST(ParallelForThreads, ExceptionIsRethrownAndThePoolStaysUsable) {
  EXPECT_THROW(ParallelFor(
                   100,
                   [](int64_t i) {
                     if (i == 37) throw std::runtime_error("item 37");
                   },
                   4),
               std::runtime_error);
  std::atomic<int64_t> count{0};
  ParallelFor(
      1000, [&](int64_t) { count.fetch_add(1); }, 4);
  EXPECT_EQ(count.load(), 1000);
}

TEST(ParallelForThreads, UsesNoMoreThreadsThanAsked) {
  // With threads = 2, at most two work items can ever run at the same time, even after the pool
  // has grown to eight threads.
  std::atomic<int> warm{0};
  ParallelFor(
      64, [&](int64_t) { warm.fetch_add(1); }, 8);
  ASSERT_EQ(warm.load(), 64);
  std::atomic<int> running{0}, peak{0};
  ParallelFor(
      64,
      [&](int64_t) {
        const int now = running.fetch_add(1) + 1;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        running.fetch_sub(1);
      },
      2);
  EXPECT_LE(peak.load(), 2);
  EXPECT_GE(peak.load(), 1);
}

}  // namespace
}  // namespace moeq
