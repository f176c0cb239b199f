// The architecture hyper-parameters moeq needs, parsed from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq {

/// Normalised view of config.json across model families (Mixtral's num_local_experts, Qwen's
/// num_experts, DeepSeek's n_routed_experts all land in num_experts, and so on).
struct ModelConfig {
  std::string model_type;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  ///< hidden_size / num_heads when config.json omits it
  int64_t vocab_size = 0;
  int64_t intermediate_size = 0;      ///< dense MLP width (0 if the model has none)
  int64_t moe_intermediate_size = 0;  ///< routed expert width (0 for dense models)
  int64_t num_experts = 0;            ///< routed experts per MoE layer (0 for dense models)
  int64_t top_k = 0;                  ///< experts per token
  int64_t num_shared_experts = 0;
  int64_t shared_expert_intermediate_size = 0;  ///< total width of the shared expert MLP
  bool norm_topk_prob = false;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  /// moe_layer[l]: layer l has a sparse MoE block (from decoder_sparse_step, mlp_only_layers,
  /// first_k_dense_replace, moe_layer_freq).
  std::vector<bool> moe_layer;
  // MLA (deepseek_v2/v3) dimensions; 0 when absent.
  int64_t q_lora_rank = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  /// The parsed config.json, kept for fields only some tools need.
  nlohmann::json raw;

  bool is_moe() const { return num_experts > 0; }
  bool IsMoeLayer(int64_t layer) const {
    return layer >= 0 && static_cast<size_t>(layer) < moe_layer.size() &&
           moe_layer[static_cast<size_t>(layer)];
  }
};

/// Parses config.json contents. `path` is used in messages ("config.json: missing key
/// 'hidden_size'").
Result<ModelConfig> ParseModelConfig(const nlohmann::json& json, std::string_view path);

}  // namespace moeq
