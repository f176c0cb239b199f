// MlxStackedModule: mlx-lm's stacked expert module paths (SwitchGLU "switch_mlp").
#include "moeq/model/mlx_names.h"

#include <string>

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
  // The adapter's per-expert name, e.g. "model.layers.3.mlp.experts.0.gate_proj.weight" or
  // "model.layers.3.block_sparse_moe.experts.0.w1.weight"; mlx-lm's sanitize() replaces
  // "experts.<e>.<proj>" by "switch_mlp.<gate|up|down>_proj".
  const std::string per_expert = adapter.Name(TensorId{layer, 0, role});
  constexpr std::string_view kExperts = ".experts.0.";
  const size_t at = per_expert.find(kExperts);
  if (per_expert.empty() || at == std::string::npos) {
    return Status::Unsupported("model_type '" + std::string(adapter.model_type()) +
                               "' has no per-expert tensors that mlx-lm stacks into switch_mlp");
  }
  return per_expert.substr(0, at) + ".switch_mlp." + std::string(proj);
}

}  // namespace moeq
