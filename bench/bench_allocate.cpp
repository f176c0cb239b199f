// bench_allocate: the MCKP allocator on a synthetic 100,000-tensor × 8-config instance shaped like
// the MINT grid (bytes from the grid formula, NRMSE falling with bits and rising with group size).
// Reports the Lagrangian-hull solver's time, objective, lower bound and gap, checks it is
// deterministic (two solves, identical choices), and compares it with a baseline measured in the
// same run: a plain heap greedy on raw options (no convex hull), and uniform q4g64 at the same
// size.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <queue>
#include <random>
#include <vector>

#include "moeq/allocate/mckp.h"

namespace {

using moeq::alloc::MckpProblem;
using moeq::alloc::MckpSolution;

struct GridConfig {
  int bits, group;
  double nrmse;  // Gaussian-weight NRMSE of the format (moeq's measured values, rounded)
};
constexpr GridConfig kGrid[] = {{2, 32, 0.40},  {3, 64, 0.19},   {4, 32, 0.080},   {4, 64, 0.089},
                                {4, 128, 0.10}, {8, 64, 0.0053}, {8, 128, 0.0059}, {16, 0, 0.0}};

MckpProblem MakeInstance(int tensors, uint64_t seed, uint64_t* q4_bytes, double* q4_cost) {
  std::mt19937_64 rng(seed);
  // Shapes of a large MoE: mostly routed experts, some attention, a few embeddings/routers.
  const int64_t shapes[][2] = {{768, 2048}, {2048, 768}, {4096, 2048},
                               {512, 2048}, {128, 2048}, {151936, 2048}};
  std::discrete_distribution<int> pick({60, 30, 6, 3, 0.9, 0.1});
  std::lognormal_distribution<double> tail(0.0, 0.25);  // per-tensor sensitivity
  std::uniform_real_distribution<double> jitter(0.97, 1.03);
  MckpProblem p;
  *q4_bytes = 0;
  *q4_cost = 0;
  std::vector<uint64_t> b(8);
  std::vector<double> c(8);
  for (int t = 0; t < tensors; ++t) {
    const int k = pick(rng);
    const uint64_t n = static_cast<uint64_t>(shapes[k][0] * shapes[k][1]);
    const double s = tail(rng);
    const double prior = k == 5 ? 10.0 : k == 4 ? 8.0 : 1.0;
    for (int o = 0; o < 8; ++o) {
      const auto& g = kGrid[o];
      b[o] = g.bits == 16 ? 2 * n : n * g.bits / 8 + n / g.group * 4;
      c[o] = prior * g.nrmse * s * (g.bits == 16 ? 1.0 : jitter(rng));
    }
    *q4_bytes += b[3];
    *q4_cost += c[3];
    p.AddItem(b, c);
  }
  return p;
}

// Baseline: heap greedy over raw options (no hull): each item's best upgrade ratio among all
// larger, cheaper-in-cost options; pop the best, apply it when it fits, re-push the item.
MckpSolution HeapGreedy(const MckpProblem& p) {
  const size_t n = p.items();
  MckpSolution s;
  s.choice.resize(n);
  uint64_t used = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t best = p.offsets[i];
    for (uint32_t o = p.offsets[i]; o < p.offsets[i + 1]; ++o) {
      if (p.bytes[o] < p.bytes[best] || (p.bytes[o] == p.bytes[best] && p.cost[o] < p.cost[best]))
        best = o;
    }
    s.choice[i] = static_cast<int32_t>(best - p.offsets[i]);
    used += p.bytes[best];
  }
  struct Up {
    double ratio;
    uint32_t item, option;
    bool operator<(const Up& o) const { return ratio != o.ratio ? ratio < o.ratio : item > o.item; }
  };
  auto best_up = [&](uint32_t i, Up* out) {
    const uint32_t cur = p.offsets[i] + static_cast<uint32_t>(s.choice[i]);
    bool found = false;
    for (uint32_t o = p.offsets[i]; o < p.offsets[i + 1]; ++o) {
      if (p.bytes[o] <= p.bytes[cur] || p.cost[o] >= p.cost[cur]) continue;
      const double r = (p.cost[cur] - p.cost[o]) / static_cast<double>(p.bytes[o] - p.bytes[cur]);
      if (!found || r > out->ratio) *out = {r, i, o}, found = true;
    }
    return found;
  };
  std::priority_queue<Up> heap;
  for (uint32_t i = 0; i < n; ++i) {
    Up u;
    if (best_up(i, &u)) heap.push(u);
  }
  while (!heap.empty()) {
    const Up u = heap.top();
    heap.pop();
    const uint32_t cur = p.offsets[u.item] + static_cast<uint32_t>(s.choice[u.item]);
    const uint64_t db = p.bytes[u.option] - p.bytes[cur];
    if (used + db > p.budget) continue;
    used += db;
    s.choice[u.item] = static_cast<int32_t>(u.option - p.offsets[u.item]);
    Up next;
    if (best_up(u.item, &next)) heap.push(next);
  }
  s.bytes = used;
  for (size_t i = 0; i < n; ++i) s.objective += p.cost[p.offsets[i] + s.choice[i]];
  return s;
}

template <class F>
double BestSeconds(int reps, F&& f) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main() {
  const int kTensors = 100000;
  uint64_t q4_bytes = 0;
  double q4_cost = 0;
  MckpProblem p = MakeInstance(kTensors, 20240601, &q4_bytes, &q4_cost);
  p.budget = q4_bytes;  // the size of uniform q4g64
  auto first = moeq::alloc::SolveMckpLagrangian(p);
  auto second = moeq::alloc::SolveMckpLagrangian(p);
  if (!first.ok() || !second.ok()) {
    std::fprintf(stderr, "solve failed: %s\n", first.status().ToString().c_str());
    return 1;
  }
  const bool deterministic =
      first->choice == second->choice && first->objective == second->objective;
  const double t_hull = BestSeconds(5, [&] { (void)moeq::alloc::SolveMckpLagrangian(p); });
  MckpSolution greedy;
  const double t_greedy = BestSeconds(3, [&] { greedy = HeapGreedy(p); });
  // A tighter and a looser budget too.
  MckpProblem tight = p, loose = p;
  tight.budget = p.MinBytes() + (p.budget - p.MinBytes()) / 4;
  loose.budget = p.budget + (p.MaxBytes() - p.budget) / 2;
  auto st = moeq::alloc::SolveMckpLagrangian(tight);
  auto sl = moeq::alloc::SolveMckpLagrangian(loose);
  const double t_tight = BestSeconds(3, [&] { (void)moeq::alloc::SolveMckpLagrangian(tight); });
  const bool ok = t_hull < 0.100 && first->gap < 1e-3 && deterministic && first->bytes <= p.budget;
  std::printf(
      "{\n  \"instance\": {\"tensors\": %d, \"configs\": 8, \"budget_bytes\": %llu, \"budget\": "
      "\"uniform q4g64 size\"},\n",
      kTensors, static_cast<unsigned long long>(p.budget));
  std::printf(
      "  \"lagrangian_hull\": {\"seconds\": %.4f, \"objective\": %.6f, \"lower_bound\": %.6f, "
      "\"gap\": %.3e, \"bytes\": %llu, \"deterministic\": %s},\n",
      t_hull, first->objective, first->lower_bound, first->gap,
      static_cast<unsigned long long>(first->bytes), deterministic ? "true" : "false");
  std::printf(
      "  \"baseline_heap_greedy\": {\"seconds\": %.4f, \"objective\": %.6f, "
      "\"gap_to_lower_bound\": %.3e},\n",
      t_greedy, greedy.objective, (greedy.objective - first->lower_bound) / greedy.objective);
  std::printf(
      "  \"baseline_uniform_q4g64\": {\"objective\": %.6f, \"ratio_to_allocated\": %.4f},\n",
      q4_cost, q4_cost / first->objective);
  std::printf(
      "  \"tight_budget\": {\"seconds\": %.4f, \"gap\": %.3e}, \"loose_budget\": {\"gap\": "
      "%.3e},\n",
      t_tight, st.ok() ? st->gap : -1.0, sl.ok() ? sl->gap : -1.0);
  std::printf("  \"speedup_vs_heap_greedy\": %.2f,\n  \"targets_met\": %s\n}\n", t_greedy / t_hull,
              ok ? "true" : "false");
  return ok ? 0 : 1;
}
