// sensitivity.jsonl for moeq-allocate: the rows of moeq/artifacts/sensitivity.h grouped by tensor
// (only the fields marked * in docs/artifacts.md are used).
#include <unordered_map>

#include "moeq/allocate/allocation.h"
#include "moeq/artifacts/sensitivity.h"
#include "moeq/base/file_util.h"

namespace moeq::alloc {
namespace {

Status LineError(std::string_view path, int line, std::string_view field, std::string_view what) {
  return Status::Corruption(std::string(path) + ":" + std::to_string(line) + ": field '" +
                            std::string(field) + "': " + std::string(what));
}

}  // namespace

Result<SensitivityFile> ParseSensitivity(std::string_view text, std::string_view path) {
  MOEQ_ASSIGN_OR_RETURN(artifacts::SensitivityArtifact a,
                        artifacts::ParseSensitivityText(text, path));
  SensitivityFile f;
  f.path = std::move(a.path);
  f.sha256 = std::move(a.sha256);
  f.header = std::move(a.header);
  std::unordered_map<std::string, int> first_line;
  for (artifacts::SensitivityRow& r : a.rows) {
    SensitivityConfig cfg;
    cfg.line = r.line;
    cfg.format = r.format;
    cfg.encoder = r.encoder.value_or("");
    cfg.bits = r.bits;
    cfg.group_size = r.group_size;
    cfg.bytes = r.bytes;
    cfg.nrmse = r.nrmse;
    cfg.sqnr_db = r.sqnr_db;
    const bool new_tensor = f.tensors.empty() || f.tensors.back().name != r.tensor;
    if (new_tensor) {
      auto [it, inserted] = first_line.emplace(r.tensor, r.line);
      if (!inserted) {
        return LineError(path, r.line, "tensor",
                         "'" + r.tensor + "' already appeared at line " +
                             std::to_string(it->second) +
                             "; the lines of one tensor must be consecutive");
      }
      SensitivityTensor t;
      t.name = r.tensor;
      t.line = r.line;
      t.role_name = r.role;
      auto role = ParseRole(t.role_name);
      if (!role) return LineError(path, r.line, "role", "unknown role '" + t.role_name + "'");
      t.role = *role;
      t.layer = r.layer;
      t.expert = r.expert;
      t.shape = std::move(r.shape);
      t.params = r.params;
      t.dtype = std::move(r.dtype);
      f.tensors.push_back(std::move(t));
    }
    auto& t = f.tensors.back();
    for (const auto& other : t.configs) {
      if (other.format == cfg.format && other.encoder == cfg.encoder) {
        return LineError(
            path, r.line, "format",
            "'" + cfg.format + (cfg.encoder.empty() ? "" : "' with encoder '" + cfg.encoder) +
                "' of tensor '" + t.name + "' already given at line " + std::to_string(other.line));
      }
    }
    t.configs.push_back(std::move(cfg));
  }
  if (f.tensors.empty())
    return Status::Corruption(std::string(path) + ": no tensor lines after the header");
  return f;
}

Result<SensitivityFile> ReadSensitivity(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseSensitivity(text, path);
}

}  // namespace moeq::alloc
