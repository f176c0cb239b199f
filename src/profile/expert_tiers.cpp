// DynaMINT expert tiers (include/moeq/profile/expert_tiers.h).
#include "moeq/profile/expert_tiers.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "moeq/quant/quant_format.h"

namespace moeq {

namespace {

constexpr std::string_view kTierNames[] = {"critical", "standard", "deprioritized", "prunable"};

Result<double> ReadFraction(const nlohmann::json& j, std::string_view path, const char* key) {
  const auto& v = j.at(key);
  if (!v.is_number()) {
    return Status::InvalidArgument(std::string(path) + ": field '" + key + "' must be a number");
  }
  double x = v.get<double>();
  if (!(x >= 0.0 && x <= 1.0)) {
    return Status::InvalidArgument(std::string(path) + ": field '" + key +
                                   "' must be between 0 and 1, got " + JsonExcerpt(v));
  }
  return x;
}

}  // namespace

std::string_view TierName(ExpertTier tier) { return kTierNames[static_cast<int>(tier)]; }

std::optional<ExpertTier> ParseTier(std::string_view name) {
  for (int i = 0; i < 4; ++i) {
    if (kTierNames[i] == name) return static_cast<ExpertTier>(i);
  }
  return std::nullopt;
}

Result<TierThresholds> TierThresholdsFromJson(const nlohmann::json& j, std::string_view path) try {
  if (!j.is_object())
    return Status::InvalidArgument(std::string(path) + ": expected a JSON object");
  if (j.contains("schema")) {
    MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.tiers", 1, path));
  }
  TierThresholds t;
  for (const auto& [key, value] : j.items()) {
    if (key == "schema" || key == "version" || key == "description") continue;
    if (key == "critical_fraction") {
      MOEQ_ASSIGN_OR_RETURN(t.critical_fraction, ReadFraction(j, path, "critical_fraction"));
    } else if (key == "standard_fraction") {
      MOEQ_ASSIGN_OR_RETURN(t.standard_fraction, ReadFraction(j, path, "standard_fraction"));
    } else if (key == "prunable_below_mean_ratio") {
      MOEQ_ASSIGN_OR_RETURN(t.prunable_below_mean_ratio,
                            ReadFraction(j, path, "prunable_below_mean_ratio"));
    } else if (key == "formats") {
      if (!value.is_object()) {
        return Status::InvalidArgument(std::string(path) + ": field 'formats' must be an object");
      }
      for (const auto& [tier, fmt] : value.items()) {
        std::string* slot = tier == "critical"        ? &t.critical_format
                            : tier == "standard"      ? &t.standard_format
                            : tier == "deprioritized" ? &t.deprioritized_format
                                                      : nullptr;
        if (slot == nullptr) {
          return Status::InvalidArgument(
              std::string(path) + ": field 'formats." + tier +
              "': unknown tier (expected critical, standard, deprioritized)");
        }
        if (!fmt.is_string()) {
          return Status::InvalidArgument(std::string(path) + ": field 'formats." + tier +
                                         "' must be a format string such as \"q4g64\"");
        }
        auto parsed = quant::ParseFormatSpec(fmt.get<std::string>());
        if (!parsed.ok()) {
          return Status::InvalidArgument(std::string(path) + ": field 'formats." + tier +
                                         "': " + parsed.status().message());
        }
        *slot = std::string((*parsed)->name);
      }
    } else {
      return Status::InvalidArgument(std::string(path) + ": unknown field '" + key + "'");
    }
  }
  if (t.critical_fraction + t.standard_fraction > 1.0 + 1e-12) {
    return Status::InvalidArgument(std::string(path) +
                                   ": critical_fraction + standard_fraction exceeds 1");
  }
  return t;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Result<TierThresholds> LoadTierThresholds(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(auto j, ReadJsonFile(path));
  return TierThresholdsFromJson(j, path);
}

nlohmann::json TierThresholdsToJson(const TierThresholds& t) {
  return {{"critical_fraction", t.critical_fraction},
          {"standard_fraction", t.standard_fraction},
          {"prunable_below_mean_ratio", t.prunable_below_mean_ratio},
          {"formats",
           {{"critical", t.critical_format},
            {"standard", t.standard_format},
            {"deprioritized", t.deprioritized_format}}}};
}

std::vector<ExpertTier> AssignTiers(std::span<const int64_t> counts, const TierThresholds& t) {
  const size_t n = counts.size();
  std::vector<ExpertTier> tiers(n, ExpertTier::kDeprioritized);
  if (n == 0) return tiers;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return counts[a] > counts[b]; });
  auto n_critical = static_cast<size_t>(std::llround(t.critical_fraction * static_cast<double>(n)));
  n_critical = std::clamp<size_t>(n_critical, 1, n);
  auto n_standard = static_cast<size_t>(std::llround(t.standard_fraction * static_cast<double>(n)));
  n_standard = std::min(n_standard, n - n_critical);
  for (size_t r = 0; r < n; ++r) {
    tiers[order[r]] = r < n_critical                ? ExpertTier::kCritical
                      : r < n_critical + n_standard ? ExpertTier::kStandard
                                                    : ExpertTier::kDeprioritized;
  }
  const double mean =
      static_cast<double>(std::accumulate(counts.begin(), counts.end(), int64_t{0})) /
      static_cast<double>(n);
  const double floor = t.prunable_below_mean_ratio * mean;
  for (size_t e = 0; e < n; ++e) {
    if (static_cast<double>(counts[e]) < floor) tiers[e] = ExpertTier::kPrunable;
  }
  return tiers;
}

}  // namespace moeq
