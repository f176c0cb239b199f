// One thread-pool utility for the whole library: ParallelFor over an index range, run on a
// persistent worker pool (created on first use, grown to the largest thread count asked for,
// joined at exit).
//
// Work items must write to disjoint outputs; reductions are done by the caller in index order,
// so results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace moeq {

/// Number of worker threads to use: `requested` if > 0, else the hardware concurrency.
int ResolveThreads(int requested);

/// Calls fn(i) for i in [0, n) on up to `threads` threads (0 = all cores): the caller and pool
/// workers. Items are handed out dynamically in chunks of `grain`. Exceptions thrown by fn are
/// rethrown on the caller thread (the first one; the remaining chunks are skipped). A call made
/// from inside fn runs inline on the calling thread; calls from several threads at once are
/// safe (one uses the pool, the others threads of their own).
void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn, int threads = 0,
                 int64_t grain = 1);

}  // namespace moeq
