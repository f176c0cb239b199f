// Checkpoint::OpenGguf: a GGUF file (as WriteGguf writes it, docs/gguf.md) presented as the
// Hugging Face checkpoint it came from, so that everything reading a Checkpoint through
// tensors()/ReadF32 (the engine, moeq-eval) runs on it unchanged:
//   - config.json is rebuilt from the architecture metadata (<arch>.block_count, ...,
//     expert counts, which layers have a router, biases, tied embeddings);
//   - each GGUF tensor becomes the HF tensor it was written from (ne reversed = HF shape);
//     a layer's experts stay one fused [experts, out, in] tensor, named like mlx-lm's stacked
//     switch_mlp tensor, which the architecture adapters and the engine already understand;
//   - ReadF32 decodes the ggml blocks (DequantizeGgmlRow, exact) and undoes llama.cpp's q/k
//     rotary permutation for the `llama` architecture (Mixtral, Llama); View maps F32/F16/BF16
//     tensors in place and serves the others as float32 decoded once and kept.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "checkpoint/checkpoint_internal.h"
#include "moeq/base/file_util.h"
#include "moeq/base/parallel.h"
#include "moeq/model/family.h"
#include "moeq/model/mlx_names.h"

namespace moeq {
namespace checkpoint_internal {

bool IsGgufPath(std::string_view path) {
  if (path.size() < 5) return false;
  std::string ext(path.substr(path.size() - 5));
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".gguf";
}

namespace {

namespace fs = std::filesystem;

struct RoleEntry {
  std::string_view base;
  TensorRole weight;
  TensorRole bias;  // kUnknown when the GGUF tensor has no bias form
};

/// llama.cpp tensor base names → roles (the inverse of the writer's RoleBaseName).
constexpr RoleEntry kRoles[] = {
    {"token_embd", TensorRole::kEmbedding, TensorRole::kUnknown},
    {"output", TensorRole::kLmHead, TensorRole::kUnknown},
    {"output_norm", TensorRole::kFinalNorm, TensorRole::kUnknown},
    {"attn_norm", TensorRole::kInputNorm, TensorRole::kUnknown},
    {"ffn_norm", TensorRole::kPostAttnNorm, TensorRole::kUnknown},
    {"attn_q", TensorRole::kAttnQ, TensorRole::kAttnQBias},
    {"attn_k", TensorRole::kAttnK, TensorRole::kAttnKBias},
    {"attn_v", TensorRole::kAttnV, TensorRole::kAttnVBias},
    {"attn_output", TensorRole::kAttnO, TensorRole::kAttnOBias},
    {"attn_q_norm", TensorRole::kAttnQNorm, TensorRole::kUnknown},
    {"attn_k_norm", TensorRole::kAttnKNorm, TensorRole::kUnknown},
    {"ffn_gate_inp", TensorRole::kRouter, TensorRole::kUnknown},
    {"ffn_gate_exps", TensorRole::kExpertGate, TensorRole::kUnknown},
    {"ffn_up_exps", TensorRole::kExpertUp, TensorRole::kUnknown},
    {"ffn_down_exps", TensorRole::kExpertDown, TensorRole::kUnknown},
    {"ffn_gate_shexp", TensorRole::kSharedGate, TensorRole::kUnknown},
    {"ffn_up_shexp", TensorRole::kSharedUp, TensorRole::kUnknown},
    {"ffn_down_shexp", TensorRole::kSharedDown, TensorRole::kUnknown},
    {"ffn_gate_inp_shexp", TensorRole::kSharedExpertGate, TensorRole::kUnknown},
    {"ffn_gate", TensorRole::kMlpGate, TensorRole::kUnknown},
    {"ffn_up", TensorRole::kMlpUp, TensorRole::kUnknown},
    {"ffn_down", TensorRole::kMlpDown, TensorRole::kUnknown},
};

/// Parses "blk.N.base.weight" / "base.bias" into (layer, role); nullopt when not recognised.
std::optional<TensorId> ParseGgufName(std::string_view name) {
  int layer = -1;
  std::string_view rest = name;
  if (rest.substr(0, 4) == "blk.") {
    rest.remove_prefix(4);
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos || dot == 0) return std::nullopt;
    layer = 0;
    for (char c : rest.substr(0, dot)) {
      if (c < '0' || c > '9') return std::nullopt;
      layer = layer * 10 + (c - '0');
    }
    rest.remove_prefix(dot + 1);
  }
  bool bias = false;
  if (rest.size() > 7 && rest.substr(rest.size() - 7) == ".weight") {
    rest.remove_suffix(7);
  } else if (rest.size() > 5 && rest.substr(rest.size() - 5) == ".bias") {
    rest.remove_suffix(5);
    bias = true;
  } else {
    return std::nullopt;
  }
  for (const RoleEntry& r : kRoles) {
    if (r.base != rest) continue;
    const TensorRole role = bias ? r.bias : r.weight;
    if (role == TensorRole::kUnknown) return std::nullopt;
    const bool model_level = role == TensorRole::kEmbedding || role == TensorRole::kLmHead ||
                             role == TensorRole::kFinalNorm;
    if (model_level != (layer < 0)) return std::nullopt;
    return TensorId{layer, -1, role};
  }
  return std::nullopt;
}

/// Typed access to the metadata, with errors naming the file and the key.
class Meta {
 public:
  Meta(const GgufFile& f) : f_(f) {}
  bool Has(const std::string& key) const { return f_.Find(key) != nullptr; }
  Result<int64_t> Int(const std::string& key) const {
    const GgufValue* v = f_.Find(key);
    if (!v) return Status::Corruption(f_.path() + ": missing metadata key '" + key + "'");
    if (!v->value.is_number_integer()) {
      return Status::Corruption(f_.path() + ": metadata key '" + key + "' is not an integer");
    }
    return v->value.get<int64_t>();
  }
  int64_t IntOr(const std::string& key, int64_t fallback) const {
    const GgufValue* v = f_.Find(key);
    return v && v->value.is_number_integer() ? v->value.get<int64_t>() : fallback;
  }
  double NumberOr(const std::string& key, double fallback) const {
    const GgufValue* v = f_.Find(key);
    return v && v->value.is_number() ? v->value.get<double>() : fallback;
  }
  std::optional<bool> Bool(const std::string& key) const {
    const GgufValue* v = f_.Find(key);
    if (v && v->value.is_boolean()) return v->value.get<bool>();
    return std::nullopt;
  }
  Result<std::string> String(const std::string& key) const {
    const GgufValue* v = f_.Find(key);
    if (!v) return Status::Corruption(f_.path() + ": missing metadata key '" + key + "'");
    if (!v->value.is_string())
      return Status::Corruption(f_.path() + ": metadata key '" + key + "' is not a string");
    return v->value.get<std::string>();
  }

 private:
  const GgufFile& f_;
};

/// The HF model_type of a GGUF architecture (the inverse of GgufArchitecture).
Result<std::string> ModelTypeOf(const GgufFile& f, const std::string& arch, bool moe) {
  if (const FamilyTraits* family = FindFamilyByGgufArch(arch, moe)) {
    return std::string(family->model_type);
  }
  return Status::Unsupported(
      f.path() + ": general.architecture '" + arch +
      "' (moeq reads qwen3moe, qwen2moe, llama (Mixtral, Llama), olmoe, qwen2, qwen3)");
}

/// config.json rebuilt from the architecture metadata and the tensor table.
Result<nlohmann::json> RebuildConfig(const GgufFile& f, std::string* arch_out) {
  const Meta m(f);
  MOEQ_ASSIGN_OR_RETURN(const std::string arch, m.String("general.architecture"));
  *arch_out = arch;
  const std::string a = arch + ".";
  const int64_t experts = m.IntOr(a + "expert_count", 0);
  MOEQ_ASSIGN_OR_RETURN(const std::string model_type, ModelTypeOf(f, arch, experts > 0));
  MOEQ_ASSIGN_OR_RETURN(const int64_t layers, m.Int(a + "block_count"));
  MOEQ_ASSIGN_OR_RETURN(const int64_t hidden, m.Int(a + "embedding_length"));
  MOEQ_ASSIGN_OR_RETURN(const int64_t heads, m.Int(a + "attention.head_count"));
  const int64_t kv_heads = m.IntOr(a + "attention.head_count_kv", heads);
  const int64_t head_dim = m.IntOr(a + "attention.key_length", heads > 0 ? hidden / heads : 0);
  const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
  if (!embd || embd->ne.size() != 2)
    return Status::Corruption(f.path() + ": no 2-D tensor 'token_embd.weight'");
  const int64_t vocab = embd->ne[1];
  const int64_t ff = m.IntOr(a + "feed_forward_length", 0);

  nlohmann::json c = {
      {"model_type", model_type},
      {"hidden_size", hidden},
      {"num_hidden_layers", layers},
      {"num_attention_heads", heads},
      {"num_key_value_heads", kv_heads},
      {"head_dim", head_dim},
      {"vocab_size", vocab},
      {"hidden_act", "silu"},
      {"rms_norm_eps", m.NumberOr(a + "attention.layer_norm_rms_epsilon", 1e-6)},
      {"rope_theta", m.NumberOr(a + "rope.freq_base", 10000.0)},
      {"max_position_embeddings", m.IntOr(a + "context_length", 4096)},
      {"tie_word_embeddings", f.FindTensor("output.weight") == nullptr},
      {"torch_dtype", "float32"},
      {"moeq_gguf", {{"file", fs::path(f.path()).filename().string()}, {"architecture", arch}}},
  };
  if (auto id = m.IntOr("tokenizer.ggml.bos_token_id", -1); id >= 0) c["bos_token_id"] = id;
  if (auto id = m.IntOr("tokenizer.ggml.eos_token_id", -1); id >= 0) c["eos_token_id"] = id;
  const bool q_bias = f.FindTensor("blk.0.attn_q.bias") != nullptr;
  nlohmann::json mlp_only = nlohmann::json::array();
  for (int64_t l = 0; l < layers; ++l) {
    if (f.FindTensor("blk." + std::to_string(l) + ".ffn_gate_inp.weight") == nullptr)
      mlp_only.push_back(l);
  }
  // llama.cpp's own switch (expert_weights_norm) wins; otherwise its per-architecture default:
  // qwen3moe and llama (Mixtral) renormalise the top-k weights, qwen2moe and olmoe do not.
  auto norm_topk = [&](bool fallback) {
    return m.Bool(a + "expert_weights_norm").value_or(fallback);
  };
  const FamilyTraits& family = *FindFamily(model_type);
  if (model_type == "qwen3_moe" || model_type == "qwen2_moe") {
    MOEQ_ASSIGN_OR_RETURN(const int64_t moe_ff, m.Int(a + "expert_feed_forward_length"));
    c["intermediate_size"] = ff > 0 ? ff : moe_ff;
    c["moe_intermediate_size"] = moe_ff;
    c["num_experts"] = experts;
    MOEQ_ASSIGN_OR_RETURN(c["num_experts_per_tok"], m.Int(a + "expert_used_count"));
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = mlp_only;
    if (model_type == "qwen2_moe") {
      c["shared_expert_intermediate_size"] = m.IntOr(a + "expert_shared_feed_forward_length", 0);
      c["norm_topk_prob"] = norm_topk(family.gguf_norm_topk_default);
    } else {
      c["attention_bias"] = q_bias;
      c["norm_topk_prob"] = norm_topk(family.gguf_norm_topk_default);
    }
  } else if (model_type == "mixtral" || model_type == "olmoe") {
    c["intermediate_size"] = m.IntOr(a + "expert_feed_forward_length", ff);
    c[model_type == "mixtral" ? "num_local_experts" : "num_experts"] = experts;
    MOEQ_ASSIGN_OR_RETURN(c["num_experts_per_tok"], m.Int(a + "expert_used_count"));
    if (model_type == "olmoe") {
      c["attention_bias"] = q_bias;
      c["norm_topk_prob"] = norm_topk(family.gguf_norm_topk_default);
      c["clip_qkv"] = nullptr;
    }
  } else {
    c["intermediate_size"] = ff;
    if (model_type != "qwen2") c["attention_bias"] = q_bias;
  }
  return c;
}

/// Undoes llama.cpp's q/k rotary permutation (the writer's PermuteRows): within each head of
/// d rows, row 2j+i goes back to i*(d/2)+j.
void UnpermuteRows(std::vector<float>* data, int64_t rows, int64_t cols, int64_t heads) {
  std::vector<float> in = *data;
  const int64_t d = rows / heads, half = d / 2;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        const int64_t orig = h * d + i * half + j, stored = h * d + j * 2 + i;
        std::memcpy(data->data() + orig * cols, in.data() + stored * cols,
                    static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }
}

DType PresentedDType(GgmlType t) {
  switch (t) {
    case GgmlType::kBF16:
      return DType::kBF16;
    case GgmlType::kF16:
      return DType::kF16;
    default:
      return DType::kF32;
  }
}

}  // namespace

Status ReadGgufF32(const GgufBacking& backing, const CheckpointTensor& t, const std::string& path,
                   std::vector<float>* out) {
  auto it = backing.sources.find(t.info.name);
  if (it == backing.sources.end())
    return Status::Internal(path + ": no GGUF source for tensor '" + t.info.name + "'");
  const GgufSource& src = it->second;
  const GgufFile& f = *backing.file;
  const GgufTensorInfo* info = f.FindTensor(src.gguf_name);
  if (!info) return Status::Internal(path + ": GGUF tensor '" + src.gguf_name + "' vanished");
  MOEQ_ASSIGN_OR_RETURN(const auto data, f.TensorData(src.gguf_name));
  const int64_t n = info->numel();
  out->resize(static_cast<size_t>(n));
  if (n == 0) return Status::Ok();
  const int64_t cols = info->ne[0], rows = n / cols;
  const uint64_t row_bytes = info->nbytes / static_cast<uint64_t>(rows);
  std::vector<Status> errors(static_cast<size_t>(rows));
  ParallelFor(
      rows,
      [&](int64_t r) {
        errors[static_cast<size_t>(r)] =
            DequantizeGgmlRow(info->type, data.data() + static_cast<uint64_t>(r) * row_bytes, cols,
                              out->data() + r * cols);
      },
      0, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)));
  for (const Status& s : errors) {
    if (!s.ok())
      return s.WithContext(path + ": tensor '" + src.gguf_name + "' (" + GgmlTypeName(info->type) +
                           ")");
  }
  if (src.permute_heads > 0) {
    const int64_t prows = n / src.permute_cols;
    if (prows % (2 * src.permute_heads) != 0) {
      return Status::Corruption(path + ": tensor '" + src.gguf_name +
                                "': " + std::to_string(prows) + " rows do not split into " +
                                std::to_string(src.permute_heads) + " heads of even size");
    }
    UnpermuteRows(out, prows, src.permute_cols, src.permute_heads);
  }
  return Status::Ok();
}

Result<TensorView> GgufView(const GgufBacking& backing, const CheckpointTensor& t,
                            const std::string& path) {
  auto it = backing.sources.find(t.info.name);
  if (it == backing.sources.end())
    return Status::Internal(path + ": no GGUF source for tensor '" + t.info.name + "'");
  const GgufTensorInfo* info = backing.file->FindTensor(it->second.gguf_name);
  if (!info)
    return Status::Internal(path + ": GGUF tensor '" + it->second.gguf_name + "' vanished");
  const bool float_type =
      info->type == GgmlType::kF32 || info->type == GgmlType::kF16 || info->type == GgmlType::kBF16;
  if (float_type && it->second.permute_heads == 0 && PresentedDType(info->type) == t.info.dtype) {
    MOEQ_ASSIGN_OR_RETURN(const auto data, backing.file->TensorData(info->name));
    return TensorView{&t.info, data};
  }
  std::lock_guard<std::mutex> lock(backing.mu);
  auto& slot = backing.decoded[t.info.name];
  if (!slot) {
    auto buf = std::make_unique<std::vector<float>>();
    MOEQ_RETURN_IF_ERROR(ReadGgufF32(backing, t, path, buf.get()));
    slot = std::move(buf);
  }
  return TensorView{&t.info, std::as_bytes(std::span<const float>(*slot))};
}

}  // namespace checkpoint_internal

std::string Checkpoint::GgufStorageType(std::string_view name) const {
  if (!gguf_) return "";
  auto it = gguf_->sources.find(name);
  if (it == gguf_->sources.end()) return "";
  const GgufTensorInfo* info = gguf_->file->FindTensor(it->second.gguf_name);
  return info ? GgmlTypeName(info->type) : "";
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::OpenGguf(const std::string& path,
                                                         const CheckpointOptions& options) {
  using checkpoint_internal::GgufSource;
  MOEQ_ASSIGN_OR_RETURN(auto file, GgufFile::Open(path));
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = path;
  std::string arch;
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json config_json,
                        checkpoint_internal::RebuildConfig(*file, &arch));
  MOEQ_ASSIGN_OR_RETURN(ckpt->config_,
                        ParseModelConfig(config_json, path + " (config from GGUF metadata)"));
  {
    auto adapter = MakeArchAdapter(ckpt->config_);
    if (!adapter.ok()) return adapter.status().WithContext(path);
    ckpt->adapter_ = std::move(adapter).value();
  }
  const ModelConfig& cfg = ckpt->config_;
  const FamilyTraits* family = FindFamily(cfg.model_type);
  const bool rope_permute = family != nullptr && family->gguf_rope_permute;
  auto backing = std::make_unique<checkpoint_internal::GgufBacking>();
  std::vector<std::string> unknown;
  std::string table;  // for the fingerprint
  for (const GgufTensorInfo& gt : file->tensors()) {
    table += gt.name + ":" + GgmlTypeName(gt.type) + ":";
    for (int64_t d : gt.ne) table += std::to_string(d) + ",";
    table += std::to_string(gt.offset) + "\n";
    auto id = checkpoint_internal::ParseGgufName(gt.name);
    if (!id) {
      unknown.push_back(gt.name);
      continue;
    }
    CheckpointTensor t;
    t.id = *id;
    t.shard = 0;
    t.info.dtype = checkpoint_internal::PresentedDType(gt.type);
    t.info.shape.assign(gt.ne.rbegin(), gt.ne.rend());
    GgufSource src;
    src.gguf_name = gt.name;
    if (IsExpertRole(id->role)) {
      auto module = MlxStackedModule(*ckpt->adapter_, id->layer, id->role);
      if (!module.ok()) return module.status().WithContext(path + ": tensor '" + gt.name + "'");
      t.info.name = *module + ".weight";
      t.fused_experts = true;
    } else {
      t.info.name = ckpt->adapter_->Name(*id);
      if (t.info.name.empty()) {
        unknown.push_back(gt.name);
        continue;
      }
      if (id->role == TensorRole::kSharedExpertGate) t.info.shape = {1, gt.ne[0]};  // {H} -> [1, H]
      const TensorRole r = id->role;
      if (rope_permute && (r == TensorRole::kAttnQ || r == TensorRole::kAttnQBias)) {
        src.permute_heads = cfg.num_heads;
      } else if (rope_permute && (r == TensorRole::kAttnK || r == TensorRole::kAttnKBias)) {
        src.permute_heads = cfg.num_kv_heads > 0 ? cfg.num_kv_heads : cfg.num_heads;
      }
      if (src.permute_heads > 0) t.info.dtype = DType::kF32;  // View decodes it (rows reordered)
      src.permute_cols =
          (r == TensorRole::kAttnQBias || r == TensorRole::kAttnKBias) ? 1 : gt.ne[0];
    }
    // The adapter must recognise the name it produced (and agree on the identity).
    auto classified = ckpt->adapter_->Classify(t.info.name);
    if (!classified || classified->id.role != t.id.role || classified->id.layer != t.id.layer) {
      if (!t.fused_experts) {
        return Status::Internal(path + ": tensor '" + gt.name + "' presented as '" + t.info.name +
                                "', which the " + cfg.model_type +
                                " adapter does not classify back");
      }
    }
    backing->sources.emplace(t.info.name, std::move(src));
    ckpt->tensors_.push_back(std::move(t));
  }
  std::sort(unknown.begin(), unknown.end());
  if (!unknown.empty()) {
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 10; ++i)
      list += (i ? ", '" : "'") + unknown[i] + "'";
    const std::string what = std::to_string(unknown.size()) +
                             " GGUF tensors not recognised for architecture '" + arch +
                             "': " + list;
    if (options.strict) return Status::Unsupported(path + ": " + what);
    spdlog::warn("{}: {} (ignored)", path, what);
  }
  const std::vector<std::string> files = {std::filesystem::path(path).filename().string()};
  MOEQ_RETURN_IF_ERROR(
      checkpoint_internal::CheckAgainstConfig(path, cfg, *ckpt->adapter_, ckpt->tensors_, files));
  std::sort(ckpt->tensors_.begin(), ckpt->tensors_.end(),
            [](const CheckpointTensor& a, const CheckpointTensor& b) {
              if (a.id == b.id) return a.info.name < b.info.name;
              return a.id < b.id;
            });
  for (size_t i = 0; i < ckpt->tensors_.size(); ++i)
    ckpt->by_name_.emplace(ckpt->tensors_[i].info.name, i);
  ckpt->fingerprint_ = Sha256Hex(std::string_view(DumpJson(config_json) + table));
  backing->file = std::move(file);
  ckpt->gguf_ = std::move(backing);
  if (options.check_finite) {
    std::vector<float> buf;
    for (const auto& t : ckpt->tensors_) {
      MOEQ_RETURN_IF_ERROR(ckpt->ReadF32(t.info.name, &buf));
      for (size_t i = 0; i < buf.size(); ++i) {
        if (!std::isfinite(buf[i])) {
          return Status::Corruption(path + ": tensor '" + t.info.name +
                                    "' has a non-finite value at element " + std::to_string(i));
        }
      }
    }
  }
  return ckpt;
}

}  // namespace moeq
