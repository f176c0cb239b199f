// moeq-allocate: MINT's rate-distortion bit allocation as a multiple-choice knapsack (MCKP).
//
// Every quantizable tensor (an *item*) takes exactly one of its measured grid configs (an
// *option*: bytes, NRMSE, SQNR). The allocation minimises Σ π·α·NRMSE subject to Σ bytes ≤ budget,
// where π is the tensor's soft protection prior and α its importance (1, or from routing hotness).
// Configs whose SQNR is below the veto floor (9 dB) are forbidden. Policies: "mckp" (MINT),
// "mckp-hotness" (α from routing counts) and "tiered" (DynaMINT: routed experts take their tier's
// format, the other tensors are allocated by MCKP with the remaining budget).
//
// The solver API (moeq::alloc) works on plain arrays so it can be tested and benchmarked alone.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"

namespace moeq {
namespace alloc {

/// A multiple-choice knapsack instance: item i chooses one option in [offsets[i], offsets[i+1]).
/// Costs are ≥ 0 (π·α·NRMSE); bytes are the option's storage size.
struct MckpProblem {
  std::vector<uint32_t> offsets{0};
  std::vector<uint64_t> bytes;
  std::vector<double> cost;
  uint64_t budget = 0;

  size_t items() const { return offsets.size() - 1; }
  /// Appends one item; `b` and `c` have the same non-zero length.
  void AddItem(std::span<const uint64_t> b, std::span<const double> c);
  /// Σ over items of the smallest option (the smallest feasible budget).
  uint64_t MinBytes() const;
  /// Σ over items of the largest option.
  uint64_t MaxBytes() const;
};

enum class SolverKind {
  kAuto,        ///< Lagrangian; on small instances with a gap, exact DP when it fits its cap
  kExact,       ///< Pareto-frontier dynamic programme (exact; fails when the frontier explodes)
  kLagrangian,  ///< LP relaxation on each item's lower convex hull + greedy fill/repair
};

struct MckpSolution {
  /// Option index within each item (0-based, relative to the item's first option).
  std::vector<int32_t> choice;
  double objective = 0;    ///< Σ cost of the chosen options
  double lower_bound = 0;  ///< LP relaxation bound (= objective for the exact solver)
  double gap = 0;          ///< (objective − lower_bound) / objective (0 when objective is 0)
  uint64_t bytes = 0;      ///< Σ bytes of the chosen options (≤ budget)
  std::string method;      ///< "exact-dp" or "lagrangian-hull"
};

/// Exact solver. `max_states` caps the total number of frontier states kept over all stages;
/// beyond it the call fails with Unsupported (the caller falls back to the Lagrangian solver).
/// Infeasible budgets fail with Unsupported naming the smallest feasible size.
Result<MckpSolution> SolveMckpExact(const MckpProblem& p, uint64_t max_states = 4'000'000);
/// Lagrangian relaxation on the lower convex hulls (the LP optimum has at most one fractional
/// item) followed by greedy fill and a one-pass repair over all options. Deterministic: ties
/// are broken by item order, then option order.
Result<MckpSolution> SolveMckpLagrangian(const MckpProblem& p);
/// Chooses the solver (kAuto: the Lagrangian solution when its gap is nil or the instance is
/// large, else the exact DP when it fits its state cap and is no worse).
Result<MckpSolution> SolveMckp(const MckpProblem& p, SolverKind kind = SolverKind::kAuto);

}  // namespace alloc

}  // namespace moeq
