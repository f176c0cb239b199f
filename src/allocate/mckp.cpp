// Multiple-choice knapsack solvers for the bit allocation: an exact Pareto-frontier DP for small
// instances and the Lagrangian (LP) relaxation on lower convex hulls with greedy repair.
#include "moeq/allocate/mckp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

namespace moeq::alloc {
namespace {

std::string GiB(uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
  return buf;
}

Status Infeasible(const MckpProblem& p) {
  const uint64_t min_bytes = p.MinBytes();
  return Status::Unsupported("budget " + std::to_string(p.budget) + " bytes (" + GiB(p.budget) +
                             ") is below the smallest feasible size " + std::to_string(min_bytes) +
                             " bytes (" + GiB(min_bytes) + ")");
}

Status CheckProblem(const MckpProblem& p) {
  if (p.offsets.empty() || p.offsets.front() != 0 || p.offsets.back() != p.bytes.size() ||
      p.bytes.size() != p.cost.size()) {
    return Status::Internal("malformed MCKP problem");
  }
  for (size_t i = 0; i < p.items(); ++i) {
    if (p.offsets[i + 1] <= p.offsets[i])
      return Status::Internal("MCKP item " + std::to_string(i) + " has no option");
  }
  return Status::Ok();
}

void Finish(const MckpProblem& p, MckpSolution* s) {
  s->objective = 0;
  s->bytes = 0;
  for (size_t i = 0; i < p.items(); ++i) {
    const size_t o = p.offsets[i] + static_cast<size_t>(s->choice[i]);
    s->objective += p.cost[o];
    s->bytes += p.bytes[o];
  }
  if (s->lower_bound > s->objective) s->lower_bound = s->objective;  // rounding
  s->gap = s->objective > 0 ? (s->objective - s->lower_bound) / s->objective : 0.0;
}

}  // namespace

void MckpProblem::AddItem(std::span<const uint64_t> b, std::span<const double> c) {
  bytes.insert(bytes.end(), b.begin(), b.end());
  cost.insert(cost.end(), c.begin(), c.end());
  offsets.push_back(static_cast<uint32_t>(bytes.size()));
}

uint64_t MckpProblem::MinBytes() const {
  uint64_t total = 0;
  for (size_t i = 0; i < items(); ++i) {
    total += *std::min_element(bytes.begin() + offsets[i], bytes.begin() + offsets[i + 1]);
  }
  return total;
}

uint64_t MckpProblem::MaxBytes() const {
  uint64_t total = 0;
  for (size_t i = 0; i < items(); ++i) {
    total += *std::max_element(bytes.begin() + offsets[i], bytes.begin() + offsets[i + 1]);
  }
  return total;
}

Result<MckpSolution> SolveMckpExact(const MckpProblem& p, uint64_t max_states) {
  MOEQ_RETURN_IF_ERROR(CheckProblem(p));
  const size_t n = p.items();
  if (p.MinBytes() > p.budget) return Infeasible(p);
  // suffix_min[i]: smallest bytes items i.. can take; prunes states that cannot be completed.
  std::vector<uint64_t> suffix_min(n + 1, 0);
  for (size_t i = n; i-- > 0;) {
    suffix_min[i] = suffix_min[i + 1] + *std::min_element(p.bytes.begin() + p.offsets[i],
                                                          p.bytes.begin() + p.offsets[i + 1]);
  }
  struct State {
    uint64_t bytes;
    double cost;
    uint32_t parent;  // index into the previous stage
    int32_t option;
  };
  std::vector<std::vector<State>> stages(n + 1);
  stages[0].push_back({0, 0.0, 0, -1});
  uint64_t total_states = 1;
  std::vector<State> cand;
  for (size_t i = 0; i < n; ++i) {
    const auto& prev = stages[i];
    cand.clear();
    if (static_cast<uint64_t>(prev.size()) * (p.offsets[i + 1] - p.offsets[i]) > max_states) {
      return Status::Unsupported("exact MCKP: more than " + std::to_string(max_states) +
                                 " candidate states");
    }
    const uint64_t limit = p.budget - suffix_min[i + 1];
    for (uint32_t s = 0; s < prev.size(); ++s) {
      for (uint32_t o = p.offsets[i]; o < p.offsets[i + 1]; ++o) {
        const uint64_t b = prev[s].bytes + p.bytes[o];
        if (b > limit) continue;
        cand.push_back({b, prev[s].cost + p.cost[o], s, static_cast<int32_t>(o - p.offsets[i])});
      }
    }
    std::sort(cand.begin(), cand.end(), [](const State& a, const State& b) {
      if (a.bytes != b.bytes) return a.bytes < b.bytes;
      if (a.cost != b.cost) return a.cost < b.cost;
      if (a.parent != b.parent) return a.parent < b.parent;
      return a.option < b.option;
    });
    auto& next = stages[i + 1];
    double best = std::numeric_limits<double>::infinity();
    for (const State& c : cand) {
      if (c.cost < best) {
        next.push_back(c);
        best = c.cost;
      }
    }
    total_states += next.size();
    if (total_states > max_states) {
      return Status::Unsupported("exact MCKP: more than " + std::to_string(max_states) +
                                 " frontier states");
    }
  }
  MckpSolution sol;
  sol.method = "exact-dp";
  sol.choice.assign(n, 0);
  // The last state of the final frontier has the lowest cost (costs strictly decrease).
  uint32_t s = static_cast<uint32_t>(stages[n].size() - 1);
  for (size_t i = n; i-- > 0;) {
    const State& st = stages[i + 1][s];
    sol.choice[i] = st.option;
    s = st.parent;
  }
  Finish(p, &sol);
  sol.lower_bound = sol.objective;
  sol.gap = 0;
  return sol;
}

Result<MckpSolution> SolveMckpLagrangian(const MckpProblem& p) {
  MOEQ_RETURN_IF_ERROR(CheckProblem(p));
  const size_t n = p.items();
  if (p.MinBytes() > p.budget) return Infeasible(p);

  // Lower convex hull of each item, as global option indices, in hull_opts[hull_off[i]..].
  std::vector<uint32_t> hull_off(n + 1, 0);
  std::vector<uint32_t> hull_opts;
  hull_opts.reserve(p.bytes.size());
  std::vector<uint32_t> order;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t lo = p.offsets[i], hi = p.offsets[i + 1];
    order.resize(hi - lo);
    std::iota(order.begin(), order.end(), lo);
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      if (p.bytes[a] != p.bytes[b]) return p.bytes[a] < p.bytes[b];
      if (p.cost[a] != p.cost[b]) return p.cost[a] < p.cost[b];
      return a < b;
    });
    const size_t start = hull_opts.size();
    for (uint32_t o : order) {
      // Undominated only: strictly lower cost than every smaller option kept.
      if (hull_opts.size() > start && p.cost[o] >= p.cost[hull_opts.back()]) continue;
      // Lower convex hull: pop while the last kept point is on or above the chord.
      while (hull_opts.size() >= start + 2) {
        const uint32_t a = hull_opts[hull_opts.size() - 2], b = hull_opts.back();
        const double x1 = static_cast<double>(p.bytes[b] - p.bytes[a]);
        const double y1 = p.cost[b] - p.cost[a];
        const double x2 = static_cast<double>(p.bytes[o] - p.bytes[a]);
        const double y2 = p.cost[o] - p.cost[a];
        if (x1 * y2 - y1 * x2 <= 0) {
          hull_opts.pop_back();
        } else {
          break;
        }
      }
      hull_opts.push_back(o);
    }
    hull_off[i + 1] = static_cast<uint32_t>(hull_opts.size());
  }

  // Upgrade segments between consecutive hull points; efficiency = cost saved per byte.
  struct Segment {
    double eff;
    uint32_t id;  // global hull position of the segment's start point (item order, then hull order)
  };
  std::vector<Segment> segs;
  segs.reserve(hull_opts.size());
  std::vector<uint32_t> item_of_hull(hull_opts.size());
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t h = hull_off[i]; h < hull_off[i + 1]; ++h)
      item_of_hull[h] = static_cast<uint32_t>(i);
    for (uint32_t h = hull_off[i]; h + 1 < hull_off[i + 1]; ++h) {
      const uint32_t a = hull_opts[h], b = hull_opts[h + 1];
      segs.push_back({(p.cost[a] - p.cost[b]) / static_cast<double>(p.bytes[b] - p.bytes[a]), h});
    }
  }
  std::sort(segs.begin(), segs.end(), [](const Segment& a, const Segment& b) {
    if (a.eff != b.eff) return a.eff > b.eff;
    return a.id < b.id;
  });

  // pos[i]: the item's current hull position (global index into hull_opts).
  std::vector<uint32_t> pos(hull_off.begin(), hull_off.end() - 1);
  uint64_t used = 0;
  double cost = 0;
  for (size_t i = 0; i < n; ++i) {
    used += p.bytes[hull_opts[pos[i]]];
    cost += p.cost[hull_opts[pos[i]]];
  }
  uint64_t slack = p.budget - used;
  double lower_bound = -1;
  for (const Segment& s : segs) {
    const uint32_t i = item_of_hull[s.id];
    if (pos[i] != s.id) continue;  // an earlier segment of this item was not taken
    const uint32_t a = hull_opts[s.id], b = hull_opts[s.id + 1];
    const uint64_t db = p.bytes[b] - p.bytes[a];
    const double dc = p.cost[a] - p.cost[b];
    if (db <= slack) {
      slack -= db;
      cost -= dc;
      pos[i] = s.id + 1;
    } else if (lower_bound < 0) {
      // The first segment that does not fit is the LP's fractional item.
      lower_bound = cost - dc * (static_cast<double>(slack) / static_cast<double>(db));
    }
  }
  MckpSolution sol;
  sol.method = "lagrangian-hull";
  sol.choice.resize(n);
  for (size_t i = 0; i < n; ++i)
    sol.choice[i] = static_cast<int32_t>(hull_opts[pos[i]] - p.offsets[i]);
  // Repair: one pass in item order over every option (hull or not) that lowers the cost and fits.
  for (size_t i = 0; i < n; ++i) {
    const uint32_t cur = p.offsets[i] + static_cast<uint32_t>(sol.choice[i]);
    const uint64_t cap = p.bytes[cur] + slack;
    uint32_t best = cur;
    for (uint32_t o = p.offsets[i]; o < p.offsets[i + 1]; ++o) {
      if (p.bytes[o] > cap) continue;
      if (p.cost[o] < p.cost[best] || (p.cost[o] == p.cost[best] && p.bytes[o] < p.bytes[best]))
        best = o;
    }
    if (best != cur) {
      slack = cap - p.bytes[best];
      sol.choice[i] = static_cast<int32_t>(best - p.offsets[i]);
    }
  }
  Finish(p, &sol);
  sol.lower_bound = lower_bound < 0 ? sol.objective : std::min(lower_bound, sol.objective);
  sol.gap = sol.objective > 0 ? (sol.objective - sol.lower_bound) / sol.objective : 0.0;
  return sol;
}

Result<MckpSolution> SolveMckp(const MckpProblem& p, SolverKind kind) {
  switch (kind) {
    case SolverKind::kExact:
      return SolveMckpExact(p, std::numeric_limits<uint64_t>::max());
    case SolverKind::kLagrangian:
      return SolveMckpLagrangian(p);
    case SolverKind::kAuto:
      break;
  }
  MOEQ_RETURN_IF_ERROR(CheckProblem(p));
  if (p.MinBytes() > p.budget) return Infeasible(p);
  // The Lagrangian solution first (fast, with its LP bound): when its gap is nil it is optimal.
  // Otherwise, on small instances, the exact frontier DP (roughly items × options × frontier
  // size; capped) closes the gap.
  MOEQ_ASSIGN_OR_RETURN(MckpSolution lag, SolveMckpLagrangian(p));
  if (lag.gap <= 1e-9 || p.items() > 4096) return lag;
  auto exact = SolveMckpExact(p, 250'000);
  if (exact.ok() && exact->objective <= lag.objective) return exact;
  return lag;
}

}  // namespace moeq::alloc
