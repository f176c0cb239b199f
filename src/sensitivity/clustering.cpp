// k-means clustering of experts by weight statistics (clustering.h).
#include "moeq/sensitivity/clustering.h"

#include <algorithm>
#include <cmath>

#include "moeq/sensitivity/features.h"

namespace moeq::sensitivity {

std::vector<ExpertCluster> ClusterExperts(std::span<const std::array<double, 3>> stats,
                                          uint64_t seed) {
  // k-means on standardised (frobenius, std, kurtosis).
  const int n = static_cast<int>(stats.size());
  std::vector<double> pts(static_cast<size_t>(n) * 3);
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d)
      pts[static_cast<size_t>(i * 3 + d)] = stats[static_cast<size_t>(i)][static_cast<size_t>(d)];
  }
  for (int d = 0; d < 3; ++d) {
    double m = 0, v = 0;
    for (int i = 0; i < n; ++i) m += pts[static_cast<size_t>(i * 3 + d)];
    m /= n;
    for (int i = 0; i < n; ++i) v += std::pow(pts[static_cast<size_t>(i * 3 + d)] - m, 2);
    const double sd = std::sqrt(v / n);
    for (int i = 0; i < n; ++i) {
      double& x = pts[static_cast<size_t>(i * 3 + d)];
      x = sd > 0 ? (x - m) / sd : 0.0;
    }
  }
  const int k = std::min(n, std::clamp(n / 8, 8, 16));
  const std::vector<int> label = analyze::KMeans(pts, n, 3, k, seed);
  const int nc = *std::max_element(label.begin(), label.end()) + 1;
  std::vector<ExpertCluster> clusters;
  for (int c = 0; c < nc; ++c) {
    ExpertCluster cl;
    cl.id = c;
    std::array<double, 3> cen{0, 0, 0};
    for (int i = 0; i < n; ++i) {
      if (label[static_cast<size_t>(i)] != c) continue;
      cl.members.push_back(i);
      for (int d = 0; d < 3; ++d)
        cen[static_cast<size_t>(d)] += pts[static_cast<size_t>(i * 3 + d)];
    }
    for (double& x : cen) x /= static_cast<double>(cl.members.size());
    int rep = cl.members[0];
    double best = 1e300;
    for (int i : cl.members) {
      double dd = 0;
      for (int d = 0; d < 3; ++d)
        dd += std::pow(pts[static_cast<size_t>(i * 3 + d)] - cen[static_cast<size_t>(d)], 2);
      if (dd < best) {
        best = dd;
        rep = i;
      }
    }
    cl.representative = rep;
    clusters.push_back(std::move(cl));
  }
  return clusters;
}

}  // namespace moeq::sensitivity
