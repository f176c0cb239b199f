// The tensor-name tables of every supported Hugging Face model_type. Adding a family means
// composing its row groups here; nothing else in moeq knows tensor names.
#include "model/arch_table.h"
#include "moeq/model/family.h"

namespace moeq::arch {
namespace {

using P = Presence;
using R = TensorRole;
using S = Slot;

constexpr PatternRow kModelRows[] = {
    {"model.embed_tokens.weight", R::kEmbedding, S::kModel, P::kAlways},
    {"lm_head.weight", R::kLmHead, S::kModel, P::kUntied},
    {"model.norm.weight", R::kFinalNorm, S::kModel, P::kAlways},
    {"model.rotary_emb.inv_freq", R::kBuffer, S::kModel, P::kRecognised},
};

/// Norms and q/k/v/o of standard (llama-style) attention.
constexpr PatternRow kAttentionRows[] = {
    {"input_layernorm.weight", R::kInputNorm, S::kLayer, P::kAlways},
    {"self_attn.q_proj.weight", R::kAttnQ, S::kLayer, P::kAlways},
    {"self_attn.k_proj.weight", R::kAttnK, S::kLayer, P::kAlways},
    {"self_attn.v_proj.weight", R::kAttnV, S::kLayer, P::kAlways},
    {"self_attn.o_proj.weight", R::kAttnO, S::kLayer, P::kAlways},
    {"post_attention_layernorm.weight", R::kPostAttnNorm, S::kLayer, P::kAlways},
    {"self_attn.rotary_emb.inv_freq", R::kBuffer, S::kLayer, P::kRecognised},
};

/// q/k/v/o biases controlled by attention_bias (llama, qwen3, olmoe).
constexpr PatternRow kQkvoBiasRows[] = {
    {"self_attn.q_proj.bias", R::kAttnQBias, S::kLayer, P::kAttnBias},
    {"self_attn.k_proj.bias", R::kAttnKBias, S::kLayer, P::kAttnBias},
    {"self_attn.v_proj.bias", R::kAttnVBias, S::kLayer, P::kAttnBias},
    {"self_attn.o_proj.bias", R::kAttnOBias, S::kLayer, P::kAttnBias},
};

/// q/k/v biases of the qwen2 family (attention_bias is forced true by ParseModelConfig).
constexpr PatternRow kQkvBiasRows[] = {
    {"self_attn.q_proj.bias", R::kAttnQBias, S::kLayer, P::kAttnBias},
    {"self_attn.k_proj.bias", R::kAttnKBias, S::kLayer, P::kAttnBias},
    {"self_attn.v_proj.bias", R::kAttnVBias, S::kLayer, P::kAttnBias},
};

constexpr PatternRow kQkNormRows[] = {
    {"self_attn.q_norm.weight", R::kAttnQNorm, S::kLayer, P::kAlways},
    {"self_attn.k_norm.weight", R::kAttnKNorm, S::kLayer, P::kAlways},
};

/// DeepSeek multi-head latent attention.
constexpr PatternRow kMlaRows[] = {
    {"input_layernorm.weight", R::kInputNorm, S::kLayer, P::kAlways},
    {"self_attn.q_proj.weight", R::kAttnQ, S::kLayer, P::kNoQLora},
    {"self_attn.q_a_proj.weight", R::kAttnQA, S::kLayer, P::kQLora},
    {"self_attn.q_a_layernorm.weight", R::kAttnQANorm, S::kLayer, P::kQLora},
    {"self_attn.q_b_proj.weight", R::kAttnQB, S::kLayer, P::kQLora},
    {"self_attn.kv_a_proj_with_mqa.weight", R::kAttnKVA, S::kLayer, P::kAlways},
    {"self_attn.kv_a_layernorm.weight", R::kAttnKVANorm, S::kLayer, P::kAlways},
    {"self_attn.kv_b_proj.weight", R::kAttnKVB, S::kLayer, P::kAlways},
    {"self_attn.o_proj.weight", R::kAttnO, S::kLayer, P::kAlways},
    {"post_attention_layernorm.weight", R::kPostAttnNorm, S::kLayer, P::kAlways},
    {"self_attn.rotary_emb.inv_freq", R::kBuffer, S::kLayer, P::kRecognised},
};

constexpr PatternRow kDenseMlpRows[] = {
    {"mlp.gate_proj.weight", R::kMlpGate, S::kLayer, P::kDenseLayer},
    {"mlp.up_proj.weight", R::kMlpUp, S::kLayer, P::kDenseLayer},
    {"mlp.down_proj.weight", R::kMlpDown, S::kLayer, P::kDenseLayer},
};

/// Routed experts under "mlp." (qwen2_moe, qwen3_moe, olmoe, deepseek), per-expert and fused
/// (transformers v5 stores all experts of a layer in 3-D parameters without ".weight").
constexpr PatternRow kMlpExpertRows[] = {
    {"mlp.gate.weight", R::kRouter, S::kLayer, P::kMoeLayer},
    {"mlp.experts.{E}.gate_proj.weight", R::kExpertGate, S::kExpert, P::kMoeLayer},
    {"mlp.experts.{E}.up_proj.weight", R::kExpertUp, S::kExpert, P::kMoeLayer},
    {"mlp.experts.{E}.down_proj.weight", R::kExpertDown, S::kExpert, P::kMoeLayer},
    {"mlp.experts.gate_up_proj", R::kExpertGateUp, S::kFused, P::kRecognised},
    {"mlp.experts.gate_proj", R::kExpertGate, S::kFused, P::kRecognised},
    {"mlp.experts.up_proj", R::kExpertUp, S::kFused, P::kRecognised},
    {"mlp.experts.down_proj", R::kExpertDown, S::kFused, P::kRecognised},
};

constexpr PatternRow kQwen2SharedRows[] = {
    {"mlp.shared_expert.gate_proj.weight", R::kSharedGate, S::kLayer, P::kShared},
    {"mlp.shared_expert.up_proj.weight", R::kSharedUp, S::kLayer, P::kShared},
    {"mlp.shared_expert.down_proj.weight", R::kSharedDown, S::kLayer, P::kShared},
    {"mlp.shared_expert_gate.weight", R::kSharedExpertGate, S::kLayer, P::kShared},
};

constexpr PatternRow kDeepseekSharedRows[] = {
    {"mlp.shared_experts.gate_proj.weight", R::kSharedGate, S::kLayer, P::kShared},
    {"mlp.shared_experts.up_proj.weight", R::kSharedUp, S::kLayer, P::kShared},
    {"mlp.shared_experts.down_proj.weight", R::kSharedDown, S::kLayer, P::kShared},
};

constexpr PatternRow kDeepseekV3RouterBiasRows[] = {
    {"mlp.gate.e_score_correction_bias", R::kRouterBias, S::kLayer, P::kMoeLayer},
};

/// Mixtral: w1 = gate, w2 = down, w3 = up. The transformers v5 layout (router and fused experts
/// under "mlp.") is accepted as an alias.
constexpr PatternRow kMixtralExpertRows[] = {
    {"block_sparse_moe.gate.weight", R::kRouter, S::kLayer, P::kMoeLayer},
    {"block_sparse_moe.experts.{E}.w1.weight", R::kExpertGate, S::kExpert, P::kMoeLayer},
    {"block_sparse_moe.experts.{E}.w3.weight", R::kExpertUp, S::kExpert, P::kMoeLayer},
    {"block_sparse_moe.experts.{E}.w2.weight", R::kExpertDown, S::kExpert, P::kMoeLayer},
    {"block_sparse_moe.experts.gate_up_proj", R::kExpertGateUp, S::kFused, P::kRecognised},
    {"block_sparse_moe.experts.down_proj", R::kExpertDown, S::kFused, P::kRecognised},
    {"mlp.gate.weight", R::kRouter, S::kLayer, P::kRecognised},
    {"mlp.experts.gate_up_proj", R::kExpertGateUp, S::kFused, P::kRecognised},
    {"mlp.experts.down_proj", R::kExpertDown, S::kFused, P::kRecognised},
};

/// Shape conventions from the family traits table.
ShapeTraits ShapesOf(std::string_view model_type) {
  const FamilyTraits* f = FindFamily(model_type);
  return {.full_width_qk_norm = f->full_width_qk_norm, .mla = f->mla};
}

std::vector<FamilySpec> MakeFamilies() {
  return {
      {"llama", {kModelRows, kAttentionRows, kQkvoBiasRows, kDenseMlpRows}, ShapesOf("llama")},
      {"qwen2", {kModelRows, kAttentionRows, kQkvBiasRows, kDenseMlpRows}, ShapesOf("qwen2")},
      {"qwen3",
       {kModelRows, kAttentionRows, kQkvoBiasRows, kQkNormRows, kDenseMlpRows},
       ShapesOf("qwen3")},
      {"mixtral", {kModelRows, kAttentionRows, kMixtralExpertRows}, ShapesOf("mixtral")},
      {"olmoe",
       {kModelRows, kAttentionRows, kQkvoBiasRows, kQkNormRows, kMlpExpertRows},
       ShapesOf("olmoe")},
      {"qwen2_moe",
       {kModelRows, kAttentionRows, kQkvBiasRows, kDenseMlpRows, kMlpExpertRows, kQwen2SharedRows},
       ShapesOf("qwen2_moe")},
      {"qwen3_moe",
       {kModelRows, kAttentionRows, kQkvoBiasRows, kQkNormRows, kDenseMlpRows, kMlpExpertRows},
       ShapesOf("qwen3_moe")},
      {"deepseek_v2",
       {kModelRows, kMlaRows, kDenseMlpRows, kMlpExpertRows, kDeepseekSharedRows},
       ShapesOf("deepseek_v2")},
      {"deepseek_v3",
       {kModelRows, kMlaRows, kDenseMlpRows, kMlpExpertRows, kDeepseekSharedRows,
        kDeepseekV3RouterBiasRows},
       ShapesOf("deepseek_v3")},
  };
}

}  // namespace

const std::vector<FamilySpec>& Families() {
  static const std::vector<FamilySpec> families = MakeFamilies();
  return families;
}

}  // namespace moeq::arch
