// Synthetic checkpoints: config.json per family, tensor list from the architecture adapter,
// deterministic values from (seed, tensor name), written with SafetensorsWriter.
#include "testing/synthetic_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "moeq/base/file_util.h"
#include "moeq/base/half.h"
#include "moeq/formats/safetensors.h"
#include "moeq/model/arch.h"
#include "moeq/model/model_config.h"

namespace moeq::test {
namespace {

/// HF "architectures" entry of each family.
struct FamilyName {
  std::string_view model_type;
  std::string_view architecture;
};
constexpr FamilyName kArchitectures[] = {
    {"deepseek_v2", "DeepseekV2ForCausalLM"},
    {"deepseek_v3", "DeepseekV3ForCausalLM"},
    {"llama", "LlamaForCausalLM"},
    {"mixtral", "MixtralForCausalLM"},
    {"olmoe", "OlmoeForCausalLM"},
    {"qwen2", "Qwen2ForCausalLM"},
    {"qwen2_moe", "Qwen2MoeForCausalLM"},
    {"qwen3", "Qwen3ForCausalLM"},
    {"qwen3_moe", "Qwen3MoeForCausalLM"},
};

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool EndsWith(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

std::string_view TorchDtype(DType dtype) {
  switch (dtype) {
    case DType::kF16:
      return "float16";
    case DType::kF32:
      return "float32";
    default:
      return "bfloat16";
  }
}

void AppendElements(const std::vector<float>& values, DType dtype, std::vector<std::byte>& out) {
  const size_t es = DTypeSize(dtype);
  const size_t base = out.size();
  out.resize(base + values.size() * es);
  std::byte* p = out.data() + base;
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(p + i * 4, &values[i], 4);
    } else {
      const uint16_t h = dtype == DType::kF16 ? F32ToF16(values[i]) : F32ToBf16(values[i]);
      std::memcpy(p + i * 2, &h, 2);
    }
  }
}

struct PlannedTensor {
  TensorInfo info;
  /// Per-expert tensors stacked into a fused tensor; empty otherwise.
  struct Part {
    int expert;
    std::string name;
    int64_t numel;
  };
  std::vector<Part> parts;
};

std::string ShardName(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

}  // namespace

nlohmann::json SyntheticConfig(const SyntheticCheckpointOptions& o) {
  using nlohmann::json;
  std::string_view arch = "UnknownForCausalLM";
  for (const auto& f : kArchitectures) {
    if (f.model_type == o.model_type) arch = f.architecture;
  }
  const int head_dim = o.heads > 0 ? o.hidden / o.heads : 0;
  json c = {
      {"architectures", json::array({std::string(arch)})},
      {"model_type", o.model_type},
      {"hidden_size", o.hidden},
      {"num_hidden_layers", o.layers},
      {"num_attention_heads", o.heads},
      {"num_key_value_heads", o.kv_heads},
      {"vocab_size", o.vocab},
      {"hidden_act", "silu"},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 10000.0},
      {"max_position_embeddings", 256},
      {"tie_word_embeddings", o.tie_word_embeddings},
      {"torch_dtype", std::string(TorchDtype(o.dtype))},
      {"bos_token_id", 0},
      {"eos_token_id", 1},
  };
  json mlp_only = json::array();
  for (int l = 0; l < o.dense_layers; ++l) mlp_only.push_back(l);
  const std::string& t = o.model_type;
  if (t == "llama" || t == "qwen2" || t == "qwen3") {
    c["intermediate_size"] = o.dense_ff;
    if (t != "qwen2") c["attention_bias"] = o.attention_bias;
    if (t == "qwen3") c["head_dim"] = head_dim;
  } else if (t == "mixtral" || t == "olmoe") {
    c["intermediate_size"] = o.moe_ff;
    c[t == "mixtral" ? "num_local_experts" : "num_experts"] = o.experts;
    c["num_experts_per_tok"] = o.top_k;
    if (t == "mixtral") c["head_dim"] = head_dim;
    if (t == "olmoe") {
      c["attention_bias"] = o.attention_bias;
      c["norm_topk_prob"] = false;
      c["clip_qkv"] = nullptr;
    }
  } else if (t == "qwen2_moe" || t == "qwen3_moe") {
    c["intermediate_size"] = o.dense_ff;
    c["moe_intermediate_size"] = o.moe_ff;
    c["num_experts"] = o.experts;
    c["num_experts_per_tok"] = o.top_k;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = mlp_only;
    if (t == "qwen2_moe") {
      c["shared_expert_intermediate_size"] = o.shared_experts * o.moe_ff;
      c["norm_topk_prob"] = false;
    } else {
      c["attention_bias"] = o.attention_bias;
      c["head_dim"] = head_dim;
      c["norm_topk_prob"] = true;
    }
  } else if (t == "deepseek_v2" || t == "deepseek_v3") {
    const bool v3 = t == "deepseek_v3";
    c["intermediate_size"] = o.dense_ff;
    c["moe_intermediate_size"] = o.moe_ff;
    c["n_routed_experts"] = o.experts;
    c["n_shared_experts"] = o.shared_experts;
    c["num_experts_per_tok"] = o.top_k;
    c["first_k_dense_replace"] = o.dense_layers;
    c["moe_layer_freq"] = 1;
    c["q_lora_rank"] = v3 ? json(o.hidden / 2) : json(nullptr);
    c["kv_lora_rank"] = o.hidden / 2;
    c["qk_nope_head_dim"] = head_dim;
    c["qk_rope_head_dim"] = std::max(2, head_dim / 2);
    c["v_head_dim"] = head_dim;
    c["topk_method"] = v3 ? "noaux_tc" : "greedy";
    c["scoring_func"] = v3 ? "sigmoid" : "softmax";
    c["n_group"] = 1;
    c["topk_group"] = 1;
    c["routed_scaling_factor"] = 1.0;
    c["norm_topk_prob"] = v3;
    c["attention_bias"] = false;
  }
  if (!o.config_patch.is_null()) c.merge_patch(o.config_patch);
  return c;
}

std::vector<float> SyntheticValues(const SyntheticCheckpointOptions& o, const std::string& name,
                                   int64_t numel) {
  uint64_t state = o.seed * 0x2545f4914f6cdd1dULL ^ Fnv1a(name);
  // Norm weights near 1, biases small, matrices ~ U(-1, 1) / sqrt(fan_in) (fan_in ~ hidden).
  float offset = 0.0f, scale = 1.0f / std::sqrt(static_cast<float>(std::max(1, o.hidden)));
  if (EndsWith(name, "norm.weight") || EndsWith(name, "layernorm.weight")) {
    offset = 1.0f;
    scale = 0.05f;
  } else if (EndsWith(name, ".bias") || EndsWith(name, "e_score_correction_bias")) {
    scale = 0.02f;
  }
  std::vector<float> v(static_cast<size_t>(std::max<int64_t>(0, numel)));
  for (float& x : v) {
    const double u = static_cast<double>(SplitMix64(state) >> 11) * 0x1.0p-53;  // [0, 1)
    x = offset + scale * static_cast<float>(2.0 * u - 1.0);
  }
  return v;
}

Result<SyntheticCheckpoint> WriteSyntheticCheckpoint(const std::string& dir,
                                                     const SyntheticCheckpointOptions& o) {
  if (o.dtype != DType::kBF16 && o.dtype != DType::kF16 && o.dtype != DType::kF32) {
    return Status::InvalidArgument("synthetic checkpoint: dtype must be BF16, F16 or F32");
  }
  if (o.shards < 1) return Status::InvalidArgument("synthetic checkpoint: shards must be >= 1");
  SyntheticCheckpoint out;
  out.config = SyntheticConfig(o);
  // The adapter lists the tensors, so the generator cannot drift from what Checkpoint expects.
  // A config broken on purpose (config_patch) is described by the unpatched one.
  SyntheticCheckpointOptions clean = o;
  clean.config_patch = nullptr;
  MOEQ_ASSIGN_OR_RETURN(ModelConfig config,
                        ParseModelConfig(SyntheticConfig(clean), "synthetic config.json"));
  MOEQ_ASSIGN_OR_RETURN(auto adapter, MakeArchAdapter(config));

  std::vector<PlannedTensor> plan;
  std::map<std::pair<int, TensorRole>, size_t> fused_index;  // (layer, fused role) → plan index
  for (const auto& [id, shape] : adapter->ExpectedTensors()) {
    const std::string name = adapter->Name(id);
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    if (o.fused_experts && id.expert >= 0 && IsExpertRole(id.role)) {
      const bool gate_or_up =
          id.role == TensorRole::kExpertGate || id.role == TensorRole::kExpertUp;
      const TensorRole fused_role = gate_or_up ? TensorRole::kExpertGateUp : id.role;
      auto [it, inserted] = fused_index.emplace(std::pair(id.layer, fused_role), plan.size());
      if (inserted) {
        PlannedTensor t;
        t.info.name = adapter->Name(TensorId{id.layer, -1, fused_role});
        t.info.dtype = o.dtype;
        t.info.shape = {config.num_experts, gate_or_up ? 2 * shape[0] : shape[0], shape[1]};
        plan.push_back(std::move(t));
      }
      plan[it->second].parts.push_back({id.expert, name, numel});
      continue;
    }
    plan.push_back(PlannedTensor{TensorInfo{name, o.dtype, shape}, {}});
  }
  // gate_up holds, per expert, the gate rows then the up rows; ExpectedTensors is sorted by
  // (layer, role, expert), so order the parts by expert, gate before up.
  for (auto& t : plan) {
    std::stable_sort(t.parts.begin(), t.parts.end(),
                     [](const auto& a, const auto& b) { return a.expert < b.expert; });
  }
  for (const auto& [name, shape] : o.extra_tensors) {
    plan.push_back(PlannedTensor{TensorInfo{name, o.dtype, shape}, {}});
  }
  plan.erase(std::remove_if(plan.begin(), plan.end(),
                            [&](const PlannedTensor& t) {
                              return std::find(o.drop_tensors.begin(), o.drop_tensors.end(),
                                               t.info.name) != o.drop_tensors.end();
                            }),
             plan.end());
  for (auto& t : plan) {
    auto it = o.shape_overrides.find(t.info.name);
    if (it != o.shape_overrides.end()) {
      t.info.shape = it->second;
      t.parts.clear();
    }
  }
  std::sort(plan.begin(), plan.end(),
            [](const auto& a, const auto& b) { return a.info.name < b.info.name; });

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Io(dir + ": cannot create directory: " + ec.message());

  const int n_shards = std::min<int>(o.shards, static_cast<int>(std::max<size_t>(1, plan.size())));
  const size_t per_shard =
      (plan.size() + static_cast<size_t>(n_shards) - 1) / static_cast<size_t>(n_shards);
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total_size = 0;
  for (int s = 0; s < n_shards; ++s) {
    const size_t begin = static_cast<size_t>(s) * per_shard;
    const size_t end = std::min(plan.size(), begin + per_shard);
    const std::string file = n_shards == 1 ? "model.safetensors" : ShardName(s, n_shards);
    std::vector<TensorInfo> infos;
    for (size_t i = begin; i < end; ++i) infos.push_back(plan[i].info);
    MOEQ_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(dir + "/" + file, infos));
    for (size_t i = begin; i < end; ++i) {
      const PlannedTensor& t = plan[i];
      std::vector<std::byte> bytes;
      if (t.parts.empty()) {
        AppendElements(SyntheticValues(o, t.info.name, t.info.numel()), o.dtype, bytes);
      } else {
        for (const auto& part : t.parts) {
          AppendElements(SyntheticValues(o, part.name, part.numel), o.dtype, bytes);
        }
      }
      MOEQ_RETURN_IF_ERROR(writer->Write(t.info.name, bytes));
      weight_map[t.info.name] = file;
      total_size += t.info.nbytes();
      out.parameters += t.info.numel();
      out.tensors.push_back(t.info);
    }
    MOEQ_RETURN_IF_ERROR(writer->Finish());
    out.shard_files.push_back(file);
  }
  if (n_shards > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total_size}}},
                                  {"weight_map", weight_map}};
    MOEQ_RETURN_IF_ERROR(WriteFileAtomic(dir + "/model.safetensors.index.json", DumpJson(index)));
  }
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.json", DumpJson(out.config)));
  if (o.tokenizer) {
    const nlohmann::json tokenizer = {{"version", "1.0"},
                                      {"added_tokens", nlohmann::json::array()},
                                      {"model",
                                       {{"type", "BPE"},
                                        {"vocab", nlohmann::json::object()},
                                        {"merges", nlohmann::json::array()}}}};
    MOEQ_RETURN_IF_ERROR(WriteFileAtomic(dir + "/tokenizer.json", DumpJson(tokenizer)));
  }
  return out;
}

}  // namespace moeq::test
