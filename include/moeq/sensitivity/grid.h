// The rate-distortion grid of moeq-analyze (schema moeq.mint_grid, configs/mint_grid.json):
// which formats every tensor is measured in, expanded to format × encoder.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/quant/encoders.h"

namespace moeq::sensitivity {

struct GridConfig {
  std::string spec;
  int bits = 0;
  int group_size = 0;
  quant::EncoderKind encoder = quant::EncoderKind::kRtn;
  bool affine = false;
};

/// Parses a moeq.mint_grid object; errors name `path` and configs[i].
Result<std::vector<GridConfig>> GridFromJson(const nlohmann::json& j, const std::string& path);

/// The grid of --grid PATH, or the built-in one (configs/mint_grid.json compiled in) when `path`
/// is empty; `*label` and `*sha256` name it in the output header.
Result<std::vector<GridConfig>> LoadGrid(const std::string& path, std::string* label,
                                         std::string* sha256);

/// The grid as format × encoder: every affine config once per encoder (in `encoders` order),
/// float configs once (as rtn).
std::vector<GridConfig> ExpandGridByEncoders(const std::vector<GridConfig>& grid,
                                             const std::vector<quant::EncoderKind>& encoders);

}  // namespace moeq::sensitivity
