// calibrated_priors.json and other rules files (schema moeq.allocate_rules, version 1): written
// by moeq-calibrate (measured priors) or by hand, read by moeq-allocate --rules.
// docs/artifacts.md ("Measured priors") describes the fields.
//
// `rules[]` are objects of moeq-allocate's rule language (`match`, `format`, `min_bits`,
// `max_bits`, `prior`), shared with the `rules` of a moeq.priors file; they are kept as JSON
// here and interpreted (and validated) by one function, alloc::AppendRules. `probe` and
// `measurements` are moeq-calibrate's record of what it measured (informational for readers).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq::artifacts {

inline constexpr std::string_view kAllocateRulesSchema = "moeq.allocate_rules";
inline constexpr int kAllocateRulesVersion = 1;

/// `probe`: how moeq-calibrate measured.
struct CalibrationProbe {
  std::string format;  ///< the probe's registry format name
  int64_t windows = 0;
  int64_t context = 0;
  int64_t top_k = 0;
  bool per_layer = false;
  std::string method;                            ///< "kl" or "local"
  std::optional<double> kl_per_relative_change;  ///< method "local"
};

/// One entry of `measurements[]`: one probed group (a role, in one layer or all). A number that
/// is not finite is written as null and read back as NaN.
struct CalibrationMeasurement {
  std::string role;
  int64_t layer = -1;  ///< -1: all layers or model level
  int64_t tensors = 0;
  double kl_mean = 0;
  double predicted_noise = 0;
  double sensitivity = 0;
  double prior = 0;
};

struct AllocateRulesArtifact {
  /// The envelope: schema, version, producer, inputs, options (only schema and version are
  /// required: rules files may be hand-written).
  nlohmann::json header = nlohmann::json::object();
  std::optional<std::string> description;
  std::optional<CalibrationProbe> probe;
  /// The rule objects, in file order (an array).
  nlohmann::json rules = nlohmann::json::array();
  std::optional<std::vector<CalibrationMeasurement>> measurements;
};

/// Parses a moeq.allocate_rules object; unknown top-level keys are errors naming `path` and
/// the key. The rule objects are checked by alloc::AppendRules.
Result<AllocateRulesArtifact> ParseAllocateRules(const nlohmann::json& j, std::string_view path);
Result<AllocateRulesArtifact> ReadAllocateRules(const std::string& path);
nlohmann::json AllocateRulesToJson(const AllocateRulesArtifact& a);

}  // namespace moeq::artifacts
