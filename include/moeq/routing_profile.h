// Expert routing profile: how often the router picks each expert on calibration text, with what
// weight, and the second moments of the inputs every linear layer sees (an importance-matrix
// analogue used by the activation-weighted sensitivity features).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moeq/arch.h"
#include "moeq/engine.h"
#include "moeq/status.h"

namespace moeq {

/// Routing statistics of one expert of one layer.
struct ExpertUsage {
  int64_t count = 0;       ///< tokens that chose this expert among their top-k
  double gate_mass = 0;    ///< sum of the mixing weights it received
  double prob_mass = 0;    ///< sum over all tokens of its router probability
};

/// One decoder layer's statistics. Sums of squares are divided by the counts on output.
struct LayerProfile {
  int layer = 0;
  bool moe = false;
  int64_t tokens = 0;
  std::vector<ExpertUsage> experts;      ///< [num_experts] (MoE layers)
  std::vector<double> attn_in_sq;        ///< [hidden] Σ x² of the attention input, all tokens
  std::vector<double> mlp_in_sq;         ///< [hidden] Σ x² of the MoE / MLP input, all tokens
  std::vector<double> expert_in_sq;      ///< [experts, hidden] Σ x² over tokens routed to each expert
  std::vector<double> expert_act_sq;     ///< [experts, ff] Σ a² of each expert's down-projection input
};

struct RoutingProfile {
  std::string model_type;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  int64_t moe_ff = 0;
  int64_t tokens = 0;    ///< tokens run (every token of every window)
  int64_t windows = 0;
  int64_t context = 0;
  std::vector<LayerProfile> layers;
};

struct ProfileOptions {
  /// Tokens per window; each window runs from position 0.
  int64_t context = 512;
  /// Profile at most this many windows (0 = all full windows of the text).
  int64_t max_windows = 0;
  /// Collect activation second moments (costs a little memory per window in flight).
  bool activations = true;
  int threads = 0;
  bool progress = true;
};

/// Runs the model over `tokens` in windows and accumulates routing and activation statistics.
/// Deterministic: identical for any thread count.
Result<RoutingProfile> ProfileRouting(const Engine& engine, std::span<const int32_t> tokens,
                                      const ProfileOptions& options);

/// The routing part as JSON (layers[].experts[] with count, frac, mean_gate, gate_mass,
/// prob_mass, plus per-layer summaries). `header` is merged in (schema, producer, ...).
nlohmann::json RoutingProfileToJson(const RoutingProfile& profile, nlohmann::json header);

/// Reads the routing part back (counts and masses; activation statistics are not in JSON).
Result<RoutingProfile> RoutingProfileFromJson(const nlohmann::json& j, std::string_view path);

/// Writes the activation statistics as safetensors: for every linear weight W of the model,
/// "<W name>.in_sq_mean" (F32 [in_features]) and "<W name>.count" (I64 [1]); expert inputs
/// are averaged only over the tokens routed to that expert. Atomic (temp file + rename).
Status WriteActivationStats(const std::string& path, const RoutingProfile& profile,
                            const ArchAdapter& adapter);

}  // namespace moeq
