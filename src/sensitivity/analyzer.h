// The per-tensor analyzer of the sensitivity analysis (private to the sensitivity module; the
// driver is analysis.cpp): features, the rate-distortion grid and the rows of one analysed
// matrix.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/quant/encoders.h"
#include "moeq/quant/input_stats.h"
#include "moeq/quant/quant_format.h"
#include "moeq/quant/quantizer.h"
#include "moeq/sensitivity/analysis.h"
#include "moeq/sensitivity/grid.h"

namespace moeq::sensitivity {

using nlohmann::json;

/// One analysed matrix: a 2-D tensor, or expert slice `slice` of a fused 3-D tensor.
struct Unit {
  int64_t index = 0;  ///< position in the whole model's unit list (all shards)
  const CheckpointTensor* t = nullptr;
  int slice = -1;
  int expert() const { return slice >= 0 ? slice : t->id.expert; }
  int64_t rows() const { return t->info.shape[t->info.shape.size() - 2]; }
  int64_t cols() const { return t->info.shape.back(); }
};

/// Everything a row needs besides the grid figures.
struct Analysis {
  json features = json::object();
  std::vector<const quant::FormatTraits*>
      formats;                           // parallel to the grid (nullptr: not applicable)
  std::vector<quant::ErrorStats> stats;  // parallel to the grid
  std::vector<std::optional<quant::WeightedError>> act;  // parallel to the grid (activation error)
  bool activation_error = false;                         // nrmse/sqnr_db rows report `act`
  /// The error the rows report for grid entry i.
  double Error(size_t i) const {
    return activation_error && act[i] ? act[i]->Relative() : stats[i].Nrmse();
  }
  double Sqnr(size_t i) const {
    return activation_error && act[i] ? act[i]->SqnrDb() : stats[i].SqnrDb();
  }
};

/// Key of a grid entry in cluster maps: the format name, "+encoder" for data-aware encoders.
std::string EntryKey(const quant::FormatTraits& f, quant::EncoderKind e);

class Analyzer {
 public:
  Analyzer(const AnalysisOptions& o, const Checkpoint& ck, const std::vector<GridConfig>& grid,
           const InputStatsFile* act, const InputStatsFile* istats, int threads);

  /// The per-expert (or plain) weight name of a unit, as the statistics file names it.
  std::string StatsName(const Unit& u) const;
  /// The tensor view of a unit (a slice of a fused tensor gets its own TensorInfo).
  Result<TensorView> UnitView(const Unit& u, TensorInfo* slice_info) const;
  Result<std::vector<float>> NormGamma(const Unit& u) const;
  /// sqrt(in_sq_mean) of the unit's input from the activation statistics, or empty.
  std::vector<float> ActScale(const Unit& u) const;
  /// Features and grid of a unit.
  Result<Analysis> Analyze(const Unit& u) const;
  /// Only the rate-distortion grid of a unit (formats and stats; no features): what a cluster
  /// member that is not its representative costs, for the conservative aggregation.
  Result<Analysis> Grid(const Unit& u) const;
  /// The rate-distortion grid: rtn weight errors in one pass over the weights; data-aware
  /// encoders and activation-weighted errors encode, dequantize and measure per entry.
  Status MeasureGrid(const Unit& u, const TensorView& view, Analysis* a) const;
  /// (frobenius, std, kurtosis) of a unit, for clustering.
  Result<std::array<double, 3>> ClusterStats(const Unit& u) const;
  /// The JSON rows of one unit.
  std::vector<json> Rows(const Unit& u, const Analysis& a, const json* cluster) const;

 private:
  const AnalysisOptions& o_;
  const Checkpoint& ck_;
  const std::vector<GridConfig>& grid_;
  const InputStatsFile* act_;     ///< the activation statistics (noise_amplification_act)
  const InputStatsFile* istats_;  ///< the same, when the encoders or the error use them
  int threads_;
  quant::EncoderOptions enc_;
  bool data_aware_ = false;
};

}  // namespace moeq::sensitivity
