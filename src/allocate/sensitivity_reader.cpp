// sensitivity.jsonl reader for moeq-allocate: only the fields marked * in docs/artifacts.md.
#include <cmath>
#include <optional>
#include <unordered_map>

#include "moeq/allocate/allocation.h"
#include "moeq/base/artifact.h"
#include "moeq/base/checked_math.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"

namespace moeq::alloc {
namespace {

struct LineCtx {
  std::string_view path;
  int line;
  Status Error(std::string_view field, std::string_view what) const {
    return Status::Corruption(std::string(path) + ":" + std::to_string(line) + ": field '" +
                              std::string(field) + "': " + std::string(what));
  }
};

const nlohmann::json* Field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

Result<std::string> GetString(const nlohmann::json& j, const char* key, const LineCtx& c) {
  const auto* v = Field(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_string()) return c.Error(key, "expected a string, got " + JsonExcerpt(*v));
  return v->get<std::string>();
}

Result<int64_t> GetInt(const nlohmann::json& j, const char* key, const LineCtx& c) {
  const auto* v = Field(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_number_integer()) return c.Error(key, "expected an integer, got " + JsonExcerpt(*v));
  return v->get<int64_t>();
}

Result<double> GetNumber(const nlohmann::json& j, const char* key, const LineCtx& c) {
  const auto* v = Field(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_number()) return c.Error(key, "expected a number, got " + JsonExcerpt(*v));
  const double x = v->get<double>();
  if (!std::isfinite(x)) return c.Error(key, "not finite");
  return x;
}

}  // namespace

Result<SensitivityFile> ParseSensitivity(std::string_view text, std::string_view path) try {
  SensitivityFile f;
  f.path = std::string(path);
  f.sha256 = Sha256Hex(text);
  size_t pos = 0;
  int line_no = 0;
  bool have_header = false;
  std::unordered_map<std::string, int> first_line;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    const LineCtx c{path, line_no};
    MOEQ_ASSIGN_OR_RETURN(nlohmann::json j,
                          ParseJson(line, std::string(path) + ":" + std::to_string(line_no)));
    if (!j.is_object()) {
      return Status::Corruption(std::string(path) + ":" + std::to_string(line_no) +
                                ": expected a JSON object");
    }
    if (!have_header) {
      MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.sensitivity", 1,
                                               std::string(path) + ":" + std::to_string(line_no)));
      f.header = std::move(j);
      have_header = true;
      continue;
    }
    MOEQ_ASSIGN_OR_RETURN(std::string name, GetString(j, "tensor", c));
    SensitivityConfig cfg;
    cfg.line = line_no;
    MOEQ_ASSIGN_OR_RETURN(cfg.format, GetString(j, "format", c));
    if (const auto* enc = Field(j, "encoder"); enc != nullptr) {
      if (!enc->is_string()) return c.Error("encoder", "expected a string");
      cfg.encoder = enc->get<std::string>();
      if (cfg.encoder != "rtn" && cfg.encoder != "weighted" && cfg.encoder != "gptq") {
        return c.Error("encoder", "unknown encoder '" + cfg.encoder + "' (rtn, weighted or gptq)");
      }
    }
    MOEQ_ASSIGN_OR_RETURN(int64_t bits, GetInt(j, "bits", c));
    MOEQ_ASSIGN_OR_RETURN(int64_t group, GetInt(j, "group_size", c));
    if (bits < 1 || bits > 32) return c.Error("bits", "out of range: " + std::to_string(bits));
    if (group < 0) return c.Error("group_size", "negative: " + std::to_string(group));
    cfg.bits = static_cast<int>(bits);
    cfg.group_size = static_cast<int>(group);
    MOEQ_ASSIGN_OR_RETURN(int64_t bytes, GetInt(j, "bytes", c));
    if (bytes <= 0) return c.Error("bytes", "must be positive, got " + std::to_string(bytes));
    cfg.bytes = static_cast<uint64_t>(bytes);
    MOEQ_ASSIGN_OR_RETURN(cfg.nrmse, GetNumber(j, "nrmse", c));
    if (cfg.nrmse < 0) return c.Error("nrmse", "negative");
    MOEQ_ASSIGN_OR_RETURN(cfg.sqnr_db, GetNumber(j, "sqnr_db", c));

    const bool new_tensor = f.tensors.empty() || f.tensors.back().name != name;
    if (new_tensor) {
      auto [it, inserted] = first_line.emplace(name, line_no);
      if (!inserted) {
        return c.Error("tensor", "'" + name + "' already appeared at line " +
                                     std::to_string(it->second) +
                                     "; the lines of one tensor must be consecutive");
      }
      SensitivityTensor t;
      t.name = name;
      t.line = line_no;
      MOEQ_ASSIGN_OR_RETURN(t.role_name, GetString(j, "role", c));
      auto role = ParseRole(t.role_name);
      if (!role) return c.Error("role", "unknown role '" + t.role_name + "'");
      t.role = *role;
      MOEQ_ASSIGN_OR_RETURN(int64_t layer, GetInt(j, "layer", c));
      MOEQ_ASSIGN_OR_RETURN(int64_t expert, GetInt(j, "expert", c));
      if (layer < -1 || layer > 1'000'000)
        return c.Error("layer", "out of range: " + std::to_string(layer));
      if (expert < -1 || expert > 1'000'000)
        return c.Error("expert", "out of range: " + std::to_string(expert));
      t.layer = static_cast<int>(layer);
      t.expert = static_cast<int>(expert);
      const auto* shape = Field(j, "shape");
      if (shape == nullptr) return c.Error("shape", "missing");
      if (!shape->is_array()) return c.Error("shape", "expected an array of integers");
      for (const auto& d : *shape) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0)
          return c.Error("shape", "expected non-negative integers, got " + JsonExcerpt(*shape));
        t.shape.push_back(d.get<int64_t>());
      }
      MOEQ_ASSIGN_OR_RETURN(t.params, GetInt(j, "params", c));
      if (t.params <= 0) return c.Error("params", "must be positive");
      const std::optional<int64_t> prod = CheckedProduct(t.shape);
      if (!t.shape.empty() && (!prod || *prod != t.params)) {
        return c.Error("params", std::to_string(t.params) + " is not the product of shape " +
                                     JsonExcerpt(*shape));
      }
      MOEQ_ASSIGN_OR_RETURN(t.dtype, GetString(j, "dtype", c));
      f.tensors.push_back(std::move(t));
    }
    auto& t = f.tensors.back();
    for (const auto& other : t.configs) {
      if (other.format == cfg.format && other.encoder == cfg.encoder) {
        return c.Error("format", "'" + cfg.format +
                                     (cfg.encoder.empty() ? "" : "' with encoder '" + cfg.encoder) +
                                     "' of tensor '" + name + "' already given at line " +
                                     std::to_string(other.line));
      }
    }
    t.configs.push_back(std::move(cfg));
  }
  if (!have_header)
    return Status::Corruption(std::string(path) +
                              ": empty file: expected the moeq.sensitivity header line");
  if (f.tensors.empty())
    return Status::Corruption(std::string(path) + ": no tensor lines after the header");
  return f;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Result<SensitivityFile> ReadSensitivity(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseSensitivity(text, path);
}

}  // namespace moeq::alloc
