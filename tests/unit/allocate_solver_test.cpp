// MCKP solvers of moeq-allocate against brute force on small random instances.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "moeq/allocate/mckp.h"

namespace moeq::alloc {
namespace {

MckpProblem RandomProblem(std::mt19937_64& rng, int items, int max_options, uint64_t max_bytes) {
  MckpProblem p;
  std::uniform_int_distribution<int> nopt(1, max_options);
  std::uniform_int_distribution<uint64_t> bytes(1, max_bytes);
  std::uniform_real_distribution<double> cost(0.0, 10.0);
  for (int i = 0; i < items; ++i) {
    const int n = nopt(rng);
    std::vector<uint64_t> b(n);
    std::vector<double> c(n);
    for (int k = 0; k < n; ++k) {
      b[k] = bytes(rng);
      c[k] = std::round(cost(rng) * 1000) / 1000;  // ties happen
    }
    p.AddItem(b, c);
  }
  return p;
}

// Best objective by enumeration; +inf when infeasible.
double BruteForce(const MckpProblem& p) {
  const size_t n = p.items();
  std::vector<uint32_t> idx(n, 0);
  double best = std::numeric_limits<double>::infinity();
  while (true) {
    uint64_t b = 0;
    double c = 0;
    for (size_t i = 0; i < n; ++i) {
      b += p.bytes[p.offsets[i] + idx[i]];
      c += p.cost[p.offsets[i] + idx[i]];
    }
    if (b <= p.budget) best = std::min(best, c);
    size_t i = 0;
    while (i < n) {
      if (++idx[i] < p.offsets[i + 1] - p.offsets[i]) break;
      idx[i] = 0;
      ++i;
    }
    if (i == n) break;
  }
  return best;
}

void CheckConsistent(const MckpProblem& p, const MckpSolution& s) {
  ASSERT_EQ(s.choice.size(), p.items());
  uint64_t b = 0;
  double c = 0;
  for (size_t i = 0; i < p.items(); ++i) {
    ASSERT_GE(s.choice[i], 0);
    ASSERT_LT(static_cast<uint32_t>(s.choice[i]), p.offsets[i + 1] - p.offsets[i]);
    b += p.bytes[p.offsets[i] + s.choice[i]];
    c += p.cost[p.offsets[i] + s.choice[i]];
  }
  EXPECT_EQ(b, s.bytes);
  EXPECT_LE(s.bytes, p.budget);
  EXPECT_NEAR(c, s.objective, 1e-9 * (1 + c));
  EXPECT_LE(s.lower_bound, s.objective + 1e-12);
  EXPECT_GE(s.gap, 0.0);
}

TEST(AllocateSolver, ExactEqualsBruteForceAndLagrangianIsWithinItsGap) {
  std::mt19937_64 rng(1234);
  int feasible = 0, infeasible = 0;
  for (int trial = 0; trial < 400; ++trial) {
    MckpProblem p = RandomProblem(rng, 1 + trial % 7, 5, 40);
    const uint64_t lo = p.MinBytes(), hi = p.MaxBytes();
    // Budgets below, at and above the feasible range.
    std::uniform_int_distribution<uint64_t> bd(lo > 5 ? lo - 5 : 0, hi + 5);
    p.budget = bd(rng);
    const double brute = BruteForce(p);
    auto exact = SolveMckpExact(p);
    auto lag = SolveMckpLagrangian(p);
    if (!std::isfinite(brute)) {
      ++infeasible;
      EXPECT_FALSE(exact.ok());
      EXPECT_FALSE(lag.ok());
      EXPECT_NE(
          exact.status().message().find("smallest feasible size " + std::to_string(lo) + " bytes"),
          std::string::npos)
          << exact.status().message();
      continue;
    }
    ++feasible;
    ASSERT_TRUE(exact.ok()) << exact.status().ToString();
    ASSERT_TRUE(lag.ok()) << lag.status().ToString();
    CheckConsistent(p, *exact);
    CheckConsistent(p, *lag);
    EXPECT_NEAR(exact->objective, brute, 1e-9) << "trial " << trial;
    EXPECT_EQ(exact->gap, 0.0);
    // The Lagrangian answer is feasible, never better than the optimum, and its lower bound is
    // a true bound: lower_bound ≤ optimum ≤ objective.
    EXPECT_GE(lag->objective, brute - 1e-9) << "trial " << trial;
    EXPECT_LE(lag->lower_bound, brute + 1e-9) << "trial " << trial;
    EXPECT_NEAR(lag->gap,
                lag->objective > 0 ? (lag->objective - lag->lower_bound) / lag->objective : 0.0,
                1e-12);
  }
  EXPECT_GT(feasible, 300);
  EXPECT_GT(infeasible, 5);
}

TEST(AllocateSolver, LagrangianBoundsTheExactOptimumOnLargerInstances) {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 10; ++trial) {
    MckpProblem p = RandomProblem(rng, 60, 6, 1000);
    p.budget = (p.MinBytes() + p.MaxBytes()) / 2;
    auto exact = SolveMckpExact(p);
    auto lag = SolveMckpLagrangian(p);
    ASSERT_TRUE(exact.ok() && lag.ok());
    CheckConsistent(p, *lag);
    EXPECT_LE(lag->lower_bound, exact->objective + 1e-9);
    EXPECT_GE(lag->objective, exact->objective - 1e-9);
    // One fractional item at most: the gap is below the largest single-item cost range.
    EXPECT_LT(lag->objective - exact->objective, 10.0);
  }
}

TEST(AllocateSolver, ExactObjectiveNeverRisesWithTheBudget) {
  std::mt19937_64 rng(7);
  MckpProblem p = RandomProblem(rng, 25, 6, 200);
  double prev = std::numeric_limits<double>::infinity();
  for (uint64_t b = p.MinBytes(); b <= p.MaxBytes(); b += 37) {
    p.budget = b;
    auto s = SolveMckpExact(p);
    ASSERT_TRUE(s.ok());
    EXPECT_LE(s->objective, prev + 1e-12) << "budget " << b;
    prev = s->objective;
  }
}

TEST(AllocateSolver, DeterministicAndTieBreakingByOrder) {
  // Two identical items and a budget that upgrades exactly one: the first item gets it.
  MckpProblem p;
  const uint64_t b[] = {10, 20};
  const double c[] = {1.0, 0.0};
  p.AddItem(b, c);
  p.AddItem(b, c);
  p.budget = 30;
  for (auto kind : {SolverKind::kExact, SolverKind::kLagrangian}) {
    auto s = SolveMckp(p, kind);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->objective, 1.0);
    EXPECT_EQ(s->bytes, 30u);
  }
  auto lag = SolveMckpLagrangian(p);
  EXPECT_EQ(lag->choice, (std::vector<int32_t>{1, 0}));
  std::mt19937_64 rng(5);
  MckpProblem q = RandomProblem(rng, 3000, 8, 5000);
  q.budget = (q.MinBytes() * 2 + q.MaxBytes()) / 3;
  auto s1 = SolveMckp(q);
  auto s2 = SolveMckp(q);
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_EQ(s1->choice, s2->choice);
  EXPECT_EQ(s1->objective, s2->objective);
}

TEST(AllocateSolver, AboveFullPrecisionTakesTheCheapestCostEverywhere) {
  std::mt19937_64 rng(11);
  MckpProblem p = RandomProblem(rng, 50, 5, 100);
  p.budget = p.MaxBytes() + 1000;
  auto s = SolveMckpLagrangian(p);
  ASSERT_TRUE(s.ok());
  double best = 0;
  for (size_t i = 0; i < p.items(); ++i) {
    best += *std::min_element(p.cost.begin() + p.offsets[i], p.cost.begin() + p.offsets[i + 1]);
  }
  EXPECT_NEAR(s->objective, best, 1e-9);
  EXPECT_EQ(s->gap, 0.0);
}

}  // namespace
}  // namespace moeq::alloc
