// config.json → ModelConfig: driven by the family traits table (moeq/model/family.h), key
// aliases resolved here so that no other module reads config.json keys.
#include "moeq/model/model_config.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "moeq/base/json_reader.h"
#include "moeq/base/limits.h"
#include "moeq/model/arch.h"
#include "moeq/model/family.h"

namespace moeq {
namespace {

/// Spellings of the routed expert count across families.
constexpr std::array<std::string_view, 3> kExpertCountKeys = {"num_experts", "num_local_experts",
                                                              "n_routed_experts"};

std::string JsonTypeName(const nlohmann::json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

/// Typed access to config.json keys with messages naming the file and the key. A key whose
/// value is null counts as absent (HF writes e.g. "q_lora_rank": null).
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, std::string_view path) : json_(json), path_(path) {}

  bool Has(std::string_view key) const {
    auto it = json_.find(key);
    return it != json_.end() && !it->is_null();
  }

  Status Missing(std::string_view key, std::string_view why = "") const {
    std::string m = path_ + ": missing key '" + std::string(key) + "'";
    if (!why.empty()) m += " (" + std::string(why) + ")";
    return Status::NotFound(m);
  }

  Status WrongType(std::string_view key, std::string_view expected) const {
    return Status::Corruption(path_ + ": key '" + std::string(key) + "' must be " +
                              std::string(expected) + ", got " + JsonTypeName(json_.at(key)) + " " +
                              JsonExcerpt(json_.at(key)));
  }

  Result<int64_t> Int(std::string_view key) const {
    if (!Has(key)) return Missing(key);
    return IntValue(key);
  }
  Result<int64_t> Int(std::string_view key, int64_t fallback) const {
    if (!Has(key)) return fallback;
    return IntValue(key);
  }
  Result<double> Number(std::string_view key, double fallback) const {
    if (!Has(key)) return fallback;
    const auto& v = json_.at(key);
    if (!v.is_number()) return WrongType(key, "a number");
    return v.get<double>();
  }
  Result<bool> Bool(std::string_view key, bool fallback) const {
    if (!Has(key)) return fallback;
    const auto& v = json_.at(key);
    if (!v.is_boolean()) return WrongType(key, "a boolean");
    return v.get<bool>();
  }
  Result<std::vector<int64_t>> IntList(std::string_view key) const {
    std::vector<int64_t> out;
    if (!Has(key)) return out;
    const auto& v = json_.at(key);
    if (!v.is_array()) return WrongType(key, "a list of integers");
    for (const auto& e : v) {
      if (!e.is_number_integer()) return WrongType(key, "a list of integers");
      out.push_back(e.get<int64_t>());
    }
    return out;
  }

  Status Invalid(std::string_view key, const std::string& why) const {
    return Status::Corruption(path_ + ": key '" + std::string(key) + "' " + why);
  }

  const std::string& path() const { return path_; }

 private:
  Result<int64_t> IntValue(std::string_view key) const {
    const auto& v = json_.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    // Accept 128.0 written by some exporters, but not 128.5.
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
        return static_cast<int64_t>(d);
      }
    }
    return WrongType(key, "an integer");
  }

  const nlohmann::json& json_;
  std::string path_;
};

std::string SupportedList() {
  std::string s;
  for (const auto& t : SupportedModelTypes()) {
    if (!s.empty()) s += ", ";
    s += t;
  }
  return s;
}

Status RequirePositive(const ConfigReader& r, std::string_view key, int64_t v) {
  if (v <= 0) return r.Invalid(key, "must be positive, got " + std::to_string(v));
  return Status::Ok();
}

/// v in [lo, hi]: the upper bounds are moeq's limits (include/moeq/limits.h, docs/limits.md),
/// checked before anything is sized by the value.
Status RequireRange(const ConfigReader& r, std::string_view key, int64_t v, int64_t lo,
                    int64_t hi) {
  if (v < lo || v > hi) {
    return r.Invalid(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" +
                              (v > hi ? " (moeq's limit, docs/limits.md)" : "") + ", got " +
                              std::to_string(v));
  }
  return Status::Ok();
}

/// Fills num_experts, top_k, widths and shared experts for MoE families.
Status ParseMoe(const ConfigReader& r, const FamilyTraits& f, ModelConfig& c) {
  std::string_view count_key;
  for (auto key : kExpertCountKeys) {
    if (r.Has(key)) {
      count_key = key;
      break;
    }
  }
  if (count_key.empty()) {
    return r.Missing(kExpertCountKeys[0], "or num_local_experts / n_routed_experts");
  }
  MOEQ_ASSIGN_OR_RETURN(c.num_experts, r.Int(count_key));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, count_key, c.num_experts, 1, limits::kMaxExperts));
  MOEQ_ASSIGN_OR_RETURN(c.top_k, r.Int("num_experts_per_tok"));
  if (c.top_k <= 0 || c.top_k > c.num_experts) {
    return r.Invalid("num_experts_per_tok", "must be in [1, " + std::to_string(c.num_experts) +
                                                "], got " + std::to_string(c.top_k));
  }
  if (f.expert_width == ExpertWidth::kIntermediate) {
    // Mixtral and OLMoE have no dense MLP: intermediate_size is the expert width.
    MOEQ_ASSIGN_OR_RETURN(c.moe_intermediate_size, r.Int("intermediate_size"));
    MOEQ_RETURN_IF_ERROR(RequireRange(r, "intermediate_size", c.moe_intermediate_size, 1,
                                      limits::kMaxIntermediateSize));
    c.intermediate_size = 0;
  } else {
    MOEQ_ASSIGN_OR_RETURN(c.moe_intermediate_size, r.Int("moe_intermediate_size"));
    MOEQ_RETURN_IF_ERROR(RequireRange(r, "moe_intermediate_size", c.moe_intermediate_size, 1,
                                      limits::kMaxIntermediateSize));
  }
  switch (f.shared) {
    case SharedExperts::kNone:
      break;
    case SharedExperts::kTotalWidth: {
      MOEQ_ASSIGN_OR_RETURN(c.shared_expert_intermediate_size,
                            r.Int("shared_expert_intermediate_size", 0));
      MOEQ_RETURN_IF_ERROR(RequireRange(r, "shared_expert_intermediate_size",
                                        c.shared_expert_intermediate_size, 0,
                                        limits::kMaxIntermediateSize));
      c.num_shared_experts = c.shared_expert_intermediate_size > 0 ? 1 : 0;
      break;
    }
    case SharedExperts::kCountTimesWidth: {
      MOEQ_ASSIGN_OR_RETURN(c.num_shared_experts, r.Int("n_shared_experts", 0));
      MOEQ_RETURN_IF_ERROR(
          RequireRange(r, "n_shared_experts", c.num_shared_experts, 0, limits::kMaxSharedExperts));
      c.shared_expert_intermediate_size = c.num_shared_experts * c.moe_intermediate_size;
      break;
    }
  }
  MOEQ_ASSIGN_OR_RETURN(c.norm_topk_prob, r.Bool("norm_topk_prob", f.norm_topk_default));
  return Status::Ok();
}

/// Computes moe_layer[] from the family's layer plan.
Status ParseLayerPlan(const ConfigReader& r, const FamilyTraits& f, ModelConfig& c) {
  c.moe_layer.assign(static_cast<size_t>(c.num_layers), false);
  switch (f.plan) {
    case LayerPlan::kDense:
      break;
    case LayerPlan::kAllSparse:
      c.moe_layer.assign(c.moe_layer.size(), true);
      break;
    case LayerPlan::kQwenSparseStep: {
      MOEQ_ASSIGN_OR_RETURN(int64_t step, r.Int("decoder_sparse_step", 1));
      MOEQ_RETURN_IF_ERROR(RequirePositive(r, "decoder_sparse_step", step));
      MOEQ_ASSIGN_OR_RETURN(std::vector<int64_t> mlp_only, r.IntList("mlp_only_layers"));
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const bool dense = std::find(mlp_only.begin(), mlp_only.end(), l) != mlp_only.end();
        c.moe_layer[static_cast<size_t>(l)] = !dense && (l + 1) % step == 0;
      }
      break;
    }
    case LayerPlan::kDeepseekFirstK: {
      MOEQ_ASSIGN_OR_RETURN(int64_t first_k, r.Int("first_k_dense_replace", 0));
      MOEQ_ASSIGN_OR_RETURN(int64_t freq, r.Int("moe_layer_freq", 1));
      MOEQ_RETURN_IF_ERROR(RequirePositive(r, "moe_layer_freq", freq));
      if (first_k < 0) return r.Invalid("first_k_dense_replace", "must not be negative");
      for (int64_t l = 0; l < c.num_layers; ++l) {
        c.moe_layer[static_cast<size_t>(l)] = l >= first_k && l % freq == 0;
      }
      break;
    }
  }
  return Status::Ok();
}

Status ParseMla(const ConfigReader& r, ModelConfig& c) {
  MOEQ_ASSIGN_OR_RETURN(c.q_lora_rank, r.Int("q_lora_rank", 0));
  MOEQ_ASSIGN_OR_RETURN(c.kv_lora_rank, r.Int("kv_lora_rank"));
  MOEQ_ASSIGN_OR_RETURN(c.qk_nope_head_dim, r.Int("qk_nope_head_dim"));
  MOEQ_ASSIGN_OR_RETURN(c.qk_rope_head_dim, r.Int("qk_rope_head_dim"));
  MOEQ_ASSIGN_OR_RETURN(c.v_head_dim, r.Int("v_head_dim"));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "q_lora_rank", c.q_lora_rank, 0, limits::kMaxHiddenSize));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "kv_lora_rank", c.kv_lora_rank, 1, limits::kMaxHiddenSize));
  MOEQ_RETURN_IF_ERROR(
      RequireRange(r, "qk_nope_head_dim", c.qk_nope_head_dim, 1, limits::kMaxHiddenSize));
  MOEQ_RETURN_IF_ERROR(
      RequireRange(r, "qk_rope_head_dim", c.qk_rope_head_dim, 1, limits::kMaxHiddenSize));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "v_head_dim", c.v_head_dim, 1, limits::kMaxHiddenSize));
  return Status::Ok();
}

}  // namespace

Result<ModelConfig> ParseModelConfig(const nlohmann::json& json, std::string_view path) try {
  const std::string file(path);
  if (!json.is_object()) {
    return Status::Corruption(file + ": expected a JSON object, got " + JsonTypeName(json));
  }
  ConfigReader r(json, path);
  if (!r.Has("model_type")) {
    return Status::NotFound(file + ": missing key 'model_type' (supported: " + SupportedList() +
                            ")");
  }
  if (!json.at("model_type").is_string()) return r.WrongType("model_type", "a string");
  ModelConfig c;
  c.model_type = json.at("model_type").get<std::string>();
  const FamilyTraits* family = FindFamily(c.model_type);
  if (family == nullptr) {
    return Status::Unsupported(file + ": model_type '" + c.model_type +
                               "' is not supported (supported: " + SupportedList() + ")");
  }
  const FamilyTraits& f = *family;

  MOEQ_ASSIGN_OR_RETURN(c.hidden_size, r.Int("hidden_size"));
  MOEQ_ASSIGN_OR_RETURN(c.num_layers, r.Int("num_hidden_layers"));
  MOEQ_ASSIGN_OR_RETURN(c.num_heads, r.Int("num_attention_heads"));
  MOEQ_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size"));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "hidden_size", c.hidden_size, 1, limits::kMaxHiddenSize));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "num_hidden_layers", c.num_layers, 1, limits::kMaxLayers));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "num_attention_heads", c.num_heads, 1, limits::kMaxHeads));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "vocab_size", c.vocab_size, 1, limits::kMaxVocab));
  MOEQ_ASSIGN_OR_RETURN(c.num_kv_heads, r.Int("num_key_value_heads", c.num_heads));
  MOEQ_RETURN_IF_ERROR(
      RequireRange(r, "num_key_value_heads", c.num_kv_heads, 1, limits::kMaxHeads));
  if (c.num_heads % c.num_kv_heads != 0) {
    return r.Invalid("num_key_value_heads", "(" + std::to_string(c.num_kv_heads) +
                                                ") must divide num_attention_heads (" +
                                                std::to_string(c.num_heads) + ")");
  }

  if (f.mla) {
    MOEQ_RETURN_IF_ERROR(ParseMla(r, c));
    // The query/key head width of MLA; config.json's head_dim (when written) is the rope part.
    c.head_dim = c.qk_nope_head_dim + c.qk_rope_head_dim;
  } else if (r.Has("head_dim")) {
    MOEQ_ASSIGN_OR_RETURN(c.head_dim, r.Int("head_dim"));
    MOEQ_RETURN_IF_ERROR(RequireRange(r, "head_dim", c.head_dim, 1, limits::kMaxHiddenSize));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return r.Missing("head_dim", "hidden_size " + std::to_string(c.hidden_size) +
                                       " is not a multiple of num_attention_heads " +
                                       std::to_string(c.num_heads));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }

  MOEQ_RETURN_IF_ERROR(ParseLayerPlan(r, f, c));
  const bool has_dense_layer =
      std::find(c.moe_layer.begin(), c.moe_layer.end(), false) != c.moe_layer.end();
  if (f.expert_width != ExpertWidth::kIntermediate) {
    // The dense MLP width; families whose layers are all sparse may omit it.
    if (f.plan == LayerPlan::kDense || has_dense_layer) {
      if (!r.Has("intermediate_size")) {
        return r.Missing("intermediate_size",
                         f.plan == LayerPlan::kDense ? "" : "the model has dense layers");
      }
      MOEQ_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size"));
      MOEQ_RETURN_IF_ERROR(RequireRange(r, "intermediate_size", c.intermediate_size, 1,
                                        limits::kMaxIntermediateSize));
    } else {
      MOEQ_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size", 0));
      MOEQ_RETURN_IF_ERROR(RequireRange(r, "intermediate_size", c.intermediate_size, 0,
                                        limits::kMaxIntermediateSize));
    }
  }
  if (f.plan != LayerPlan::kDense) MOEQ_RETURN_IF_ERROR(ParseMoe(r, f, c));

  MOEQ_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool("tie_word_embeddings", false));
  MOEQ_ASSIGN_OR_RETURN(c.attention_bias, r.Bool("attention_bias", false));
  if (f.qkv_bias_always) c.attention_bias = true;
  MOEQ_ASSIGN_OR_RETURN(c.rope_theta, r.Number("rope_theta", 10000.0));
  MOEQ_ASSIGN_OR_RETURN(c.rms_norm_eps, r.Number("rms_norm_eps", 1e-6));
  MOEQ_ASSIGN_OR_RETURN(c.max_position_embeddings, r.Int("max_position_embeddings", 0));
  MOEQ_RETURN_IF_ERROR(RequireRange(r, "max_position_embeddings", c.max_position_embeddings, 0,
                                    limits::kMaxPositions));
  c.raw = json;
  return c;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

}  // namespace moeq
