// allocation.json (schema moeq.allocation, version 1): written by moeq-allocate, read by
// moeq-quantize (the quant plan) and moeq-report. docs/artifacts.md describes the fields.
//
// Format names are quant's registry names; the unquantized config is `bf16` (or `f16` for f16
// sources), as in sensitivity.jsonl. Sections the readers do not interpret (budget, result,
// totals, settings and any other top-level key, e.g. one added by a newer writer of the same
// version) are kept as JSON and written back unchanged.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeq/base/status.h"

namespace moeq::artifacts {

inline constexpr std::string_view kAllocationSchema = "moeq.allocation";
inline constexpr int kAllocationVersion = 1;

/// One entry of `tensors[]`. Only name and format are required; the others are written by
/// moeq-allocate and optional for readers (hand-written plans).
struct AllocationTensor {
  std::string name;
  std::string format;
  std::optional<std::string> encoder;  ///< rtn, weighted, gptq
  std::optional<int64_t> bits, group_size;
  std::optional<uint64_t> bytes;
  std::optional<double> nrmse, sqnr_db, prior, alpha, exposure;
  std::optional<std::string> reason, tier, note, role;
  std::optional<int64_t> layer, expert, params;
  std::optional<bool> prune;  ///< true: write the expert as zeros
};

struct AllocationArtifact {
  /// The envelope: schema, version, producer, inputs, options.
  nlohmann::json header = nlohmann::json::object();
  std::vector<AllocationTensor> tensors;
  /// budget, result, totals, settings and any other top-level key, as written.
  nlohmann::json sections = nlohmann::json::object();
};

/// Parses an allocation.json object; errors read "PATH: tensors[I]: field 'F': what".
Result<AllocationArtifact> ParseAllocation(const nlohmann::json& j, std::string_view path);
Result<AllocationArtifact> ReadAllocation(const std::string& path);
nlohmann::json AllocationToJson(const AllocationArtifact& a);

}  // namespace moeq::artifacts
