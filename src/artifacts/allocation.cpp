#include "moeq/artifacts/allocation.h"

#include "artifacts/fields.h"
#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"

namespace moeq::artifacts {
namespace {

constexpr const char* kEnvelope[] = {"schema", "version", "producer", "inputs", "options"};

template <class T, class Get>
Status Optional(const nlohmann::json& e, const char* key, const FieldCtx& c, std::optional<T>* out,
                Get get) {
  const auto* v = FindField(e, key);
  if (v == nullptr || v->is_null()) return Status::Ok();
  auto r = get(e, key, c);
  if (!r.ok()) return r.status();
  *out = static_cast<T>(*r);
  return Status::Ok();
}

}  // namespace

Result<AllocationArtifact> ParseAllocation(const nlohmann::json& j, std::string_view path) try {
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, kAllocationSchema, kAllocationVersion, path));
  AllocationArtifact a;
  for (const auto& [k, v] : j.items()) {
    bool env = false;
    for (const char* e : kEnvelope) env = env || k == e;
    if (env) {
      a.header[k] = v;
    } else if (k != "tensors") {
      a.sections[k] = v;
    }
  }
  auto ts = j.find("tensors");
  if (ts == j.end() || !ts->is_array())
    return Status::Corruption(std::string(path) + ": missing array 'tensors'");
  for (size_t i = 0; i < ts->size(); ++i) {
    const nlohmann::json& e = (*ts)[i];
    const FieldCtx c{std::string(path) + ": tensors[" + std::to_string(i) + "]"};
    if (!e.is_object()) return Status::Corruption(c.where + " must be an object");
    AllocationTensor t;
    MOEQ_ASSIGN_OR_RETURN(t.name, GetString(e, "name", c));
    const FieldCtx tc{std::string(path) + ": tensor '" + t.name + "'"};
    MOEQ_ASSIGN_OR_RETURN(t.format, GetString(e, "format", tc));
    MOEQ_RETURN_IF_ERROR(Optional(e, "encoder", tc, &t.encoder, GetString));
    MOEQ_RETURN_IF_ERROR(Optional(e, "bits", tc, &t.bits, GetInt));
    MOEQ_RETURN_IF_ERROR(Optional(e, "group_size", tc, &t.group_size, GetInt));
    std::optional<int64_t> bytes;
    MOEQ_RETURN_IF_ERROR(Optional(e, "bytes", tc, &bytes, GetInt));
    if (bytes) {
      if (*bytes < 0) return tc.Error("bytes", "negative");
      t.bytes = static_cast<uint64_t>(*bytes);
    }
    MOEQ_RETURN_IF_ERROR(Optional(e, "nrmse", tc, &t.nrmse, GetNumber));
    MOEQ_RETURN_IF_ERROR(Optional(e, "sqnr_db", tc, &t.sqnr_db, GetNumber));
    MOEQ_RETURN_IF_ERROR(Optional(e, "prior", tc, &t.prior, GetNumber));
    MOEQ_RETURN_IF_ERROR(Optional(e, "alpha", tc, &t.alpha, GetNumber));
    MOEQ_RETURN_IF_ERROR(Optional(e, "exposure", tc, &t.exposure, GetNumber));
    MOEQ_RETURN_IF_ERROR(Optional(e, "reason", tc, &t.reason, GetString));
    MOEQ_RETURN_IF_ERROR(Optional(e, "tier", tc, &t.tier, GetString));
    MOEQ_RETURN_IF_ERROR(Optional(e, "note", tc, &t.note, GetString));
    MOEQ_RETURN_IF_ERROR(Optional(e, "role", tc, &t.role, GetString));
    MOEQ_RETURN_IF_ERROR(Optional(e, "layer", tc, &t.layer, GetInt));
    MOEQ_RETURN_IF_ERROR(Optional(e, "expert", tc, &t.expert, GetInt));
    MOEQ_RETURN_IF_ERROR(Optional(e, "params", tc, &t.params, GetInt));
    MOEQ_RETURN_IF_ERROR(Optional(e, "prune", tc, &t.prune, GetBool));
    a.tensors.push_back(std::move(t));
  }
  return a;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Result<AllocationArtifact> ReadAllocation(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  return ParseAllocation(j, path);
}

nlohmann::json AllocationToJson(const AllocationArtifact& a) {
  nlohmann::json j = a.header;
  for (const auto& [k, v] : a.sections.items()) j[k] = v;
  nlohmann::json ts = nlohmann::json::array();
  for (const AllocationTensor& t : a.tensors) {
    nlohmann::json o = {{"name", t.name}, {"format", t.format}};
    auto put = [&o](const char* k, const auto& v) {
      if (v) o[k] = *v;
    };
    put("encoder", t.encoder);
    put("bits", t.bits);
    put("group_size", t.group_size);
    put("bytes", t.bytes);
    put("nrmse", t.nrmse);
    put("sqnr_db", t.sqnr_db);
    put("prior", t.prior);
    put("alpha", t.alpha);
    put("exposure", t.exposure);
    put("reason", t.reason);
    put("tier", t.tier);
    put("note", t.note);
    put("role", t.role);
    put("layer", t.layer);
    put("expert", t.expert);
    put("params", t.params);
    put("prune", t.prune);
    ts.push_back(std::move(o));
  }
  j["tensors"] = std::move(ts);
  return j;
}

}  // namespace moeq::artifacts
