// moeq-allocate: MINT's rate-distortion bit allocation as a multiple-choice knapsack (MCKP).
//
// Every quantizable tensor (an *item*) takes exactly one of its measured grid configs (an
// *option*: bytes, NRMSE, SQNR). The allocation minimises Σ π·α·NRMSE subject to Σ bytes ≤ budget,
// where π is the tensor's soft protection prior and α its importance (1, or from routing hotness).
// Configs whose SQNR is below the veto floor (9 dB) are forbidden. Policies: "mckp" (MINT),
// "mckp-hotness" (α from routing counts) and "tiered" (DynaMINT: routed experts take their tier's
// format, the other tensors are allocated by MCKP with the remaining budget).
//
// The solver API (moeq::alloc) works on plain arrays so it can be tested and benchmarked alone.
#pragma once

#include <string>

#include "moeq/allocate/mckp.h"
#include "moeq/base/artifact.h"
#include "moeq/base/status.h"

namespace moeq {

/// moeq-allocate's options (one field per flag).
struct AllocateCommandOptions {
  /// sensitivity.jsonl from moeq-analyze (schema moeq.sensitivity v1).
  std::string sensitivity;
  /// routing_profile.json from moeq-profile (needed by mckp-hotness and tiered).
  std::string profile;
  /// Budget in bytes of the tensors the allocation decides ("21GB", "19.5GiB", "734MB").
  std::string budget;
  /// Or average bits per weight over the parameters of those tensors (> 0).
  double bpw = 0;
  /// "mckp", "mckp-hotness" or "tiered".
  std::string policy = "mckp";
  /// "nrmse" (MINT: Σ π·α·NRMSE) or "mse" (Σ π²·α·exposure·NRMSE², see docs/artifacts.md).
  std::string objective = "nrmse";
  /// Priors, hotness constants and rules (schema moeq.priors); "" = built-in defaults, which are
  /// those of configs/priors.json.
  std::string priors;
  /// Extra pin/bound rules (schema moeq.allocate_rules), applied after those of the priors file.
  std::string rules;
  /// Tier thresholds and formats (schema moeq.tiers); "" = built-in defaults (configs/tiers.json).
  std::string tiers;
  /// Configs with SQNR below this many dB are vetoed.
  double min_sqnr = 9.0;
  /// Use inputs whose model fingerprints differ (a warning instead of the error, exit 2).
  bool allow_model_mismatch = false;
  /// Tiered policy: zero the prunable experts (otherwise they are treated as deprioritized).
  bool allow_prune = false;
  /// "auto", "exact" or "lagrangian".
  std::string solver = "auto";
  /// Written file the budget is for: "" (default) = the bytes the sensitivity file measured for
  /// the allocated tensors only (per-expert MLX layout); "mlx", "mlx-stacked" or "gguf" = the
  /// bytes of the whole file moeq-quantize writes for that target, stacked targets choosing one
  /// format per (layer, projection) of routed experts (docs/gguf.md).
  std::string target;
  /// Model directory for --target ("" = the sensitivity header's inputs.model).
  std::string model;
  /// allocation.json to write.
  std::string output = "allocation.json";
  /// Budget sweep with this many points (0 = none), written as CSV and SVG.
  int curve = 0;
  /// Curve outputs ("" = next to the output: <output stem>.curve.csv / .curve.svg).
  std::string curve_csv;
  std::string curve_svg;
};

/// Reads the inputs, allocates, writes allocation.json (and the curve), prints the summary table
/// on stdout. Budget below the smallest feasible size: runtime error (exit 1) naming that size.
Status RunAllocate(const AllocateCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
