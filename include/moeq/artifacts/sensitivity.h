// sensitivity.jsonl (schema moeq.sensitivity, version 1): written by moeq-analyze (and its
// merge), read by moeq-allocate, moeq-calibrate and moeq-report. docs/artifacts.md describes the
// fields; this header is their one definition in code.
//
// Line 1 is the artefact header; every following line is one SensitivityRow (one tensor or
// expert slice in one grid config). The grid's unquantized config is the registry format
// `bf16` (bits 16, group_size 0); the format names are quant's registry names.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq::artifacts {

inline constexpr std::string_view kSensitivitySchema = "moeq.sensitivity";
inline constexpr int kSensitivityVersion = 1;

/// Every sensitivity feature name, in the order of the CSV columns and the report's histograms
/// (docs/artifacts.md, `features`). `svd_rank` is an integer, the others are doubles; the
/// noise amplifications are absent when they do not apply.
const std::vector<std::string>& SensitivityFeatureNames();

/// One line after the header.
struct SensitivityRow {
  std::string tensor;  ///< Hugging Face tensor name
  std::string role;    ///< RoleName
  int layer = -1;      ///< -1: model level
  int expert = -1;     ///< -1: not one routed expert's
  /// Index of the analysed matrix in the whole model (orders rows across shards); -1 = absent.
  int64_t unit = -1;
  std::vector<int64_t> shape;
  std::optional<std::vector<int64_t>> fused_shape;  ///< a fused tensor's slice: the whole shape
  int64_t params = 0;
  std::string dtype;
  std::string format;  ///< registry name ("q4g64", "bf16", ...)
  int bits = 0;
  int group_size = 0;
  uint64_t bytes = 0;
  double nrmse = 0;
  double sqnr_db = 0;
  std::optional<std::string> encoder;  ///< "rtn", "weighted", "gptq" (data-aware grids)
  std::optional<std::string> error;    ///< "weight" or "activation" (with encoder)
  std::optional<double> weight_nrmse;  ///< with encoder
  /// Feature name -> number (SensitivityFeatureNames(); unknown names are kept as they are).
  nlohmann::json features = nlohmann::json::object();
  /// k-means cluster of an expert (docs/artifacts.md `cluster`); null when absent.
  nlohmann::json cluster;
  int line = 0;  ///< reader only: the 1-based line number
};

/// The file: header object and rows in file order.
struct SensitivityArtifact {
  std::string path;
  std::string sha256;  ///< of the whole file text
  nlohmann::json header;
  std::vector<SensitivityRow> rows;
};

/// Parses one row object. Errors read "PATH:LINE: field 'F': what".
Result<SensitivityRow> ParseSensitivityRow(const nlohmann::json& j, std::string_view path,
                                           int line);
/// The row as written (keys sorted by nlohmann::json; doubles shortest round-trip).
nlohmann::json SensitivityRowToJson(const SensitivityRow& row);

/// Checks a header line (schema, version <= kSensitivityVersion).
Status CheckSensitivityHeader(const nlohmann::json& header, std::string_view where);

/// Parses sensitivity.jsonl text: header + rows (blank lines skipped). At least the header.
Result<SensitivityArtifact> ParseSensitivityText(std::string_view text, std::string_view path);
Result<SensitivityArtifact> ReadSensitivityFile(const std::string& path);

/// The text of one line (no newline): header or row.
std::string SensitivityLine(const nlohmann::json& j);

}  // namespace moeq::artifacts
