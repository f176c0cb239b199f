// What moeq knows about each supported model family, in one table: how config.json is read,
// how the router weights its experts, the GGUF architecture, per-head q/k norms, MLA, and
// which norm feeds the input of each projection. Tensor name patterns are the adapter's
// (arch.h: one pattern table per family); every other module asks this table instead of
// comparing model_type strings.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "moeq/model/arch.h"

namespace moeq {

/// How a family decides which layers hold a sparse MoE block.
enum class LayerPlan : uint8_t {
  kDense,           ///< no MoE layers
  kAllSparse,       ///< every layer (mixtral, olmoe)
  kQwenSparseStep,  ///< (l+1) % decoder_sparse_step == 0 and l not in mlp_only_layers
  kDeepseekFirstK,  ///< l >= first_k_dense_replace and l % moe_layer_freq == 0
};

/// Where config.json keeps the routed expert width.
enum class ExpertWidth : uint8_t {
  kNone,             ///< dense family
  kMoeIntermediate,  ///< moe_intermediate_size (intermediate_size is the dense MLP)
  kIntermediate,     ///< intermediate_size (the family has no dense MLP)
};

/// Where config.json keeps the shared expert MLP.
enum class SharedExperts : uint8_t {
  kNone,
  kTotalWidth,       ///< shared_expert_intermediate_size, one shared expert + sigmoid gate
  kCountTimesWidth,  ///< n_shared_experts × moe_intermediate_size
};

/// How router logits become expert weights: softmax over all experts, then top-k.
enum class RouterNorm : uint8_t {
  kNone,        ///< dense family, no router
  kConfig,      ///< top-k weights renormalised iff config norm_topk_prob
  kAlwaysTopk,  ///< softmax over the top-k logits only (mixtral): always renormalised
};

struct FamilyTraits {
  std::string_view model_type;
  LayerPlan plan;
  ExpertWidth expert_width;
  SharedExperts shared;
  RouterNorm router;
  /// norm_topk_prob when config.json omits it.
  bool norm_topk_default;
  /// q/k/v projections always carry biases (qwen2 family), whatever attention_bias says.
  bool qkv_bias_always;
  /// DeepSeek multi-head latent attention.
  bool mla;
  /// Has q_norm/k_norm after the q/k projections.
  bool qk_norm;
  /// q_norm/k_norm span all heads (olmoe) instead of one head_dim (qwen3).
  bool full_width_qk_norm;
  /// llama.cpp general.architecture; empty when moeq writes no GGUF for the family.
  std::string_view gguf_arch;
  /// llama.cpp's default for <arch>.expert_weights_norm when a GGUF omits it.
  bool gguf_norm_topk_default;
  /// feed_forward_length of the GGUF is the expert width (llama/mixtral, olmoe).
  bool gguf_ff_is_expert_width;
  /// q/k rows are permuted for llama.cpp's rotary layout (llama architecture).
  bool gguf_rope_permute;
  /// The layer module holding router and routed experts ("mlp", mixtral's
  /// "block_sparse_moe"); mlx-lm stacks the experts into "<module>.switch_mlp.<proj>".
  /// Empty for dense families.
  std::string_view moe_block;
};

/// Every supported family, sorted by model_type.
std::span<const FamilyTraits> AllFamilies();

/// The traits of `model_type`; nullptr when unsupported.
const FamilyTraits* FindFamily(std::string_view model_type);

/// The family whose GGUF general.architecture is `gguf_arch` (for "llama": mixtral when `moe`,
/// llama otherwise); nullptr when none.
const FamilyTraits* FindFamilyByGgufArch(std::string_view gguf_arch, bool moe);

/// Whether top-k router weights are renormalised to sum to 1 for `config`.
bool RouterRenormalizesTopk(const FamilyTraits& family, const ModelConfig& config);

/// The norm whose output is the input of a projection of `role` (kInputNorm for q/k/v,
/// kPostAttnNorm for router, expert and MLP gate/up, kFinalNorm for lm_head, the MLA
/// low-rank norms for q_b/kv_b); nullopt for linears whose input is not a norm's output
/// (o_proj, down projections, embeddings) and for non-linear roles.
std::optional<TensorRole> InputNormOf(const FamilyTraits& family, TensorRole role);

}  // namespace moeq
