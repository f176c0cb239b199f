// Model architectures: typed tensor identities and one adapter per Hugging Face model_type.
//
// Every tensor name of a checkpoint is parsed exactly once, here, into a TensorId
// {layer, expert, role}. Nothing else in moeq looks at substrings of tensor names.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/base/tensor.h"
#include "moeq/model/model_config.h"

namespace moeq {

/// What a tensor is for. Names (RoleName) are persisted in artefacts; keep them stable.
enum class TensorRole : uint8_t {
  kUnknown,       ///< not recognised by the adapter (reported, never quantized)
  kEmbedding,     ///< token embedding [vocab, hidden]
  kLmHead,        ///< output projection [vocab, hidden]
  kFinalNorm,     ///< model.norm
  kInputNorm,     ///< input_layernorm
  kPostAttnNorm,  ///< post_attention_layernorm
  kPreFfnNorm,    ///< pre_feedforward_layernorm (where present)
  kPostFfnNorm,   ///< post_feedforward_layernorm (where present)
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnO,
  kAttnQBias,
  kAttnKBias,
  kAttnVBias,
  kAttnOBias,
  kAttnQNorm,  ///< per-head or full q norm (qwen3, olmoe)
  kAttnKNorm,
  kAttnQA,        ///< MLA q_a_proj
  kAttnQANorm,    ///< MLA q_a_layernorm
  kAttnQB,        ///< MLA q_b_proj
  kAttnKVA,       ///< MLA kv_a_proj_with_mqa
  kAttnKVANorm,   ///< MLA kv_a_layernorm
  kAttnKVB,       ///< MLA kv_b_proj
  kRouter,        ///< expert router [experts, hidden]
  kRouterBias,    ///< router score correction bias (deepseek_v3)
  kExpertGate,    ///< routed expert gate_proj / w1 [ff, hidden]
  kExpertUp,      ///< routed expert up_proj / w3 [ff, hidden]
  kExpertDown,    ///< routed expert down_proj / w2 [hidden, ff]
  kExpertGateUp,  ///< fused routed experts gate+up [experts, 2*ff, hidden]
  kSharedGate,    ///< shared expert gate_proj
  kSharedUp,
  kSharedDown,
  kSharedExpertGate,  ///< qwen2_moe shared_expert_gate [1, hidden]
  kMlpGate,           ///< dense MLP gate_proj
  kMlpUp,
  kMlpDown,
  kBuffer,  ///< recognised non-weight buffer (e.g. rotary inv_freq); carried, never quantized
};

/// Stable snake_case name of a role, e.g. "expert_down".
std::string_view RoleName(TensorRole role);
std::optional<TensorRole> ParseRole(std::string_view name);
/// All roles, in enum order.
const std::vector<TensorRole>& AllRoles();

/// Roles whose tensors moeq may quantize (matrices: embeddings, lm_head, attention, router,
/// experts, shared experts, dense MLP). Norms, biases, buffers and unknown tensors never are.
bool IsQuantizableRole(TensorRole role);
/// Routed-expert roles (per-expert or fused).
bool IsExpertRole(TensorRole role);
/// Shared-expert roles (gate/up/down and its sigmoid gate).
bool IsSharedExpertRole(TensorRole role);
bool IsNormRole(TensorRole role);

/// Identity of a tensor. layer = -1 for model-level tensors (embeddings, lm_head, final norm);
/// expert = -1 when the tensor is not one routed expert's (including fused 3-D expert tensors,
/// which hold all experts of a layer along dimension 0).
struct TensorId {
  int layer = -1;
  int expert = -1;
  TensorRole role = TensorRole::kUnknown;

  /// Order: model-level tensors first, then by layer, role, expert.
  friend bool operator<(const TensorId& a, const TensorId& b);
  friend bool operator==(const TensorId& a, const TensorId& b) = default;
};

/// What the adapter learnt from one tensor name.
struct ClassifiedTensor {
  TensorId id;
  /// True for fused expert tensors shaped [experts, out, in] (e.g. mlp.experts.gate_up_proj).
  bool fused_experts = false;
};

/// Maps tensor names of one architecture family to TensorIds and back.
class ArchAdapter {
 public:
  virtual ~ArchAdapter() = default;
  /// The config's model_type this adapter was made for.
  virtual std::string_view model_type() const = 0;
  /// Parses a tensor name; nullopt when this architecture has no such tensor.
  virtual std::optional<ClassifiedTensor> Classify(std::string_view name) const = 0;
  /// The canonical Hugging Face name of a tensor (per-expert form for experts).
  virtual std::string Name(const TensorId& id) const = 0;
  /// Every tensor a checkpoint of this config should hold, with shapes, in the per-expert form
  /// (used by the synthetic checkpoint generator and to report missing tensors).
  virtual std::vector<std::pair<TensorId, std::vector<int64_t>>> ExpectedTensors() const = 0;
};

/// The model_type values moeq supports, sorted.
std::vector<std::string> SupportedModelTypes();

/// The adapter for `config.model_type`; Unsupported lists the supported model types.
Result<std::unique_ptr<ArchAdapter>> MakeArchAdapter(const ModelConfig& config);

}  // namespace moeq
