// mlx-lm's names for a family's stacked expert modules (switch_mlp), derived from the adapter.
#pragma once

#include <string>

#include "moeq/base/status.h"
#include "moeq/model/arch.h"

namespace moeq {

/// The mlx-lm stacked module path of a (layer, routed-expert projection) — e.g.
/// "model.layers.3.mlp.switch_mlp.gate_proj" (qwen*_moe, olmoe, deepseek) or
/// "model.layers.3.block_sparse_moe.switch_mlp.down_proj" (mixtral) — from the family's
/// moe_block trait (moeq/model/family.h). Unsupported for roles other than kExpertGate,
/// kExpertUp, kExpertDown and for dense families.
Result<std::string> MlxStackedModule(const ArchAdapter& adapter, int layer, TensorRole role);

}  // namespace moeq
