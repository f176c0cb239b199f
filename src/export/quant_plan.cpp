// QuantPlan construction: uniform plans (--uniform BITS --group G) and allocation.json.
#include "moeq/export/quant_plan.h"

#include <string>

#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"

namespace moeq {
namespace {

/// Why `format` cannot store tensor `t`, or "" when it can.
std::string Unfit(const CheckpointTensor& t, const quant::FormatTraits& format) {
  if (!format.is_affine()) {
    if (!IsFloatDType(t.info.dtype)) return "dtype " + std::string(DTypeName(t.info.dtype)) + " is not a float";
    return "";
  }
  if (t.info.shape.size() < 2) return "affine formats need at least 2 dimensions, shape is " + t.info.ShapeString();
  if (!IsFloatDType(t.info.dtype)) return "dtype " + std::string(DTypeName(t.info.dtype)) + " is not a float";
  if (t.info.shape.back() % format.group_size != 0) {
    return "last dimension " + std::to_string(t.info.shape.back()) + " is not a multiple of group size " +
           std::to_string(format.group_size);
  }
  return "";
}

}  // namespace

Result<QuantPlan> MakeUniformPlan(const Checkpoint& ckpt, const quant::FormatTraits& format,
                                  std::map<std::string, std::string>* skipped) {
  QuantPlan plan;
  plan.source = "uniform " + std::string(format.name);
  for (const CheckpointTensor& t : ckpt.tensors()) {
    if (!IsQuantizableRole(t.id.role)) continue;
    const std::string why = Unfit(t, format);
    if (!why.empty()) {
      if (skipped) (*skipped)[t.info.name] = why;
      continue;
    }
    plan.formats.emplace(t.info.name, &format);
  }
  return plan;
}

Result<QuantPlan> LoadAllocationPlan(const std::string& path, const Checkpoint& ckpt) {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.allocation", 1, path));
  QuantPlan plan;
  plan.source = "allocation " + path;
  MOEQ_ASSIGN_OR_RETURN(plan.allocation_sha256, Sha256File(path));
  auto tensors = j.find("tensors");
  if (tensors == j.end() || !tensors->is_array()) {
    return Status::InvalidArgument(path + ": missing array 'tensors'");
  }
  for (size_t i = 0; i < tensors->size(); ++i) {
    const nlohmann::json& e = (*tensors)[i];
    const std::string where = path + ": tensors[" + std::to_string(i) + "]";
    if (!e.is_object()) return Status::InvalidArgument(where + " must be an object");
    auto name_it = e.find("name");
    if (name_it == e.end() || !name_it->is_string()) {
      return Status::InvalidArgument(where + ": missing string field 'name'");
    }
    const std::string name = name_it->get<std::string>();
    const std::string at = path + ": tensor '" + name + "'";
    const CheckpointTensor* t = ckpt.Find(name);
    if (t == nullptr) return Status::InvalidArgument(at + ": no such tensor in " + ckpt.dir());
    auto fmt_it = e.find("format");
    if (fmt_it == e.end() || !fmt_it->is_string()) {
      return Status::InvalidArgument(at + ": missing string field 'format'");
    }
    const quant::FormatTraits* format = quant::FindFormat(fmt_it->get<std::string>());
    if (format == nullptr) {
      return Status::InvalidArgument(at + ": field 'format': unknown format '" + fmt_it->get<std::string>() + "'");
    }
    if (format->is_affine() && !IsQuantizableRole(t->id.role)) {
      return Status::InvalidArgument(at + ": field 'format': " + std::string(format->name) + " for a tensor of role '" +
                                     std::string(RoleName(t->id.role)) + "', which is never quantized");
    }
    if (const std::string why = Unfit(*t, *format); !why.empty()) {
      return Status::InvalidArgument(at + ": field 'format': " + std::string(format->name) + " does not fit: " + why);
    }
    if (!plan.formats.emplace(name, format).second) {
      return Status::InvalidArgument(at + ": listed twice");
    }
    if (auto p = e.find("prune"); p != e.end() && !p->is_null()) {
      if (!p->is_boolean()) return Status::InvalidArgument(at + ": field 'prune' must be a boolean");
      if (p->get<bool>()) {
        if (!IsExpertRole(t->id.role) || t->fused_experts) {
          return Status::InvalidArgument(at + ": field 'prune': only per-expert routed-expert tensors can be pruned");
        }
        plan.pruned.insert(name);
      }
    }
  }
  return plan;
}

}  // namespace moeq
