// moeq-analyze --csv: one CSV row per sensitivity.jsonl row (tensor × grid config), the
// schema's feature names as columns (docs/artifacts.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace moeq::sensitivity {

/// The header line (with its newline).
std::string SensitivityCsvHeader();
/// The CSV line (with its newline) of one sensitivity row object.
std::string SensitivityCsvRow(const nlohmann::json& row);

}  // namespace moeq::sensitivity
