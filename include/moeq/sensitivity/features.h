// Sensitivity features of one weight matrix (MINT §2, §5, §6): spectral (randomized SVD),
// distributional (group kurtosis), noise amplification; the building blocks of moeq-analyze.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"

namespace moeq {

namespace analyze {

/// Spectral features of a row-major float matrix [rows, cols].
struct SpectralFeatures {
  int k = 0;                       ///< singular values computed (min(rank, rows, cols))
  std::vector<double> sigma;       ///< the k largest singular values, descending
  double frobenius = 0;            ///< ‖W‖F (exact)
  double sigma_max = 0;            ///< σ1
  double stable_rank = 0;          ///< ‖W‖F² / σ1² (0 for a zero matrix)
  double tail_mass = 0;            ///< Σ_{i > max(1,k/10)} σi² / Σ_{i <= k} σi²
  double log_spectral_spread = 0;  ///< ln(σ1 / σk), σk floored at σ1·1e-30
};
struct SpectralOptions {
  int rank = 256;
  int oversampling = 10;
  int power_iterations = 2;
  uint64_t seed = 42;
};
/// Randomized SVD (Halko et al.: Gaussian range finder with QR-orthonormalised power
/// iterations, then the exact eigenvalues of the small projected Gram matrix). When
/// rank + oversampling >= min(rows, cols) the singular values are exact (Gram matrix of the
/// smaller side). Deterministic for a seed, for any thread count.
SpectralFeatures ComputeSpectral(std::span<const float> w, int64_t rows, int64_t cols,
                                 const SpectralOptions& options, int threads = 0);

/// Distributional features.
struct DistributionFeatures {
  double mean = 0, std = 0;  ///< over all weights (population std)
  double kurtosis = 0;       ///< global excess kurtosis m4/m2² − 3 (0 when m2 = 0)
  double group_p90 = 0;      ///< P90 of the per-group excess kurtosis
  double group_p99_minus_p50 = 0;
  double outlier_group_fraction = 0;  ///< groups with κ > mean(κ) + 3·std(κ)
  double group_max_minus_median = 0;
  int64_t groups = 0;
};
/// Groups are `group` consecutive weights of a row (the last group of a row may be shorter;
/// groups with fewer than 4 weights are skipped). Percentiles interpolate linearly between
/// order statistics (position q·(n−1)).
DistributionFeatures ComputeDistribution(std::span<const float> w, int64_t rows, int64_t cols,
                                         int group = 128, int threads = 0);

/// Excess kurtosis of a set of values (population moments; 0 when the variance is 0).
double ExcessKurtosis(std::span<const float> v);
/// Percentile q in [0,1] of sorted values (linear interpolation).
double Percentile(std::span<const double> sorted, double q);

/// ‖(W_hat − W) X‖F / ‖W X‖F with X = diag(scale) Z, Z [cols, probes] seeded Gaussian with
/// unit-norm columns. `w_hat` has the same shape as `w`. 0 when ‖W X‖ = 0.
double NoiseAmplification(std::span<const float> w, std::span<const float> w_hat, int64_t rows,
                          int64_t cols, std::span<const float> scale, int probes, uint64_t seed,
                          int threads = 0);

/// k-means with k-means++ initialisation (seeded), Lloyd iterations until stable (≤ 100).
/// points: n rows of `dims` values. Returns the cluster of every point; clusters are numbered
/// by their smallest member. Deterministic.
std::vector<int> KMeans(std::span<const double> points, int n, int dims, int k, uint64_t seed);

/// Deterministic standard normal numbers (SplitMix64 + Box–Muller), independent of the
/// standard library implementation.
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : state_(seed) {}
  double Next();
  double Uniform();  ///< in (0, 1)
 private:
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

/// FNV-1a of a string mixed with a seed: per-tensor seeds that do not depend on the shard.
uint64_t MixSeed(uint64_t seed, std::string_view name, int64_t salt = 0);

}  // namespace analyze
}  // namespace moeq
