// k-means clustering of the routed experts of one (layer, projection) by their weight
// statistics (moeq-analyze above --cluster-threshold experts; docs/artifacts.md `cluster`).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace moeq::sensitivity {

struct ExpertCluster {
  int id = 0;
  std::vector<int> members;  ///< indices into the clustered set, ascending
  int representative = 0;    ///< the member nearest the cluster's centroid
};

/// Clusters n members by (frobenius, std, kurtosis), each standardised over the members, with
/// k = min(n, clamp(n / 8, 8, 16)) clusters (analyze::KMeans with `seed`); clusters in id order.
std::vector<ExpertCluster> ClusterExperts(std::span<const std::array<double, 3>> stats,
                                          uint64_t seed);

}  // namespace moeq::sensitivity
