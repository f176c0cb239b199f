// routing_profile.json (schema moeq.routing_profile, version 1): written by moeq-profile, read
// by moeq-allocate (tiers, exposure) and moeq-report (the routing heatmap). docs/artifacts.md
// describes the fields; this header is their one definition in code.
//
// The profile module computes the statistics (moeq/profile/routing_profile.h) and converts them
// to and from this struct (RoutingProfileToArtifact / RoutingProfileFromArtifact); the
// `hotness` and `tiers` sections are the moeq.hotness / moeq.tiers settings used, kept as JSON
// here and interpreted by the profile module (HotnessOptionsFromJson, TierThresholdsFromJson).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq::artifacts {

inline constexpr std::string_view kRoutingProfileSchema = "moeq.routing_profile";
inline constexpr int kRoutingProfileVersion = 1;

/// `model`: what was profiled.
struct RoutingModelInfo {
  std::string model_type;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t moe_intermediate_size = 0;
};

/// `calibration`: how much text was run.
struct RoutingCalibration {
  int64_t tokens = 0;
  int64_t windows = 0;
  int64_t context = 0;
  std::string source = "engine";  ///< "engine" or "trace"
};

/// One entry of `domains[]`.
struct RoutingDomain {
  std::string name;
  std::vector<std::string> sources;
  std::vector<std::string> sha256;
  int64_t tokens = 0;
  int64_t windows = 0;
};

/// `layers[].experts[].hotness`.
struct RoutingExpertHotness {
  double hot_fraction = 0;
  int64_t promotions = 0;
  int64_t demotions = 0;
  bool hot_at_end = false;
  double freq_mean = 0;
  double freq_min = 0;
  double freq_max = 0;
};

/// One entry of `layers[].experts[]`. count and gate_mass are required; the rest are written by
/// moeq-profile and optional for readers.
struct RoutingExpert {
  int64_t expert = 0;
  int64_t count = 0;
  double frac = 0;
  double mean_gate = 0;
  double gate_mass = 0;
  std::optional<double> prob_mass;  ///< absent for profiles made from traces
  double mean_rank = 0;
  std::string tier;  ///< "" = absent
  std::optional<std::map<std::string, int64_t>> domain_counts;
  std::optional<RoutingExpertHotness> hotness;
};

/// `layers[].summary`.
struct RoutingLayerSummary {
  int64_t max_count = 0;
  int64_t min_count = 0;
  int64_t unused_experts = 0;
  double max_over_mean = 0;
  int64_t hottest_expert = -1;
  double normalized_entropy = 0;
  std::map<std::string, int64_t> tiers;  ///< tier name -> number of experts
};

/// One entry of `layers[].coactivation.top_pairs[]`.
struct RoutingPair {
  int64_t a = 0, b = 0;  ///< `experts`: [a, b], a < b
  int64_t count = 0;
  double lift = 0;
};

/// `layers[].hotness`.
struct RoutingLayerHotness {
  int64_t updates = 0;
  double mean_hot_set = 0;
  int64_t churn = 0;
};

/// One entry of `layers[]`. MoE layers carry experts (and, as written by moeq-profile, the
/// summary, co-activation pairs and hotness).
struct RoutingLayer {
  int64_t layer = 0;
  bool moe = false;
  int64_t tokens = 0;
  std::vector<RoutingExpert> experts;
  std::optional<RoutingLayerSummary> summary;
  std::optional<std::vector<RoutingPair>> top_pairs;
  std::optional<RoutingLayerHotness> hotness;
};

struct RoutingProfileArtifact {
  /// The envelope: schema, version, producer, inputs, options.
  nlohmann::json header = nlohmann::json::object();
  RoutingModelInfo model;
  RoutingCalibration calibration;
  std::vector<RoutingDomain> domains;
  /// The moeq.hotness parameters used plus `uniform_share`, `promote_frequency`,
  /// `demote_frequency`; null = absent.
  nlohmann::json hotness;
  /// The moeq.tiers thresholds used; null = absent.
  nlohmann::json tiers;
  int64_t top_pairs = 16;  ///< `coactivation.top_pairs`: pairs kept per layer
  std::vector<RoutingLayer> layers;
  /// Any other top-level key, as written.
  nlohmann::json sections = nlohmann::json::object();
};

/// Parses a routing_profile.json object; errors read "PATH: layers[I].experts[J]: field 'F':
/// what". A newer version is refused.
Result<RoutingProfileArtifact> ParseRoutingProfile(const nlohmann::json& j, std::string_view path);
Result<RoutingProfileArtifact> ReadRoutingProfile(const std::string& path);
/// The routing_profile.json object as moeq-profile writes it.
nlohmann::json RoutingProfileToJson(const RoutingProfileArtifact& p);

}  // namespace moeq::artifacts
