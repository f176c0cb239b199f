#include "moeq/artifacts/allocate_rules.h"

#include "artifacts/fields.h"
#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"

namespace moeq::artifacts {

Result<AllocateRulesArtifact> ParseAllocateRules(const nlohmann::json& j,
                                                 std::string_view path) try {
  if (!j.is_object())
    return Status::InvalidArgument(std::string(path) + ": expected a JSON object");
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, kAllocateRulesSchema, kAllocateRulesVersion, path));
  const FieldCtx c{std::string(path)};
  AllocateRulesArtifact a;
  for (const auto& [key, value] : j.items()) {
    if (key == "schema" || key == "version" || key == "producer" || key == "inputs" ||
        key == "options") {
      a.header[key] = value;
    } else if (key == "description") {
      MOEQ_ASSIGN_OR_RETURN(a.description, GetString(j, "description", c));
    } else if (key == "rules") {
      if (!value.is_array()) return c.Error("rules", "expected a list of rules");
      a.rules = value;
    } else if (key == "probe") {
      if (!value.is_object()) return c.Error("probe", "expected an object");
      const FieldCtx pc{c.where + ": probe"};
      CalibrationProbe p;
      MOEQ_ASSIGN_OR_RETURN(p.format, GetString(value, "format", pc));
      MOEQ_ASSIGN_OR_RETURN(p.windows, GetInt(value, "windows", pc));
      MOEQ_ASSIGN_OR_RETURN(p.context, GetInt(value, "context", pc));
      MOEQ_ASSIGN_OR_RETURN(p.top_k, GetInt(value, "top_k", pc));
      MOEQ_ASSIGN_OR_RETURN(p.per_layer, GetBool(value, "per_layer", pc));
      MOEQ_ASSIGN_OR_RETURN(p.method, GetString(value, "method", pc));
      if (FindField(value, "kl_per_relative_change") != nullptr) {
        MOEQ_ASSIGN_OR_RETURN(p.kl_per_relative_change,
                              GetNumber(value, "kl_per_relative_change", pc));
      }
      a.probe = std::move(p);
    } else if (key == "measurements") {
      if (!value.is_array()) return c.Error("measurements", "expected an array");
      std::vector<CalibrationMeasurement> ms;
      for (size_t i = 0; i < value.size(); ++i) {
        const FieldCtx mc{c.where + ": measurements[" + std::to_string(i) + "]"};
        const nlohmann::json& e = value[i];
        if (!e.is_object()) return Status::Corruption(mc.where + " must be an object");
        CalibrationMeasurement m;
        MOEQ_ASSIGN_OR_RETURN(m.role, GetString(e, "role", mc));
        MOEQ_ASSIGN_OR_RETURN(m.layer, GetInt(e, "layer", mc));
        MOEQ_ASSIGN_OR_RETURN(m.tensors, GetInt(e, "tensors", mc));
        MOEQ_ASSIGN_OR_RETURN(m.kl_mean, GetOptionalNumber(e, "kl_mean", mc));
        MOEQ_ASSIGN_OR_RETURN(m.predicted_noise, GetOptionalNumber(e, "predicted_noise", mc));
        MOEQ_ASSIGN_OR_RETURN(m.sensitivity, GetOptionalNumber(e, "sensitivity", mc));
        MOEQ_ASSIGN_OR_RETURN(m.prior, GetOptionalNumber(e, "prior", mc));
        ms.push_back(std::move(m));
      }
      a.measurements = std::move(ms);
    } else {
      return Status::InvalidArgument(
          std::string(path) + ": field '" + key +
          "': unknown key (expected rules, description, probe, measurements)");
    }
  }
  return a;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Result<AllocateRulesArtifact> ReadAllocateRules(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  return ParseAllocateRules(j, path);
}

nlohmann::json AllocateRulesToJson(const AllocateRulesArtifact& a) {
  nlohmann::json j = a.header;
  if (a.description) j["description"] = *a.description;
  if (a.probe) {
    const CalibrationProbe& p = *a.probe;
    j["probe"] = {{"format", p.format}, {"windows", p.windows},     {"context", p.context},
                  {"top_k", p.top_k},   {"per_layer", p.per_layer}, {"method", p.method}};
    if (p.kl_per_relative_change) j["probe"]["kl_per_relative_change"] = *p.kl_per_relative_change;
  }
  j["rules"] = a.rules;
  if (a.measurements) {
    nlohmann::json ms = nlohmann::json::array();
    for (const CalibrationMeasurement& m : *a.measurements) {
      ms.push_back({{"role", m.role},
                    {"layer", m.layer},
                    {"tensors", m.tensors},
                    {"kl_mean", m.kl_mean},
                    {"predicted_noise", m.predicted_noise},
                    {"sensitivity", m.sensitivity},
                    {"prior", m.prior}});
    }
    j["measurements"] = std::move(ms);
  }
  return j;
}

}  // namespace moeq::artifacts
