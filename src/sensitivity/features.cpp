// Sensitivity features: randomized SVD, group kurtosis, noise amplification, k-means.
#include "moeq/sensitivity/features.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "moeq/base/parallel.h"
#include "moeq/sensitivity/streamed_features.h"

namespace moeq::analyze {
namespace {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatF = Eigen::MatrixXf;
using MatD = Eigen::MatrixXd;

int64_t NumBlocks(int64_t n, int64_t per) { return (n + per - 1) / per; }

/// Columns per work item of WᵀQ products.
constexpr int64_t kColsPerBlock = 128;

/// Y = W * M (M: cols × l), parallel over fixed row blocks.
MatF MulW(const Eigen::Map<const RowMatF>& W, const MatF& M, int threads) {
  const int64_t rows = W.rows();
  MatF Y(rows, M.cols());
  const int64_t per = internal::RowsPerBlock(W.cols());
  ParallelFor(
      NumBlocks(rows, per),
      [&](int64_t b) {
        const int64_t r0 = b * per, n = std::min(per, rows - r0);
        Y.middleRows(r0, n).noalias() = W.middleRows(r0, n) * M;
      },
      threads);
  return Y;
}

/// Z = Wᵀ * Q (Q: rows × l), parallel over fixed column blocks of W.
MatF MulWt(const Eigen::Map<const RowMatF>& W, const MatF& Q, int threads) {
  const int64_t cols = W.cols();
  MatF Z(cols, Q.cols());
  ParallelFor(
      NumBlocks(cols, kColsPerBlock),
      [&](int64_t b) {
        const int64_t c0 = b * kColsPerBlock, n = std::min(kColsPerBlock, cols - c0);
        Z.middleRows(c0, n).noalias() = W.middleCols(c0, n).transpose() * Q;
      },
      threads);
  return Z;
}

MatF Orthonormalize(const MatF& Y) {
  Eigen::HouseholderQR<MatF> qr(Y);
  return qr.householderQ() * MatF::Identity(Y.rows(), Y.cols());
}

/// Descending singular values from the eigenvalues of a Gram matrix.
std::vector<double> SigmasFromGram(const MatD& G) {
  Eigen::SelfAdjointEigenSolver<MatD> es(G, Eigen::EigenvaluesOnly);
  const auto& ev = es.eigenvalues();  // ascending
  std::vector<double> s(static_cast<size_t>(ev.size()));
  for (int64_t i = 0; i < ev.size(); ++i)
    s[static_cast<size_t>(i)] = std::sqrt(std::max(0.0, ev(ev.size() - 1 - i)));
  return s;
}

}  // namespace

namespace internal {

int64_t RowsPerBlock(int64_t cols) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, cols));
}

Result<double> NoiseAmplificationRows(std::span<const float> w, const RowFetcher& fetch_hat,
                                      int64_t rows, int64_t cols, std::span<const float> scale,
                                      int probes, uint64_t seed, int threads) {
  if (rows <= 0 || cols <= 0 || probes <= 0) return 0.0;
  MatF X(cols, probes);
  Gaussian g(seed);
  for (int p = 0; p < probes; ++p) {
    double nrm = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double v = g.Next();
      X(c, p) = static_cast<float>(v);
      nrm += v * v;
    }
    const float inv = nrm > 0 ? static_cast<float>(1.0 / std::sqrt(nrm)) : 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float s = scale.empty() ? 1.0f : scale[static_cast<size_t>(c)];
      X(c, p) *= inv * s;
    }
  }
  Eigen::Map<const RowMatF> W(w.data(), rows, cols);
  const int64_t per = RowsPerBlock(cols);
  const int64_t nb = NumBlocks(rows, per);
  std::vector<double> num(static_cast<size_t>(nb)), den(static_cast<size_t>(nb));
  std::vector<Status> st(static_cast<size_t>(nb));
  ParallelFor(
      nb,
      [&](int64_t b) {
        const int64_t r0 = b * per, n = std::min(per, rows - r0);
        RowMatF hat(n, cols);
        Status s = fetch_hat(r0, n, std::span<float>(hat.data(), static_cast<size_t>(n * cols)));
        if (!s.ok()) {
          st[static_cast<size_t>(b)] = s;
          return;
        }
        hat -= W.middleRows(r0, n);
        const MatF e = hat * X;
        const MatF y = W.middleRows(r0, n) * X;
        num[static_cast<size_t>(b)] = e.cast<double>().squaredNorm();
        den[static_cast<size_t>(b)] = y.cast<double>().squaredNorm();
      },
      threads);
  double sn = 0, sd = 0;
  for (int64_t b = 0; b < nb; ++b) {
    MOEQ_RETURN_IF_ERROR(st[static_cast<size_t>(b)]);
    sn += num[static_cast<size_t>(b)];
    sd += den[static_cast<size_t>(b)];
  }
  return sd > 0 ? std::sqrt(sn / sd) : 0.0;
}

}  // namespace internal

double Gaussian::Uniform() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (static_cast<double>(z >> 11) + 0.5) * 0x1.0p-53;
}

double Gaussian::Next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u1 = Uniform(), u2 = Uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double t = 6.283185307179586476925 * u2;
  spare_ = r * std::sin(t);
  has_spare_ = true;
  return r * std::cos(t);
}

uint64_t MixSeed(uint64_t seed, std::string_view name, int64_t salt) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  h ^= seed * 0x9E3779B97F4A7C15ULL;
  h ^= static_cast<uint64_t>(salt) * 0xD6E8FEB86659FD93ULL + 0x632BE59BD9B4E019ULL;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 32;
  return h;
}

SpectralFeatures ComputeSpectral(std::span<const float> w, int64_t rows, int64_t cols,
                                 const SpectralOptions& o, int threads) {
  SpectralFeatures f;
  if (rows <= 0 || cols <= 0) return f;
  Eigen::Map<const RowMatF> W(w.data(), rows, cols);
  // Exact Frobenius norm, fixed row blocks reduced in order.
  {
    const int64_t per = internal::RowsPerBlock(cols);
    const int64_t nb = NumBlocks(rows, per);
    std::vector<double> part(static_cast<size_t>(nb));
    ParallelFor(
        nb,
        [&](int64_t b) {
          const int64_t r0 = b * per, n = std::min(per, rows - r0);
          double s = 0;
          for (const float v :
               w.subspan(static_cast<size_t>(r0 * cols), static_cast<size_t>(n * cols)))
            s += static_cast<double>(v) * v;
          part[static_cast<size_t>(b)] = s;
        },
        threads);
    double s = 0;
    for (double v : part) s += v;
    f.frobenius = std::sqrt(s);
  }
  const int64_t n_small = std::min(rows, cols);
  const int k = static_cast<int>(std::min<int64_t>(std::max(1, o.rank), n_small));
  const int64_t l =
      std::min<int64_t>(static_cast<int64_t>(k) + std::max(0, o.oversampling), n_small);
  std::vector<double> sig;
  if (l >= n_small) {
    // Exact: eigenvalues of the Gram matrix of the smaller side, in double.
    MatD G;
    if (rows <= cols) {
      const MatD Wd = W.cast<double>();
      G = Wd * Wd.transpose();
    } else {
      // WᵀW accumulated over fixed row blocks in order.
      const int64_t per = internal::RowsPerBlock(cols);
      const int64_t nb = NumBlocks(rows, per);
      std::vector<MatD> part(static_cast<size_t>(nb));
      ParallelFor(
          nb,
          [&](int64_t b) {
            const int64_t r0 = b * per, n = std::min(per, rows - r0);
            const MatD Wb = W.middleRows(r0, n).cast<double>();
            part[static_cast<size_t>(b)] = Wb.transpose() * Wb;
          },
          threads);
      G = MatD::Zero(cols, cols);
      for (const MatD& p : part) G += p;
    }
    sig = SigmasFromGram(G);
  } else {
    MatF Omega(cols, l);
    Gaussian g(o.seed);
    for (int64_t j = 0; j < l; ++j)
      for (int64_t i = 0; i < cols; ++i) Omega(i, j) = static_cast<float>(g.Next());
    MatF Q = Orthonormalize(MulW(W, Omega, threads));
    for (int it = 0; it < o.power_iterations; ++it) {
      const MatF Z = Orthonormalize(MulWt(W, Q, threads));
      Q = Orthonormalize(MulW(W, Z, threads));
    }
    // B = QᵀW (l × cols); its singular values from the l × l Gram matrix B Bᵀ in double.
    const MatD Bt = MulWt(W, Q, threads).cast<double>();  // cols × l
    const MatD G = Bt.transpose() * Bt;
    sig = SigmasFromGram(G);
  }
  sig.resize(static_cast<size_t>(std::min<int64_t>(k, static_cast<int64_t>(sig.size()))));
  f.k = static_cast<int>(sig.size());
  f.sigma = sig;
  if (sig.empty()) return f;
  f.sigma_max = sig[0];
  f.stable_rank = f.sigma_max > 0 ? (f.frobenius * f.frobenius) / (f.sigma_max * f.sigma_max) : 0.0;
  const size_t top = static_cast<size_t>(std::max(1, f.k / 10));
  double total = 0, tail = 0;
  for (size_t i = 0; i < sig.size(); ++i) {
    total += sig[i] * sig[i];
    if (i >= top) tail += sig[i] * sig[i];
  }
  f.tail_mass = total > 0 ? tail / total : 0.0;
  if (f.sigma_max > 0) {
    const double sk = std::max(sig.back(), f.sigma_max * 1e-30);
    f.log_spectral_spread = std::log(f.sigma_max / sk);
  }
  return f;
}

double ExcessKurtosis(std::span<const float> v) {
  if (v.empty()) return 0.0;
  double mean = 0;
  for (float x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double m2 = 0, m4 = 0;
  for (float x : v) {
    const double d = x - mean, d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= static_cast<double>(v.size());
  m4 /= static_cast<double>(v.size());
  return m2 > 0 ? m4 / (m2 * m2) - 3.0 : 0.0;
}

double Percentile(std::span<const double> sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

DistributionFeatures ComputeDistribution(std::span<const float> w, int64_t rows, int64_t cols,
                                         int group, int threads) {
  DistributionFeatures f;
  if (rows <= 0 || cols <= 0) return f;
  const int64_t g = std::max(1, group);
  const int64_t full = cols / g, rest = cols % g;
  const int64_t per_row = full + (rest >= 4 ? 1 : 0);
  std::vector<double> kurt(static_cast<size_t>(rows * per_row));
  const int64_t per = internal::RowsPerBlock(cols);
  const int64_t nb = NumBlocks(rows, per);
  std::vector<double> sum(static_cast<size_t>(nb)), m2(static_cast<size_t>(nb)),
      m4(static_cast<size_t>(nb));
  // Pass 1: group kurtosis and the global sum.
  ParallelFor(
      nb,
      [&](int64_t b) {
        const int64_t r0 = b * per, n = std::min(per, rows - r0);
        double s = 0;
        for (int64_t r = r0; r < r0 + n; ++r) {
          const float* row = w.data() + r * cols;
          for (int64_t c = 0; c < cols; ++c) s += row[c];
          for (int64_t j = 0; j < per_row; ++j) {
            const int64_t len = std::min(g, cols - j * g);
            kurt[static_cast<size_t>(r * per_row + j)] =
                ExcessKurtosis(std::span<const float>(row + j * g, static_cast<size_t>(len)));
          }
        }
        sum[static_cast<size_t>(b)] = s;
      },
      threads);
  double total = 0;
  for (double s : sum) total += s;
  const double numel = static_cast<double>(rows) * static_cast<double>(cols);
  f.mean = total / numel;
  // Pass 2: central moments.
  ParallelFor(
      nb,
      [&](int64_t b) {
        const int64_t r0 = b * per, n = std::min(per, rows - r0);
        double a2 = 0, a4 = 0;
        for (const float v :
             w.subspan(static_cast<size_t>(r0 * cols), static_cast<size_t>(n * cols))) {
          const double d = v - f.mean, d2 = d * d;
          a2 += d2;
          a4 += d2 * d2;
        }
        m2[static_cast<size_t>(b)] = a2;
        m4[static_cast<size_t>(b)] = a4;
      },
      threads);
  double s2 = 0, s4 = 0;
  for (int64_t b = 0; b < nb; ++b) {
    s2 += m2[static_cast<size_t>(b)];
    s4 += m4[static_cast<size_t>(b)];
  }
  s2 /= numel;
  s4 /= numel;
  f.std = std::sqrt(s2);
  f.kurtosis = s2 > 0 ? s4 / (s2 * s2) - 3.0 : 0.0;
  f.groups = static_cast<int64_t>(kurt.size());
  if (kurt.empty()) return f;
  double km = 0;
  for (double k : kurt) km += k;
  km /= static_cast<double>(kurt.size());
  double kv = 0;
  for (double k : kurt) kv += (k - km) * (k - km);
  const double ksd = std::sqrt(kv / static_cast<double>(kurt.size()));
  int64_t outliers = 0;
  for (double k : kurt) outliers += k > km + 3.0 * ksd ? 1 : 0;
  f.outlier_group_fraction = static_cast<double>(outliers) / static_cast<double>(kurt.size());
  std::sort(kurt.begin(), kurt.end());
  const double p50 = Percentile(kurt, 0.5);
  f.group_p90 = Percentile(kurt, 0.9);
  f.group_p99_minus_p50 = Percentile(kurt, 0.99) - p50;
  f.group_max_minus_median = kurt.back() - p50;
  return f;
}

double NoiseAmplification(std::span<const float> w, std::span<const float> w_hat, int64_t rows,
                          int64_t cols, std::span<const float> scale, int probes, uint64_t seed,
                          int threads) {
  auto fetch = [&](int64_t first, int64_t n, std::span<float> out) {
    std::copy_n(w_hat.data() + first * cols, n * cols, out.data());
    return Status::Ok();
  };
  auto r = internal::NoiseAmplificationRows(w, fetch, rows, cols, scale, probes, seed, threads);
  return r.ok() ? *r : 0.0;
}

std::vector<int> KMeans(std::span<const double> pts, int n, int dims, int k, uint64_t seed) {
  std::vector<int> label(static_cast<size_t>(std::max(0, n)), 0);
  if (n <= 0) return label;
  k = std::clamp(k, 1, n);
  auto dist2 = [&](int i, const std::vector<double>& c, int j) {
    double s = 0;
    for (int d = 0; d < dims; ++d) {
      const double x =
          pts[static_cast<size_t>(i * dims + d)] - c[static_cast<size_t>(j * dims + d)];
      s += x * x;
    }
    return s;
  };
  std::vector<double> cent(static_cast<size_t>(k * dims));
  auto set_center = [&](int j, int i) {
    for (int d = 0; d < dims; ++d)
      cent[static_cast<size_t>(j * dims + d)] = pts[static_cast<size_t>(i * dims + d)];
  };
  // k-means++ initialisation.
  Gaussian rng(seed);
  set_center(0, std::min(n - 1, static_cast<int>(rng.Uniform() * n)));
  std::vector<double> best(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
  for (int j = 1; j < k; ++j) {
    double total = 0;
    for (int i = 0; i < n; ++i) {
      best[static_cast<size_t>(i)] = std::min(best[static_cast<size_t>(i)], dist2(i, cent, j - 1));
      total += best[static_cast<size_t>(i)];
    }
    int pick = 0;
    if (total > 0) {
      const double u = rng.Uniform() * total;
      double acc = 0;
      pick = n - 1;
      for (int i = 0; i < n; ++i) {
        acc += best[static_cast<size_t>(i)];
        if (acc >= u && best[static_cast<size_t>(i)] > 0) {
          pick = i;
          break;
        }
      }
    } else {
      pick = j;  // all points coincide with chosen centres
    }
    set_center(j, pick);
  }
  // Lloyd iterations.
  for (int it = 0; it < 100; ++it) {
    bool changed = it == 0;
    for (int i = 0; i < n; ++i) {
      int arg = 0;
      double bd = dist2(i, cent, 0);
      for (int j = 1; j < k; ++j) {
        const double d = dist2(i, cent, j);
        if (d < bd) {
          bd = d;
          arg = j;
        }
      }
      if (label[static_cast<size_t>(i)] != arg) changed = true;
      label[static_cast<size_t>(i)] = arg;
    }
    if (!changed) break;
    std::vector<double> sum(static_cast<size_t>(k * dims), 0.0);
    std::vector<int> cnt(static_cast<size_t>(k), 0);
    for (int i = 0; i < n; ++i) {
      const int j = label[static_cast<size_t>(i)];
      ++cnt[static_cast<size_t>(j)];
      for (int d = 0; d < dims; ++d)
        sum[static_cast<size_t>(j * dims + d)] += pts[static_cast<size_t>(i * dims + d)];
    }
    for (int j = 0; j < k; ++j) {
      if (cnt[static_cast<size_t>(j)] == 0) {
        // Empty cluster: move it to the point farthest from its centre (lowest index on ties).
        int far = 0;
        double fd = -1;
        for (int i = 0; i < n; ++i) {
          const double d = dist2(i, cent, label[static_cast<size_t>(i)]);
          if (d > fd) {
            fd = d;
            far = i;
          }
        }
        set_center(j, far);
        continue;
      }
      for (int d = 0; d < dims; ++d)
        cent[static_cast<size_t>(j * dims + d)] =
            sum[static_cast<size_t>(j * dims + d)] / cnt[static_cast<size_t>(j)];
    }
  }
  // Renumber clusters by their smallest member.
  std::vector<int> remap(static_cast<size_t>(k), -1);
  int next = 0;
  for (int i = 0; i < n; ++i) {
    int& r = remap[static_cast<size_t>(label[static_cast<size_t>(i)])];
    if (r < 0) r = next++;
    label[static_cast<size_t>(i)] = r;
  }
  return label;
}

}  // namespace moeq::analyze
