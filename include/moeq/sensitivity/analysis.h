// The sensitivity analysis of a checkpoint (moeq-analyze): per-tensor sensitivity features and
// the rate-distortion grid (MINT §2, §5, §6), written as sensitivity.jsonl
// (moeq/artifacts/sensitivity.h) and optionally a CSV; and the merge of sharded runs.
//
// For every quantizable tensor of a checkpoint (one row set per expert slice of a fused 3-D
// expert tensor) the analysis computes spectral features (randomized SVD), distributional
// features (per-group excess kurtosis), the functional noise amplification of the 4-bit g64
// round-to-nearest residual on norm-scaled Gaussian probes, and NRMSE / SQNR / bytes for every
// config of the grid. Layers with more than `cluster_threshold` routed experts are clustered per
// (layer, projection) with k-means on (frobenius, std, kurtosis) (clustering.h); one
// representative per cluster is analysed and its figures are given to every member.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"

namespace moeq::sensitivity {

/// What to analyse and how (moeq-analyze's options, docs/cli.md).
struct AnalysisOptions {
  std::string model_dir;
  std::string output = "sensitivity.jsonl";
  /// The rate-distortion grid (moeq.mint_grid); "" = the built-in grid (configs/mint_grid.json,
  /// compiled in: an installed moeq-analyze never reads the source tree).
  std::string grid;
  /// Also write a CSV (one row per tensor × config) here.
  std::string csv;
  /// activation_stats.safetensors from moeq-profile --activation-stats ("" = none).
  std::string activation_stats;
  int rank = 256;            ///< k of the randomized SVD (capped by min(rows, cols))
  int oversampling = 10;     ///< extra random directions of the range finder
  int power_iterations = 2;  ///< subspace iterations of the range finder
  int probes = 32;           ///< Gaussian probe columns of the noise amplification
  int kurtosis_group = 128;  ///< weights per group of the group kurtosis
  int64_t seed = 42;
  bool all_experts = false;    ///< analyse every expert even above the cluster threshold
  int cluster_threshold = 32;  ///< more experts than this per layer → k-means
  /// "i/N" (0 <= i < N): analyse the layers l with l % N == i (model-level tensors in shard 0).
  std::string shard;
  /// Encoders measured for every affine grid config ("rtn", "weighted", "gptq", comma-separated):
  /// the grid becomes format × encoder. Data-aware encoders need `activation_stats` (gptq with a
  /// Gram matrix: moeq-profile --gram); tensors without statistics get only the rtn row.
  std::string encoders = "rtn";
  /// "weight": nrmse/sqnr_db are ‖W−Ŵ‖F/‖W‖F (MINT). "activation": for tensors with input
  /// statistics they are the activation-weighted ‖(W−Ŵ)X‖/‖WX‖ = sqrt(tr(ΔHΔᵀ)/tr(WHWᵀ))
  /// (H: Gram matrix when present, else its diagonal); other tensors keep the weight error.
  std::string error = "weight";
  /// Encoder parameters (quant::EncoderOptions).
  double gptq_damp = 0.01;
  int gptq_block = 128;
  bool gptq_act_order = false;
  int weighted_steps = 8;
};

/// Runs the analysis and writes `output` (and `csv`) atomically; `ctx.force` allows replacing
/// them. The option values must be in range (moeq-analyze checks its flags first).
Status AnalyzeSensitivity(const AnalysisOptions& options, const ArtifactContext& ctx);

/// Combines the shard outputs `inputs` (moeq-analyze --shard i/N, every shard once, from one
/// analysis) into the unsharded file `output`: rows ordered by `unit`, the header without
/// options.shard. Errors name the shard file.
Status MergeSensitivityShards(const std::string& output, const std::vector<std::string>& inputs,
                              const ArtifactContext& ctx);

/// Parses "i/N" (0 <= i < N, N >= 1). InvalidArgument names the text.
Result<std::pair<int, int>> ParseShardSpec(const std::string& text);

}  // namespace moeq::sensitivity
