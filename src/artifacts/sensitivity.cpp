#include "moeq/artifacts/sensitivity.h"

#include <cmath>

#include "artifacts/fields.h"
#include "moeq/base/artifact.h"
#include "moeq/base/checked_math.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"

namespace moeq::artifacts {

const std::vector<std::string>& SensitivityFeatureNames() {
  static const std::vector<std::string> names = {"stable_rank",
                                                 "tail_mass",
                                                 "log_spectral_spread",
                                                 "sigma_max",
                                                 "svd_rank",
                                                 "frobenius",
                                                 "std",
                                                 "kurtosis",
                                                 "group_kurtosis_p90",
                                                 "group_kurtosis_p99_minus_p50",
                                                 "outlier_group_fraction",
                                                 "group_kurtosis_max_minus_median",
                                                 "noise_amplification",
                                                 "noise_amplification_act"};
  return names;
}

Status CheckSensitivityHeader(const nlohmann::json& header, std::string_view where) {
  return CheckArtifactHeader(header, kSensitivitySchema, kSensitivityVersion, where);
}

Result<SensitivityRow> ParseSensitivityRow(const nlohmann::json& j, std::string_view path,
                                           int line) try {
  const FieldCtx c{std::string(path) + ":" + std::to_string(line)};
  if (!j.is_object()) return Status::Corruption(c.where + ": expected a JSON object");
  SensitivityRow r;
  r.line = line;
  MOEQ_ASSIGN_OR_RETURN(r.tensor, GetString(j, "tensor", c));
  MOEQ_ASSIGN_OR_RETURN(r.format, GetString(j, "format", c));
  if (const auto* enc = FindField(j, "encoder"); enc != nullptr) {
    if (!enc->is_string()) return c.Error("encoder", "expected a string");
    r.encoder = enc->get<std::string>();
    if (*r.encoder != "rtn" && *r.encoder != "weighted" && *r.encoder != "gptq") {
      return c.Error("encoder", "unknown encoder '" + *r.encoder + "' (rtn, weighted or gptq)");
    }
  }
  MOEQ_ASSIGN_OR_RETURN(int64_t bits, GetInt(j, "bits", c));
  MOEQ_ASSIGN_OR_RETURN(int64_t group, GetInt(j, "group_size", c));
  if (bits < 1 || bits > 32) return c.Error("bits", "out of range: " + std::to_string(bits));
  if (group < 0) return c.Error("group_size", "negative: " + std::to_string(group));
  r.bits = static_cast<int>(bits);
  r.group_size = static_cast<int>(group);
  MOEQ_ASSIGN_OR_RETURN(int64_t bytes, GetInt(j, "bytes", c));
  if (bytes <= 0) return c.Error("bytes", "must be positive, got " + std::to_string(bytes));
  r.bytes = static_cast<uint64_t>(bytes);
  MOEQ_ASSIGN_OR_RETURN(r.nrmse, GetNumber(j, "nrmse", c));
  if (r.nrmse < 0) return c.Error("nrmse", "negative");
  MOEQ_ASSIGN_OR_RETURN(r.sqnr_db, GetNumber(j, "sqnr_db", c));
  MOEQ_ASSIGN_OR_RETURN(r.role, GetString(j, "role", c));
  MOEQ_ASSIGN_OR_RETURN(int64_t layer, GetInt(j, "layer", c));
  MOEQ_ASSIGN_OR_RETURN(int64_t expert, GetInt(j, "expert", c));
  if (layer < -1 || layer > 1'000'000)
    return c.Error("layer", "out of range: " + std::to_string(layer));
  if (expert < -1 || expert > 1'000'000)
    return c.Error("expert", "out of range: " + std::to_string(expert));
  r.layer = static_cast<int>(layer);
  r.expert = static_cast<int>(expert);
  if (FindField(j, "unit") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(r.unit, GetInt(j, "unit", c));
    if (r.unit < 0) return c.Error("unit", "negative: " + std::to_string(r.unit));
  }
  MOEQ_ASSIGN_OR_RETURN(r.shape, GetShape(j, "shape", c));
  if (FindField(j, "fused_shape") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(r.fused_shape, GetShape(j, "fused_shape", c));
  }
  MOEQ_ASSIGN_OR_RETURN(r.params, GetInt(j, "params", c));
  if (r.params <= 0) return c.Error("params", "must be positive");
  const std::optional<int64_t> prod = CheckedProduct(r.shape);
  if (!r.shape.empty() && (!prod || *prod != r.params)) {
    return c.Error("params", std::to_string(r.params) + " is not the product of shape " +
                                 JsonExcerpt(j["shape"]));
  }
  MOEQ_ASSIGN_OR_RETURN(r.dtype, GetString(j, "dtype", c));
  if (FindField(j, "error") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(r.error, GetString(j, "error", c));
    if (*r.error != "weight" && *r.error != "activation")
      return c.Error("error", "expected 'weight' or 'activation', got '" + *r.error + "'");
  }
  if (FindField(j, "weight_nrmse") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(r.weight_nrmse, GetNumber(j, "weight_nrmse", c));
  }
  if (const auto* f = FindField(j, "features"); f != nullptr) {
    if (!f->is_object()) return c.Error("features", "expected an object");
    for (const auto& [k, v] : f->items()) {
      if (!v.is_number()) return c.Error("features." + k, "expected a number");
    }
    r.features = *f;
  }
  if (const auto* cl = FindField(j, "cluster"); cl != nullptr) {
    if (!cl->is_object()) return c.Error("cluster", "expected an object");
    r.cluster = *cl;
  }
  return r;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ":" + std::to_string(line) + ": " +
                            JsonExceptionText(e));
}

nlohmann::json SensitivityRowToJson(const SensitivityRow& row) {
  nlohmann::json r;
  r["tensor"] = row.tensor;
  r["role"] = row.role;
  r["layer"] = row.layer;
  r["expert"] = row.expert;
  if (row.unit >= 0) r["unit"] = row.unit;
  r["shape"] = row.shape;
  if (row.fused_shape) r["fused_shape"] = *row.fused_shape;
  r["params"] = row.params;
  r["dtype"] = row.dtype;
  r["format"] = row.format;
  r["bits"] = row.bits;
  r["group_size"] = row.group_size;
  r["bytes"] = row.bytes;
  r["nrmse"] = row.nrmse;
  r["sqnr_db"] = row.sqnr_db;
  if (row.encoder) r["encoder"] = *row.encoder;
  if (row.error) r["error"] = *row.error;
  if (row.weight_nrmse) r["weight_nrmse"] = *row.weight_nrmse;
  r["features"] = row.features;
  if (!row.cluster.is_null()) r["cluster"] = row.cluster;
  return r;
}

std::string SensitivityLine(const nlohmann::json& j) { return j.dump(); }

Result<SensitivityArtifact> ParseSensitivityText(std::string_view text, std::string_view path) {
  SensitivityArtifact f;
  f.path = std::string(path);
  f.sha256 = Sha256Hex(text);
  size_t pos = 0;
  int line_no = 0;
  bool have_header = false;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string where = std::string(path) + ":" + std::to_string(line_no);
    MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(line, where));
    if (!j.is_object()) return Status::Corruption(where + ": expected a JSON object");
    if (!have_header) {
      MOEQ_RETURN_IF_ERROR(CheckSensitivityHeader(j, where));
      f.header = std::move(j);
      have_header = true;
      continue;
    }
    MOEQ_ASSIGN_OR_RETURN(SensitivityRow r, ParseSensitivityRow(j, path, line_no));
    f.rows.push_back(std::move(r));
  }
  if (!have_header)
    return Status::Corruption(std::string(path) +
                              ": empty file: expected the moeq.sensitivity header line");
  return f;
}

Result<SensitivityArtifact> ReadSensitivityFile(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseSensitivityText(text, path);
}

}  // namespace moeq::artifacts
