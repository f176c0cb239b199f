// Expert routing profile: how often the router picks each expert on calibration text, with what
// weight and rank, which experts are picked together, how the set of frequently used ("hot")
// experts moves over the token stream, a DynaMINT tier per expert, and the second moments of
// the inputs every linear layer sees (an importance-matrix analogue used by the
// activation-weighted sensitivity features).
//
// Routing statistics are folded token by token in text order (windows are run in parallel, their
// routing is recorded and folded in window order), so they are identical for any thread count
// and identical whether the routing comes from this engine or from a routing trace (JSONL,
// docs/artifacts.md) recorded by another runtime.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/artifacts/routing_profile.h"
#include "moeq/base/atomic_file.h"
#include "moeq/base/status.h"
#include "moeq/engine/engine.h"
#include "moeq/model/arch.h"
#include "moeq/model/model_config.h"
#include "moeq/profile/expert_tiers.h"

namespace moeq {

/// Hotness over time (DynaExq, docs/mint-spec.md §7.2): a sliding window of the last `window`
/// tokens, updated every `update_every` tokens once the window is full. At an update each
/// expert's windowed frequency f = (tokens of the window that selected it) / window is compared
/// with thresholds expressed in units of the uniform share top_k / num_experts: a cold expert
/// becomes hot when f > promote_above · share, a hot one becomes cold when f < demote_below ·
/// share (hysteresis). The first update sets the initial hot set (not counted as promotions).
struct HotnessOptions {
  int64_t window = 1000;
  int64_t update_every = 100;
  double promote_above = 1.5;
  double demote_below = 1.0;
};

/// Parses a moeq.hotness object (configs/hotness.json); unknown keys and bad values are errors
/// naming `path` and the field.
Result<HotnessOptions> HotnessOptionsFromJson(const nlohmann::json& j, std::string_view path);
Result<HotnessOptions> LoadHotnessOptions(const std::string& path);
nlohmann::json HotnessOptionsToJson(const HotnessOptions& h);

/// Per-expert hotness results of one layer.
struct ExpertHotness {
  int64_t hot_updates = 0;  ///< updates at which the expert was hot (after the update)
  int64_t promotions = 0;   ///< cold → hot transitions after the first update
  int64_t demotions = 0;    ///< hot → cold transitions
  bool hot = false;         ///< state after the last update
  double freq_sum = 0;      ///< Σ windowed frequency over updates
  double freq_min = 0, freq_max = 0;
};

/// The hotness state machine of one layer, fed one token at a time in text order.
class HotnessTracker {
 public:
  HotnessTracker() = default;
  HotnessTracker(int64_t num_experts, int64_t top_k, const HotnessOptions& options);
  /// The experts one token selected (ids must be in [0, num_experts)).
  void AddToken(std::span<const int32_t> experts);
  int64_t updates() const { return updates_; }
  int64_t tokens() const { return tokens_; }
  const std::vector<ExpertHotness>& experts() const { return experts_; }
  /// Σ over updates of the hot-set size (mean = / updates()).
  int64_t hot_set_sum() const { return hot_set_sum_; }

 private:
  void Update();
  HotnessOptions opt_;
  int64_t num_experts_ = 0, top_k_ = 0, tokens_ = 0, updates_ = 0, hot_set_sum_ = 0;
  double promote_ = 0, demote_ = 0;
  std::vector<int32_t> ring_;          // [window, top_k] expert ids, -1 = empty
  std::vector<int64_t> window_count_;  // [num_experts]
  std::vector<ExpertHotness> experts_;
};

/// Routing statistics of one expert of one layer.
struct ExpertUsage {
  int64_t count = 0;     ///< tokens that chose this expert among their top-k
  double gate_mass = 0;  ///< sum of the mixing weights it received
  double prob_mass = 0;  ///< sum over all tokens of its router probability (not from traces)
  int64_t rank_sum = 0;  ///< Σ of its rank in the top-k when chosen (0 = the top choice)
  std::vector<int64_t> domain_counts;  ///< [domains] count per calibration domain
  ExpertHotness hotness;
  ExpertTier tier = ExpertTier::kStandard;
};

/// Two experts selected together for one token.
struct ExpertPair {
  int a = 0, b = 0;   ///< a < b
  int64_t count = 0;  ///< tokens that selected both
  double lift = 0;  ///< count · tokens / (count_a · count_b): observed / expected if independent
};

/// One decoder layer's statistics. Sums of squares are divided by the counts on output.
struct LayerProfile {
  int layer = 0;
  bool moe = false;
  int64_t tokens = 0;
  std::vector<ExpertUsage> experts;   ///< [num_experts] (MoE layers)
  std::vector<int64_t> pair_counts;   ///< [num_experts²], (a, b) at a·E + b with a < b
  std::vector<ExpertPair> top_pairs;  ///< filled by FinishRoutingProfile
  int64_t hotness_updates = 0;
  int64_t hot_set_sum = 0;
  std::vector<double> attn_in_sq;    ///< [hidden] Σ x² of the attention input, all tokens
  std::vector<double> mlp_in_sq;     ///< [hidden] Σ x² of the MoE / MLP input, all tokens
  std::vector<double> expert_in_sq;  ///< [experts, hidden] Σ x² over tokens routed to each expert
  std::vector<double> expert_act_sq;  ///< [experts, ff] Σ a² of each expert's down-projection input
  /// Gram matrices Σ x xᵀ (ProfileOptions::gram only; empty otherwise), row-major, in double.
  std::vector<double> attn_in_gram;  ///< [hidden, hidden]
  std::vector<double> mlp_in_gram;   ///< [hidden, hidden]
  std::vector<double>
      expert_in_gram;  ///< [experts, hidden, hidden] over the tokens routed to each expert
  std::vector<double> expert_act_gram;  ///< [experts, ff, ff]
};

/// One calibration domain (texts tagged with the same name are one domain).
struct DomainInfo {
  std::string name;
  std::vector<std::string> sources;  ///< files
  std::vector<std::string> sha256;   ///< their hashes
  int64_t tokens = 0;                ///< tokens profiled
  int64_t windows = 0;
};

struct RoutingProfile {
  std::string model_type;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  int64_t moe_ff = 0;
  int64_t tokens = 0;  ///< tokens run (every token of every window)
  int64_t windows = 0;
  int64_t context = 0;
  /// "engine" (this engine ran the model) or "trace" (routing read from traces).
  std::string source = "engine";
  bool has_prob_mass = true;
  std::vector<DomainInfo> domains;
  HotnessOptions hotness;
  TierThresholds tiers;
  int64_t top_pairs = 16;
  std::vector<LayerProfile> layers;
};

struct ProfileOptions {
  /// Tokens per window; each window runs from position 0.
  int64_t context = 512;
  /// Profile at most this many windows per text (0 = all full windows of the text).
  int64_t max_windows = 0;
  /// Collect activation second moments (costs a little memory per window in flight).
  bool activations = true;
  /// Also collect the full Gram matrix Σ x xᵀ of every linear input (needs `activations`).
  /// Memory per window in flight: 8 · (2·hidden² + experts·(hidden² + ff²)) bytes per layer.
  bool gram = false;
  int threads = 0;
  bool progress = true;
  HotnessOptions hotness;
  TierThresholds tiers;
  /// Co-activation pairs kept per layer.
  int64_t top_pairs = 16;
  /// When set, also write the engine's routing as a routing trace (JSONL) here, with this
  /// header object as its first line.
  std::string trace_output;
  nlohmann::json trace_header;
  /// Replace an existing trace_output (--force).
  bool overwrite_trace = false;
};

/// A calibration text: its domain name and tokens (plus where it came from, for the output).
struct CalibrationText {
  std::string domain = "default";
  std::span<const int32_t> tokens;
  std::string source;
  std::string sha256;
};

/// Runs the model over each text in windows (windows never cross texts) and accumulates routing
/// and activation statistics, per domain and combined; routing is folded in text order (texts in
/// the given order) for hotness. Tiers and top pairs are filled. Deterministic: identical for
/// any thread count.
Result<RoutingProfile> ProfileRouting(const Engine& engine, std::span<const CalibrationText> texts,
                                      const ProfileOptions& options);
/// One text, domain "default".
Result<RoutingProfile> ProfileRouting(const Engine& engine, std::span<const int32_t> tokens,
                                      const ProfileOptions& options);

/// A routing trace file and the domain its lines belong to (a line's own "domain" wins).
struct TraceInput {
  std::string path;
  std::string domain = "default";
};

/// Reads routing traces (JSONL, docs/artifacts.md "Routing traces") recorded by any runtime
/// and computes the same routing statistics as ProfileRouting (no activation statistics, no
/// prob_mass). Files are folded in the given order, the lines of each layer by token index.
/// Errors name file:line and the field.
Result<RoutingProfile> ProfileRoutingTraces(const ModelConfig& config,
                                            std::span<const TraceInput> traces,
                                            const ProfileOptions& options);

/// The routing part as the routing_profile.json schema (moeq/artifacts/routing_profile.h):
/// layers[].experts[] with count, frac, mean_gate, gate_mass, prob_mass, mean_rank,
/// domain_counts, hotness, tier; per-layer summaries, coactivation and hotness; top-level
/// domains, hotness and tiers. `header` is the envelope (MakeArtifactHeader). Write it with
/// artifacts::RoutingProfileToJson.
artifacts::RoutingProfileArtifact RoutingProfileToArtifact(const RoutingProfile& profile,
                                                           nlohmann::json header);

/// The routing part back (counts, masses, ranks, domain counts, tiers; activation statistics
/// are not in the file). Errors name `path` and the field.
Result<RoutingProfile> RoutingProfileFromArtifact(const artifacts::RoutingProfileArtifact& a,
                                                  std::string_view path);
/// artifacts::ReadRoutingProfile + RoutingProfileFromArtifact.
Result<RoutingProfile> ReadRoutingProfileFile(const std::string& path);

/// How few-token experts are stabilised in the written statistics (docs/artifacts.md): an
/// expert input seen by n_e tokens gets S_e ← (n_e·S_e + k·S_pool) / (n_e + k), S a mean
/// second moment (diagonal or Gram), S_pool the layer's pooled statistic (all tokens of the
/// MoE input for gate/up; all experts' down-projection inputs for down), k = shrinkage_tokens.
struct ActivationStatsOptions {
  double shrinkage_tokens = 32.0;
};

/// Writes the activation statistics as safetensors: for every linear weight W of the model,
/// "<W name>.in_sq_mean" (F32 [in_features], unshrunk), "<W name>.importance" (F32
/// [in_features], shrunk as above) and "<W name>.count" (I64 [1]); expert inputs are averaged
/// only over the tokens routed to that expert. When the profile holds Gram matrices, one
/// "<input>.gram" (F32 [in, in], mean x xᵀ, shrunk) per distinct input, and metadata
/// "moeq_gram_of" (JSON object: weight name → gram tensor name). Atomic (temp file + rename).
Status WriteActivationStats(const std::string& path, const RoutingProfile& profile,
                            const ArchAdapter& adapter, const ActivationStatsOptions& options = {},
                            AtomicWriteOptions write_options = {.overwrite = true});

}  // namespace moeq
