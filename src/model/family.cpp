// The family traits table (include/moeq/model/family.h).
#include "moeq/model/family.h"

#include <algorithm>

namespace moeq {
namespace {

using LP = LayerPlan;
using EW = ExpertWidth;
using SE = SharedExperts;
using RN = RouterNorm;

// clang-format off
constexpr FamilyTraits kFamilies[] = {
    // model_type     plan                 expert width         shared             router
    //   norm_topk  qkv_bias mla    qk_norm full_qk  gguf_arch   gguf_norm ff_expert rope_perm moe_block
    {"deepseek_v2",  LP::kDeepseekFirstK,  EW::kMoeIntermediate, SE::kCountTimesWidth, RN::kConfig,
       false,     false,   true,  false,  false,   "",          false,    false,    false, "mlp"},
    {"deepseek_v3",  LP::kDeepseekFirstK,  EW::kMoeIntermediate, SE::kCountTimesWidth, RN::kConfig,
       true,      false,   true,  false,  false,   "",          false,    false,    false, "mlp"},
    {"llama",        LP::kDense,           EW::kNone,            SE::kNone,            RN::kNone,
       false,     false,   false, false,  false,   "llama",     false,    false,    true, ""},
    {"mixtral",      LP::kAllSparse,       EW::kIntermediate,    SE::kNone,            RN::kAlwaysTopk,
       true,      false,   false, false,  false,   "llama",     true,     true,     true, "block_sparse_moe"},
    {"olmoe",        LP::kAllSparse,       EW::kIntermediate,    SE::kNone,            RN::kConfig,
       false,     false,   false, true,   true,    "olmoe",     false,    true,     false, "mlp"},
    {"qwen2",        LP::kDense,           EW::kNone,            SE::kNone,            RN::kNone,
       false,     true,    false, false,  false,   "qwen2",     false,    false,    false, ""},
    {"qwen2_moe",    LP::kQwenSparseStep,  EW::kMoeIntermediate, SE::kTotalWidth,      RN::kConfig,
       false,     true,    false, false,  false,   "qwen2moe",  false,    false,    false, "mlp"},
    {"qwen3",        LP::kDense,           EW::kNone,            SE::kNone,            RN::kNone,
       false,     false,   false, true,   false,   "qwen3",     false,    false,    false, ""},
    {"qwen3_moe",    LP::kQwenSparseStep,  EW::kMoeIntermediate, SE::kNone,            RN::kConfig,
       false,     false,   false, true,   false,   "qwen3moe",  true,     false,    false, "mlp"},
};
// clang-format on

}  // namespace

std::span<const FamilyTraits> AllFamilies() { return kFamilies; }

const FamilyTraits* FindFamily(std::string_view model_type) {
  for (const auto& f : kFamilies) {
    if (f.model_type == model_type) return &f;
  }
  return nullptr;
}

const FamilyTraits* FindFamilyByGgufArch(std::string_view gguf_arch, bool moe) {
  if (gguf_arch.empty()) return nullptr;
  const FamilyTraits* dense = nullptr;
  const FamilyTraits* sparse = nullptr;
  for (const auto& f : kFamilies) {
    if (f.gguf_arch != gguf_arch) continue;
    const bool is_moe = f.plan != LayerPlan::kDense;
    if (is_moe && !sparse) sparse = &f;
    if (!is_moe && !dense) dense = &f;
  }
  // An architecture shared by a dense and a sparse family (llama: llama, mixtral) is resolved by
  // `moe`; one used by a single family maps to it either way.
  if (moe) return sparse ? sparse : dense;
  return dense ? dense : sparse;
}

bool RouterRenormalizesTopk(const FamilyTraits& family, const ModelConfig& config) {
  return config.norm_topk_prob || family.router == RouterNorm::kAlwaysTopk;
}

std::optional<TensorRole> InputNormOf(const FamilyTraits& family, TensorRole role) {
  switch (role) {
    case TensorRole::kAttnQ:
    case TensorRole::kAttnK:
    case TensorRole::kAttnV:
    case TensorRole::kAttnQA:
    case TensorRole::kAttnKVA:
      return TensorRole::kInputNorm;
    case TensorRole::kAttnQB:
      if (!family.mla) return std::nullopt;
      return TensorRole::kAttnQANorm;
    case TensorRole::kAttnKVB:
      if (!family.mla) return std::nullopt;
      return TensorRole::kAttnKVANorm;
    case TensorRole::kRouter:
    case TensorRole::kExpertGate:
    case TensorRole::kExpertUp:
    case TensorRole::kExpertGateUp:
    case TensorRole::kSharedGate:
    case TensorRole::kSharedUp:
    case TensorRole::kSharedExpertGate:
    case TensorRole::kMlpGate:
    case TensorRole::kMlpUp:
      return TensorRole::kPostAttnNorm;
    case TensorRole::kLmHead:
      return TensorRole::kFinalNorm;
    default:
      return std::nullopt;
  }
}

}  // namespace moeq
