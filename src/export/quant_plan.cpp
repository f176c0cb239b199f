// QuantPlan construction: uniform plans (--uniform BITS --group G) and allocation.json.
#include "moeq/export/quant_plan.h"

#include <string>
#include <tuple>

#include "moeq/artifacts/allocation.h"
#include "moeq/artifacts/model_match.h"
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

Result<QuantPlan> LoadAllocationPlan(const std::string& path, const Checkpoint& ckpt) {
  MOEQ_ASSIGN_OR_RETURN(artifacts::AllocationArtifact a, artifacts::ReadAllocation(path));
  QuantPlan plan;
  plan.source = "allocation " + path;
  MOEQ_ASSIGN_OR_RETURN(plan.allocation_sha256, Sha256File(path));
  plan.allocation_model_fingerprint = artifacts::ModelFingerprintOf(a.header);
  if (const auto p = a.header.find("producer"); p != a.header.end() && p->is_object()) {
    if (const auto c = p->find("command"); c != p->end() && c->is_string())
      plan.allocation_command = c->get<std::string>();
  }
  if (auto b = a.sections.find("budget"); b != a.sections.end() && b->is_object()) {
    if (auto t = b->find("target"); t != b->end() && !t->is_null()) {
      if (!t->is_string())
        return Status::Corruption(path + ": field 'budget.target' must be a string");
      plan.target = t->get<std::string>();
    }
  }
  // An allocation that assigns nothing would quantize nothing and "succeed".
  if (a.tensors.empty())
    return Status::Corruption(path + ": 'tensors' is empty: the allocation assigns no tensor");
  for (const artifacts::AllocationTensor& e : a.tensors) {
    const std::string& name = e.name;
    const std::string at = path + ": tensor '" + name + "'";
    const CheckpointTensor* t = ckpt.Find(name);
    if (t == nullptr) return Status::Corruption(at + ": no such tensor in " + ckpt.dir());
    const quant::FormatTraits* format = quant::FindFormat(e.format);
    if (format == nullptr) {
      return Status::Corruption(at + ": field 'format': unknown format '" + e.format + "'");
    }
    // bits / group_size are informative copies of the format; one that disagrees with it means
    // the file was edited by hand or produced by something else: refuse rather than guess.
    for (const auto& [key, value, want] :
         {std::tuple<const char*, std::optional<int64_t>, int>{"bits", e.bits, format->bits},
          std::tuple<const char*, std::optional<int64_t>, int>{"group_size", e.group_size,
                                                               format->group_size}}) {
      if (value && *value != want) {
        return Status::Corruption(at + ": field '" + key + "' is " + std::to_string(*value) +
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
    if (e.encoder) {
      auto k = quant::ParseEncoder(*e.encoder);
      if (!k.ok())
        return Status::InvalidArgument(at + ": field 'encoder': " + k.status().message());
      if (*k != quant::EncoderKind::kRtn && !format->is_affine()) {
        return Status::InvalidArgument(at + ": field 'encoder': " + *e.encoder +
                                       " for the float format " + std::string(format->name));
      }
      if (*k != quant::EncoderKind::kRtn) plan.encoders[name] = *k;
    }
    if (e.prune.value_or(false)) {
      if (!IsExpertRole(t->id.role) || t->fused_experts) {
        return Status::Corruption(
            at + ": field 'prune': only per-expert routed-expert tensors can be pruned");
      }
      plan.pruned.insert(name);
    }
  }
  return plan;
}

}  // namespace moeq
