// DynaMINT expert tiers from routing counts: critical, standard, deprioritized, prunable.
// Thresholds come from configs/tiers.json (schema moeq.tiers).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq {

enum class ExpertTier : uint8_t { kCritical, kStandard, kDeprioritized, kPrunable };

/// "critical", "standard", "deprioritized", "prunable" (persisted in artefacts).
std::string_view TierName(ExpertTier tier);
std::optional<ExpertTier> ParseTier(std::string_view name);

struct TierThresholds {
  double critical_fraction = 0.20;
  double standard_fraction = 0.65;
  double prunable_below_mean_ratio = 0.05;
  /// Storage format name per tier for the "tiered" allocation policy (index by ExpertTier;
  /// prunable has none).
  std::string critical_format = "q8g64";
  std::string standard_format = "q4g64";
  std::string deprioritized_format = "q2g32";
};

/// Parses a moeq.tiers JSON object; unknown keys and out-of-range fractions are errors naming
/// `path` and the key.
Result<TierThresholds> TierThresholdsFromJson(const nlohmann::json& j, std::string_view path);
/// Reads a moeq.tiers file.
Result<TierThresholds> LoadTierThresholds(const std::string& path);
/// The thresholds as a JSON object (recorded in artefacts).
nlohmann::json TierThresholdsToJson(const TierThresholds& t);

/// Tiers of one layer's experts from their routing counts. Experts are ranked by count
/// (descending; ties by index): the first round(critical_fraction·E) are critical (at least one
/// when E > 0), the next round(standard_fraction·E) standard, the rest deprioritized; any expert
/// whose count is below prunable_below_mean_ratio·mean(count) is prunable whatever its rank.
/// Deterministic.
std::vector<ExpertTier> AssignTiers(std::span<const int64_t> counts, const TierThresholds& t);

}  // namespace moeq
