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
    if (!IsFloatDType(t.info.dtype))
      return "dtype " + std::string(DTypeName(t.info.dtype)) + " is not a float";
    return "";
  }
  if (t.info.shape.size() < 2)
    return "affine formats need at least 2 dimensions, shape is " + t.info.ShapeString();
  if (!IsFloatDType(t.info.dtype))
    return "dtype " + std::string(DTypeName(t.info.dtype)) + " is not a float";
  if (t.info.shape.back() % format.group_size != 0) {
    return "last dimension " + std::to_string(t.info.shape.back()) +
           " is not a multiple of group size " + std::to_string(format.group_size);
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

Result<QuantPlan> LoadAllocationPlan(const std::string& path, const Checkpoint& ckpt) try {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.allocation", 1, path));
  QuantPlan plan;
  plan.source = "allocation " + path;
  MOEQ_ASSIGN_OR_RETURN(plan.allocation_sha256, Sha256File(path));
  if (auto b = j.find("budget"); b != j.end() && b->is_object()) {
    if (auto t = b->find("target"); t != b->end() && !t->is_null()) {
      if (!t->is_string())
        return Status::Corruption(path + ": field 'budget.target' must be a string");
      plan.target = t->get<std::string>();
    }
  }
  auto tensors = j.find("tensors");
  if (tensors == j.end() || !tensors->is_array()) {
    return Status::Corruption(path + ": missing array 'tensors'");
  }
  // An allocation that assigns nothing would quantize nothing and "succeed".
  if (tensors->empty())
    return Status::Corruption(path + ": 'tensors' is empty: the allocation assigns no tensor");
  for (size_t i = 0; i < tensors->size(); ++i) {
    const nlohmann::json& e = (*tensors)[i];
    const std::string where = path + ": tensors[" + std::to_string(i) + "]";
    if (!e.is_object()) return Status::Corruption(where + " must be an object");
    auto name_it = e.find("name");
    if (name_it == e.end() || !name_it->is_string()) {
      return Status::Corruption(where + ": missing string field 'name'");
    }
    const std::string name = name_it->get<std::string>();
    const std::string at = path + ": tensor '" + name + "'";
    const CheckpointTensor* t = ckpt.Find(name);
    if (t == nullptr) return Status::Corruption(at + ": no such tensor in " + ckpt.dir());
    auto fmt_it = e.find("format");
    if (fmt_it == e.end() || !fmt_it->is_string()) {
      return Status::Corruption(at + ": missing string field 'format'");
    }
    const quant::FormatTraits* format = quant::FindFormat(fmt_it->get<std::string>());
    if (format == nullptr) {
      return Status::Corruption(at + ": field 'format': unknown format '" +
                                fmt_it->get<std::string>() + "'");
    }
    // bits / group_size are informative copies of the format; one that disagrees with it means
    // the file was edited by hand or produced by something else: refuse rather than guess.
    for (const auto& [key, want] :
         {std::pair<const char*, int>{"bits", format->bits},
          std::pair<const char*, int>{"group_size", format->group_size}}) {
      auto f = e.find(key);
      if (f == e.end() || f->is_null()) continue;
      if (!f->is_number_integer() || f->get<int64_t>() != want) {
        return Status::Corruption(at + ": field '" + key + "' is " + JsonExcerpt(*f) +
                                  " but format '" + std::string(format->name) + "' has " + key +
                                  " " + std::to_string(want));
      }
    }
    if (format->is_affine() && !IsQuantizableRole(t->id.role)) {
      return Status::Corruption(at + ": field 'format': " + std::string(format->name) +
                                " for a tensor of role '" + std::string(RoleName(t->id.role)) +
                                "', which is never quantized");
    }
    if (const std::string why = Unfit(*t, *format); !why.empty()) {
      return Status::Corruption(at + ": field 'format': " + std::string(format->name) +
                                " does not fit: " + why);
    }
    if (!plan.formats.emplace(name, format).second) {
      return Status::Corruption(at + ": listed twice");
    }
    if (auto enc = e.find("encoder"); enc != e.end() && !enc->is_null()) {
      if (!enc->is_string())
        return Status::InvalidArgument(at + ": field 'encoder' must be a string");
      auto k = quant::ParseEncoder(enc->get<std::string>());
      if (!k.ok())
        return Status::InvalidArgument(at + ": field 'encoder': " + k.status().message());
      if (*k != quant::EncoderKind::kRtn && !format->is_affine()) {
        return Status::InvalidArgument(at + ": field 'encoder': " + enc->get<std::string>() +
                                       " for the float format " + std::string(format->name));
      }
      if (*k != quant::EncoderKind::kRtn) plan.encoders[name] = *k;
    }
    if (auto p = e.find("prune"); p != e.end() && !p->is_null()) {
      if (!p->is_boolean()) return Status::Corruption(at + ": field 'prune' must be a boolean");
      if (p->get<bool>()) {
        if (!IsExpertRole(t->id.role) || t->fused_experts) {
          return Status::Corruption(
              at + ": field 'prune': only per-expert routed-expert tensors can be pruned");
        }
        plan.pruned.insert(name);
      }
    }
  }
  return plan;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(path + ": " + JsonExceptionText(e));
}

}  // namespace moeq
