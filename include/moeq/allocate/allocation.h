// Internal API of moeq-allocate: the sensitivity.jsonl reader, the priors/rules config, the
// allocation policies (building the MCKP instance) and the outputs (allocation.json, summary
// table, budget curve). Used by tools/moeq-allocate/allocate_command.cpp, moeq-calibrate, the tests
// and the bench.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/allocate/mckp.h"
#include "moeq/artifacts/allocate_rules.h"
#include "moeq/base/status.h"
#include "moeq/model/arch.h"
#include "moeq/profile/expert_tiers.h"
#include "moeq/profile/routing_profile.h"

namespace moeq::alloc {

// ---------------------------------------------------------------- sensitivity.jsonl

/// One measured grid config of one tensor (the starred fields of docs/artifacts.md).
struct SensitivityConfig {
  std::string format;  ///< registry name ("q4g64", "bf16")
  /// Encoder that produced the figures ("rtn", "weighted", "gptq"); "" when the file has no
  /// encoder field (rtn).
  std::string encoder;
  int bits = 0;
  int group_size = 0;
  uint64_t bytes = 0;
  double nrmse = 0;
  double sqnr_db = 0;
  int line = 0;  ///< 1-based line in the file
};

struct SensitivityTensor {
  std::string name;
  std::string role_name;
  TensorRole role = TensorRole::kUnknown;
  int layer = -1;
  int expert = -1;
  std::vector<int64_t> shape;
  int64_t params = 0;
  std::string dtype;
  std::vector<SensitivityConfig> configs;  ///< in file (grid) order
  int line = 0;                            ///< first line of the tensor
};

struct SensitivityFile {
  std::string path;
  std::string sha256;
  nlohmann::json header;
  std::vector<SensitivityTensor> tensors;  ///< in file order
};

/// Parses sensitivity.jsonl text (header line + one line per (tensor, config)). Errors name
/// `path`:line and the field. The lines of one tensor must be consecutive.
Result<SensitivityFile> ParseSensitivity(std::string_view text, std::string_view path);
Result<SensitivityFile> ReadSensitivity(const std::string& path);

// ---------------------------------------------------------------- priors and rules

/// A pin/bound rule. All criteria that are set must match (role ∈ roles, layer in
/// [layer_min, layer_max], expert ∈ experts, name == name).
struct AllocRule {
  std::vector<TensorRole> roles;
  bool has_layers = false;
  int layer_min = 0, layer_max = 0;
  std::vector<int> experts;
  std::string name;
  // Actions.
  std::string format;  ///< pin: the tensor takes this format ("" = none)
  int min_bits = 0;    ///< 0 = unbounded
  int max_bits = 0;    ///< 0 = unbounded
  double prior = -1;   ///< ≥ 0: replaces the computed prior
  std::string where;   ///< "file: rules[3]" for messages

  bool Matches(const SensitivityTensor& t) const;
};

struct PriorsConfig {
  double default_prior = 1.0;
  /// Prior per role name (RoleName). Defaults: embedding 10, lm_head 10, router 8.
  std::vector<std::pair<TensorRole, double>> roles = {
      {TensorRole::kEmbedding, 10.0}, {TensorRole::kLmHead, 10.0}, {TensorRole::kRouter, 8.0}};
  /// Applies to roles whose name starts with "vision" (none in the current adapters).
  double vision = 8.0;
  double first_layer = 3.0;
  double last_layer = 2.0;
  /// Hotness importance: α = clamp((count / mean_count_of_layer)^gamma, alpha_min, alpha_max).
  double gamma = 0.5;
  double alpha_min = 0.25;
  double alpha_max = 4.0;
  std::vector<AllocRule> rules;
};

/// Parses a moeq.priors object (unknown keys are errors naming `path` and the key).
Result<PriorsConfig> PriorsFromJson(const nlohmann::json& j, std::string_view path);
/// Appends the rules of a moeq.allocate_rules file (moeq/artifacts/allocate_rules.h; e.g.
/// moeq-calibrate's measured priors); errors name `path`, `rules[i]` and the field.
Status AppendRules(const artifacts::AllocateRulesArtifact& rules, std::string_view path,
                   PriorsConfig* cfg);
/// artifacts::ParseAllocateRules + AppendRules.
Status AppendRulesFromJson(const nlohmann::json& j, std::string_view path, PriorsConfig* cfg);
/// The config as JSON (recorded in allocation.json options).
nlohmann::json PriorsToJson(const PriorsConfig& cfg);

/// π of a tensor: the max of the default, its role prior, the vision prior, first/last layer
/// priors; a matching rule's prior replaces it (the last matching rule with a prior wins).
double PriorOf(const SensitivityTensor& t, const PriorsConfig& cfg, int last_layer);

// ---------------------------------------------------------------- allocation

enum class Policy { kMckp, kMckpHotness, kTiered };
Result<Policy> ParsePolicy(std::string_view name);
std::string_view PolicyName(Policy p);

/// What an option costs in the MCKP objective.
///  - kNrmse (MINT as published): π·α·NRMSE.
///  - kMse (moeq): π²·α·x·NRMSE², the expected share of output noise power: squared relative
///    error (noise powers add, NRMSE values do not) with the prior on the error amplitude (so
///    squared too), times the tensor's exposure x = the share of tokens that pass through it:
///    1 for every dense tensor, top_k / num_experts for a routed expert (an expert that sees
///    1/16 of the tokens adds 1/16 of the noise a dense layer does).
enum class Objective { kNrmse, kMse };
Result<Objective> ParseObjective(std::string_view name);
std::string_view ObjectiveName(Objective o);

/// The file an allocation is made for (moeq-allocate --target): how its options are costed.
/// Without it (the default) an option costs the bytes the sensitivity file measured and the
/// budget covers only the allocated tensors.
struct TargetCosting {
  std::string target;  ///< "mlx", "mlx-stacked", "gguf"
  /// Routed experts (per-expert tensors) of one (layer, role) take one format: one MCKP item per
  /// group whose options are the formats every member can take.
  bool stacked = false;
  /// Bytes of the written file that no allocated tensor decides (header, metadata, tensors not
  /// allocated, carried files).
  uint64_t fixed_bytes = 0;
  /// Weights of every tensor of the written file (the denominator of a file bpw).
  int64_t weights = 0;
  /// Which targets can hold per-expert formats / what is exact (recorded in allocation.json).
  std::string accuracy;
  /// Bytes the file spends on `members` (one tensor, or one stacked group) all in `format`.
  std::function<Result<uint64_t>(const std::vector<const SensitivityTensor*>& members,
                                 const std::string& format)>
      item_bytes;
};

struct AllocationSettings {
  Policy policy = Policy::kMckp;
  Objective objective = Objective::kNrmse;
  double min_sqnr = 9.0;
  bool allow_prune = false;
  SolverKind solver = SolverKind::kAuto;
  PriorsConfig priors;
  TierThresholds tiers;
  /// Routing counts (required for mckp-hotness and tiered).
  std::optional<RoutingProfile> profile;
  /// Cost options at the bytes of this written file (nullopt: sensitivity bytes, legacy).
  std::optional<TargetCosting> target;
};

/// What the allocation decided for one tensor.
struct TensorDecision {
  int config = 0;  ///< index into the tensor's configs
  double prior = 1;
  double alpha = 1;
  double exposure = 1;  ///< share of tokens through the tensor (objective mse; 1 otherwise)
  std::string reason;   ///< chosen, vetoed_forced, pinned, tier
  std::string tier;     ///< routed experts under a routing profile ("" otherwise)
  bool prune = false;
  double nrmse = 0;  ///< of the decision (1 for a pruned tensor)
  double sqnr_db = 0;
  std::string note;  ///< e.g. a tier format bumped by the veto
};

/// The MCKP instance built from a sensitivity file, before choosing a budget.
struct AllocationModel {
  MckpProblem problem;  ///< one item per tensor; budget unset
  /// For each tensor, the config index of each of its options (problem order).
  std::vector<std::vector<int>> option_config;
  /// Per tensor: fixed fields of its decision (prior, alpha, tier, reason when forced).
  std::vector<TensorDecision> base;
  int64_t total_params = 0;
  uint64_t full_precision_bytes = 0;  ///< Σ bytes of the largest (16-bit) config of every tensor
  int vetoed_configs = 0;             ///< configs removed by the SQNR veto
  int forced_tensors = 0;             ///< tensors all of whose configs were vetoed
  /// With a target: the MCKP items (problem order) as the tensors each decides (one tensor, or
  /// a stacked expert group) and, per option, the config of each of them. Empty without one:
  /// item i is tensor i with option_config[i].
  std::vector<std::vector<size_t>> item_tensors;
  std::vector<std::vector<std::vector<int>>> item_option_configs;
  /// Target costing, when given: the file bytes outside the items (budget = fixed + items).
  std::optional<TargetCosting> target;
  /// Smallest and largest file (fixed + items) for a target; MinBytes/MaxBytes otherwise.
  uint64_t MinFileBytes() const { return problem.MinBytes() + (target ? target->fixed_bytes : 0); }
  uint64_t MaxFileBytes() const { return problem.MaxBytes() + (target ? target->fixed_bytes : 0); }
};

Result<AllocationModel> BuildAllocationModel(const SensitivityFile& sens,
                                             const AllocationSettings& s);

struct AllocationResult {
  std::vector<TensorDecision> decisions;  ///< one per tensor, in file order
  MckpSolution solution;
  uint64_t budget = 0;
  bool above_full_precision = false;
};

/// Solves the model at `budget` bytes (with a target: bytes of the whole written file).
Result<AllocationResult> SolveAllocation(const SensitivityFile& sens, const AllocationModel& model,
                                         uint64_t budget, SolverKind solver);

/// allocation.json body (without the artefact header fields, which the caller merges in).
nlohmann::json AllocationToJson(const SensitivityFile& sens, const AllocationResult& r,
                                const AllocationModel& model, Policy policy,
                                std::optional<double> bpw);

/// The readable summary table (formats with counts and bytes; by role).
std::string SummaryTable(const SensitivityFile& sens, const AllocationResult& r);

// ---------------------------------------------------------------- budget curve

struct CurvePoint {
  uint64_t budget = 0;
  uint64_t bytes = 0;
  double objective = 0;
  double lower_bound = 0;
  double gap = 0;
};

/// N budgets spaced evenly from the smallest feasible size to the all-16-bit size.
Result<std::vector<CurvePoint>> BudgetCurve(const AllocationModel& model, int points,
                                            SolverKind solver);
/// Index of the knee: the point farthest from the chord joining the first and last points, both
/// axes normalised to [0, 1]. 0 for fewer than 3 points.
size_t CurveKnee(const std::vector<CurvePoint>& curve);
std::string CurveCsv(const std::vector<CurvePoint>& curve, int64_t params);
/// A self-contained SVG line plot (axes, ticks, labels, the knee marked).
/// `objective_label` names the objective on the y axis ("Σ π·α·NRMSE", "Σ π²·α·x·NRMSE²").
std::string CurveSvg(const std::vector<CurvePoint>& curve, int64_t params, std::string_view title,
                     std::string_view objective_label = "Σ π·α·NRMSE");

}  // namespace moeq::alloc
