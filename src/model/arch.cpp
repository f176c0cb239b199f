// Tensor roles (the one table of role names and properties), TensorId ordering, and the registry
// of architecture adapters keyed by config.json's model_type.
#include "moeq/model/arch.h"

#include <algorithm>
#include <tuple>

#include "model/arch_table.h"

namespace moeq {
namespace {

enum RoleFlag : uint8_t {
  kQuantizable = 1 << 0,
  kExpert = 1 << 1,
  kShared = 1 << 2,
  kNorm = 1 << 3,
};

struct RoleRow {
  TensorRole role;
  std::string_view name;
  uint8_t flags;
};

/// In enum order; names are persisted in artefacts and must not change.
constexpr RoleRow kRoles[] = {
    {TensorRole::kUnknown, "unknown", 0},
    {TensorRole::kEmbedding, "embedding", kQuantizable},
    {TensorRole::kLmHead, "lm_head", kQuantizable},
    {TensorRole::kFinalNorm, "final_norm", kNorm},
    {TensorRole::kInputNorm, "input_norm", kNorm},
    {TensorRole::kPostAttnNorm, "post_attn_norm", kNorm},
    {TensorRole::kPreFfnNorm, "pre_ffn_norm", kNorm},
    {TensorRole::kPostFfnNorm, "post_ffn_norm", kNorm},
    {TensorRole::kAttnQ, "attn_q", kQuantizable},
    {TensorRole::kAttnK, "attn_k", kQuantizable},
    {TensorRole::kAttnV, "attn_v", kQuantizable},
    {TensorRole::kAttnO, "attn_o", kQuantizable},
    {TensorRole::kAttnQBias, "attn_q_bias", 0},
    {TensorRole::kAttnKBias, "attn_k_bias", 0},
    {TensorRole::kAttnVBias, "attn_v_bias", 0},
    {TensorRole::kAttnOBias, "attn_o_bias", 0},
    {TensorRole::kAttnQNorm, "attn_q_norm", kNorm},
    {TensorRole::kAttnKNorm, "attn_k_norm", kNorm},
    {TensorRole::kAttnQA, "attn_q_a", kQuantizable},
    {TensorRole::kAttnQANorm, "attn_q_a_norm", kNorm},
    {TensorRole::kAttnQB, "attn_q_b", kQuantizable},
    {TensorRole::kAttnKVA, "attn_kv_a", kQuantizable},
    {TensorRole::kAttnKVANorm, "attn_kv_a_norm", kNorm},
    {TensorRole::kAttnKVB, "attn_kv_b", kQuantizable},
    {TensorRole::kRouter, "router", kQuantizable},
    {TensorRole::kRouterBias, "router_bias", 0},
    {TensorRole::kExpertGate, "expert_gate", kQuantizable | kExpert},
    {TensorRole::kExpertUp, "expert_up", kQuantizable | kExpert},
    {TensorRole::kExpertDown, "expert_down", kQuantizable | kExpert},
    {TensorRole::kExpertGateUp, "expert_gate_up", kQuantizable | kExpert},
    {TensorRole::kSharedGate, "shared_gate", kQuantizable | kShared},
    {TensorRole::kSharedUp, "shared_up", kQuantizable | kShared},
    {TensorRole::kSharedDown, "shared_down", kQuantizable | kShared},
    {TensorRole::kSharedExpertGate, "shared_expert_gate", kShared},
    {TensorRole::kMlpGate, "mlp_gate", kQuantizable},
    {TensorRole::kMlpUp, "mlp_up", kQuantizable},
    {TensorRole::kMlpDown, "mlp_down", kQuantizable},
    {TensorRole::kBuffer, "buffer", 0},
};

constexpr bool RolesInEnumOrder() {
  for (size_t i = 0; i < std::size(kRoles); ++i) {
    if (static_cast<size_t>(kRoles[i].role) != i) return false;
  }
  return true;
}
static_assert(RolesInEnumOrder(), "kRoles must list every TensorRole in enum order");
static_assert(static_cast<size_t>(TensorRole::kBuffer) + 1 == std::size(kRoles),
              "kRoles must end with the last TensorRole");

const RoleRow& Row(TensorRole role) { return kRoles[static_cast<size_t>(role)]; }

}  // namespace

std::string_view RoleName(TensorRole role) { return Row(role).name; }

std::optional<TensorRole> ParseRole(std::string_view name) {
  for (const auto& r : kRoles) {
    if (r.name == name) return r.role;
  }
  return std::nullopt;
}

const std::vector<TensorRole>& AllRoles() {
  static const std::vector<TensorRole> roles = [] {
    std::vector<TensorRole> v;
    for (const auto& r : kRoles) v.push_back(r.role);
    return v;
  }();
  return roles;
}

bool IsQuantizableRole(TensorRole role) { return (Row(role).flags & kQuantizable) != 0; }
bool IsExpertRole(TensorRole role) { return (Row(role).flags & kExpert) != 0; }
bool IsSharedExpertRole(TensorRole role) { return (Row(role).flags & kShared) != 0; }
bool IsNormRole(TensorRole role) { return (Row(role).flags & kNorm) != 0; }

bool operator<(const TensorId& a, const TensorId& b) {
  return std::tuple(a.layer, static_cast<int>(a.role), a.expert) <
         std::tuple(b.layer, static_cast<int>(b.role), b.expert);
}

std::vector<std::string> SupportedModelTypes() {
  std::vector<std::string> types;
  for (const auto& family : arch::Families()) types.emplace_back(family.model_type);
  std::sort(types.begin(), types.end());
  return types;
}

Result<std::unique_ptr<ArchAdapter>> MakeArchAdapter(const ModelConfig& config) {
  for (const auto& family : arch::Families()) {
    if (family.model_type == config.model_type) {
      return std::unique_ptr<ArchAdapter>(std::make_unique<arch::TableAdapter>(family, config));
    }
  }
  std::string supported;
  for (const auto& t : SupportedModelTypes()) supported += (supported.empty() ? "" : ", ") + t;
  return Status::Unsupported("model_type '" + config.model_type +
                             "' is not supported (supported: " + supported + ")");
}

}  // namespace moeq
