// MlxStackedModule: mlx-lm's stacked expert module paths (SwitchGLU "switch_mlp"), from the
// family traits' MoE block name.
#include "moeq/model/mlx_names.h"

#include <string>

#include "moeq/model/family.h"

namespace moeq {

Result<std::string> MlxStackedModule(const ArchAdapter& adapter, int layer, TensorRole role) {
  std::string_view proj;
  switch (role) {
    case TensorRole::kExpertGate:
      proj = "gate_proj";
      break;
    case TensorRole::kExpertUp:
      proj = "up_proj";
      break;
    case TensorRole::kExpertDown:
      proj = "down_proj";
      break;
    default:
      return Status::InvalidArgument("role '" + std::string(RoleName(role)) +
                                     "' has no stacked mlx-lm form (only expert gate/up/down)");
  }
  // mlx-lm's sanitize() replaces "<moe block>.experts.<e>.<proj>" by
  // "<moe block>.switch_mlp.<gate|up|down>_proj"; the block is a family trait.
  const FamilyTraits* family = FindFamily(adapter.model_type());
  if (family == nullptr || family->moe_block.empty()) {
    return Status::Unsupported("model_type '" + std::string(adapter.model_type()) +
                               "' has no per-expert tensors that mlx-lm stacks into switch_mlp");
  }
  return "model.layers." + std::to_string(layer) + "." + std::string(family->moe_block) +
         ".switch_mlp." + std::string(proj);
}

}  // namespace moeq
