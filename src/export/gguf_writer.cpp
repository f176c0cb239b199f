// WriteGguf: one GGUF v3 file for llama.cpp from a checkpoint and a quantization plan.
//
// Tensors are planned first (GGUF names, ne, ggml types, the checkpoint slices that make them
// up), so the header with every offset is written before any data; then each tensor is converted
// to float32 slice by slice, encoded in parallel over rows and appended, padded to 32 bytes.
// The file is written through an AtomicFile (unique temporary, fsync, rename).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "export/gguf_internal.h"
#include "moeq/base/atomic_file.h"
#include "moeq/base/build_info.h"
#include "moeq/base/parallel.h"
#include "moeq/base/progress.h"
#include "moeq/model/family.h"
#include "moeq/quant/gguf_encoders.h"
#include "moeq/quant/input_stats.h"

namespace moeq {

using gguf_internal::KvList;

namespace {

/// A slice of a checkpoint tensor: `rows` rows of `cols` elements starting at element `first`.
/// Empty `source` = zeros (pruned expert).
struct Part {
  std::string source;
  int64_t first = 0;
  int64_t rows = 0;
  /// llama/mixtral q/k rotary permutation with this many heads (0 = none).
  int64_t permute_heads = 0;
  /// Elements per permuted row: the row length for weights, 1 for biases.
  int64_t permute_cols = 0;
  /// Name of the statistics of this part's input ("" = `source`): the per-expert weight name
  /// for a slice of a fused expert tensor.
  std::string stats_name;
};

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> ne;
  GgmlType type = GgmlType::kF32;
  int64_t cols = 0;  // ne[0]
  std::vector<Part> parts;
  uint64_t bytes = 0;
  uint64_t offset = 0;
  std::string plan_format;
  std::string note;
  int sources = 1;
  DType source = DType::kBF16;  // source dtype of the (first) checkpoint tensor
  bool forced = false;          // stored F32 whatever the plan says (ForcedF32 or 1-D)
};

/// GGUF base name of a non-expert role; "" when the role is not written.
std::string RoleBaseName(TensorRole r) {
  switch (r) {
    case TensorRole::kEmbedding:
      return "token_embd";
    case TensorRole::kLmHead:
      return "output";
    case TensorRole::kFinalNorm:
      return "output_norm";
    case TensorRole::kInputNorm:
      return "attn_norm";
    case TensorRole::kPostAttnNorm:
      return "ffn_norm";
    case TensorRole::kAttnQ:
    case TensorRole::kAttnQBias:
      return "attn_q";
    case TensorRole::kAttnK:
    case TensorRole::kAttnKBias:
      return "attn_k";
    case TensorRole::kAttnV:
    case TensorRole::kAttnVBias:
      return "attn_v";
    case TensorRole::kAttnO:
    case TensorRole::kAttnOBias:
      return "attn_output";
    case TensorRole::kAttnQNorm:
      return "attn_q_norm";
    case TensorRole::kAttnKNorm:
      return "attn_k_norm";
    case TensorRole::kRouter:
      return "ffn_gate_inp";
    case TensorRole::kExpertGate:
      return "ffn_gate_exps";
    case TensorRole::kExpertUp:
      return "ffn_up_exps";
    case TensorRole::kExpertDown:
      return "ffn_down_exps";
    case TensorRole::kSharedGate:
      return "ffn_gate_shexp";
    case TensorRole::kSharedUp:
      return "ffn_up_shexp";
    case TensorRole::kSharedDown:
      return "ffn_down_shexp";
    case TensorRole::kSharedExpertGate:
      return "ffn_gate_inp_shexp";
    case TensorRole::kMlpGate:
      return "ffn_gate";
    case TensorRole::kMlpUp:
      return "ffn_up";
    case TensorRole::kMlpDown:
      return "ffn_down";
    default:
      return "";
  }
}

bool IsBiasRole(TensorRole r) {
  return r == TensorRole::kAttnQBias || r == TensorRole::kAttnKBias ||
         r == TensorRole::kAttnVBias || r == TensorRole::kAttnOBias;
}

std::string GgufName(const TensorId& id, TensorRole role) {
  std::string base = RoleBaseName(role);
  std::string suffix = IsBiasRole(role) ? ".bias" : ".weight";
  if (id.layer < 0) return base + suffix;
  return "blk." + std::to_string(id.layer) + "." + base + suffix;
}

/// Roles stored as F32 whatever the plan says (docs/formats.md §3.4: norms, router, shared gate,
/// 1-D).
bool ForcedF32(TensorRole r) {
  return IsNormRole(r) || IsBiasRole(r) || r == TensorRole::kRouter ||
         r == TensorRole::kSharedExpertGate;
}

/// Precision rank of a plan format for expert merging: float above affine, more bits above
/// fewer, smaller groups above larger. nullptr (keep the source dtype) ranks as float.
int64_t FormatRank(const quant::FormatTraits* f, DType source) {
  if (f == nullptr) return 1000 + static_cast<int64_t>(DTypeSize(source)) * 8;
  if (!f->is_affine()) return 1000 + f->bits;
  return f->bits * 1000 - f->group_size;
}

std::string FormatLabel(const quant::FormatTraits* f) { return f ? std::string(f->name) : ""; }

uint32_t FileType(const std::vector<PlannedTensor>& tensors) {
  std::map<GgmlType, int64_t> count;
  for (const auto& t : tensors) {
    if (t.ne.size() < 2) continue;
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    count[t.type] += n;
  }
  GgmlType best = GgmlType::kF32;
  int64_t best_n = -1;
  for (const auto& [type, n] : count) {
    if (n > best_n) {
      best = type;
      best_n = n;
    }
  }
  switch (best) {  // llama_ftype
    case GgmlType::kF32:
      return 0;
    case GgmlType::kF16:
      return 1;
    case GgmlType::kQ4_0:
      return 2;
    case GgmlType::kQ4_1:
      return 3;
    case GgmlType::kQ8_0:
      return 7;
    case GgmlType::kQ5_0:
      return 8;
    case GgmlType::kQ5_1:
      return 9;
    case GgmlType::kQ2_K:
      return 10;
    case GgmlType::kQ3_K:
      return 12;
    case GgmlType::kQ4_K:
      return 15;
    case GgmlType::kQ5_K:
      return 17;
    case GgmlType::kQ6_K:
      return 18;
    case GgmlType::kBF16:
      return 32;
  }
  return 0;
}

/// Architecture metadata (docs/formats.md §3.1).
Status AddArchitectureMetadata(const ModelConfig& c, const std::string& arch, KvList* kv) {
  using gguf_internal::AddF32;
  using gguf_internal::AddU32;
  const std::string a = arch + ".";
  AddU32(kv, a + "block_count", static_cast<uint64_t>(c.num_layers));
  AddU32(kv, a + "context_length",
         static_cast<uint64_t>(std::max<int64_t>(c.max_position_embeddings, 1)));
  AddU32(kv, a + "embedding_length", static_cast<uint64_t>(c.hidden_size));
  // llama (mixtral) and olmoe size their expert tensors with feed_forward_length.
  const FamilyTraits* family = FindFamily(c.model_type);
  const bool ff_is_expert = c.is_moe() && family != nullptr && family->gguf_ff_is_expert_width;
  const int64_t ff =
      ff_is_expert ? c.moe_intermediate_size
                   : (c.intermediate_size > 0 ? c.intermediate_size : c.moe_intermediate_size);
  AddU32(kv, a + "feed_forward_length", static_cast<uint64_t>(ff));
  AddU32(kv, a + "attention.head_count", static_cast<uint64_t>(c.num_heads));
  AddU32(kv, a + "attention.head_count_kv",
         static_cast<uint64_t>(c.num_kv_heads > 0 ? c.num_kv_heads : c.num_heads));
  AddU32(kv, a + "attention.key_length", static_cast<uint64_t>(c.head_dim));
  AddU32(kv, a + "attention.value_length", static_cast<uint64_t>(c.head_dim));
  AddU32(kv, a + "rope.dimension_count", static_cast<uint64_t>(c.head_dim));
  AddF32(kv, a + "rope.freq_base", c.rope_theta);
  AddF32(kv, a + "attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  AddU32(kv, a + "vocab_size", static_cast<uint64_t>(c.vocab_size));
  if (c.is_moe()) {
    AddU32(kv, a + "expert_count", static_cast<uint64_t>(c.num_experts));
    AddU32(kv, a + "expert_used_count", static_cast<uint64_t>(c.top_k));
    AddU32(kv, a + "expert_feed_forward_length", static_cast<uint64_t>(c.moe_intermediate_size));
    if (c.shared_expert_intermediate_size > 0) {
      AddU32(kv, a + "expert_shared_feed_forward_length",
             static_cast<uint64_t>(c.shared_expert_intermediate_size));
    }
  }
  return Status::Ok();
}

/// The ggml type of a tensor with plan format `f`: ChooseGgmlType, or the forced type for
/// tensors the plan quantizes.
GgmlTypeChoice ChooseType(const quant::FormatTraits* f, DType source, int64_t ne0,
                          const GgufWriteOptions& options) {
  if (options.force_type && f != nullptr && f->is_affine())
    return GgmlTypeForShape(*options.force_type, source, ne0);
  return ChooseGgmlType(f, source, ne0);
}

/// Plans every GGUF tensor from the checkpoint tensors.
Status PlanTensors(const Checkpoint& ckpt, const QuantPlan& plan, const std::string& arch,
                   const GgufWriteOptions& options, std::vector<PlannedTensor>* out) {
  const ModelConfig& cfg = ckpt.config();
  const FamilyTraits* family = FindFamily(cfg.model_type);
  const bool rope_permute = family != nullptr && family->gguf_rope_permute;
  // Merged experts: (layer, role) -> index into *out; per-expert sources collected first.
  struct ExpertGroup {
    size_t index;
    std::vector<const CheckpointTensor*> per_expert;  // by expert, may have holes
  };
  std::map<std::pair<int, TensorRole>, ExpertGroup> groups;

  auto add_group = [&](int layer, TensorRole role) -> ExpertGroup& {
    auto key = std::make_pair(layer, role);
    auto it = groups.find(key);
    if (it != groups.end()) return it->second;
    PlannedTensor pt;
    pt.name = GgufName(TensorId{layer, -1, role}, role);
    out->push_back(std::move(pt));
    return groups.emplace(key, ExpertGroup{out->size() - 1, {}}).first->second;
  };

  for (const CheckpointTensor& t : ckpt.tensors()) {
    const TensorRole role = t.id.role;
    const std::string& hf = t.info.name;
    const auto& shape = t.info.shape;
    if (role == TensorRole::kBuffer) continue;
    if (role == TensorRole::kUnknown) {
      spdlog::warn("gguf: skipping tensor '{}' (not recognised by the {} adapter)", hf,
                   cfg.model_type);
      continue;
    }
    if (!IsFloatDType(t.info.dtype)) {
      return Status::Unsupported(ckpt.dir() + ": tensor '" + hf + "' has dtype " +
                                 std::string(DTypeName(t.info.dtype)) +
                                 " (GGUF output needs float weights)");
    }
    if (IsExpertRole(role)) {
      if (t.fused_experts) {
        if (shape.size() != 3) {
          return Status::Corruption(ckpt.dir() + ": fused expert tensor '" + hf + "' has shape " +
                                    t.info.ShapeString() + ", expected [experts, out, in]");
        }
        const int64_t e_count = shape[0], rows = shape[1], cols = shape[2];
        std::vector<TensorRole> outs;
        if (role == TensorRole::kExpertGateUp) {
          outs = {TensorRole::kExpertGate, TensorRole::kExpertUp};
        } else {
          outs = {role};
        }
        const int64_t out_rows = rows / static_cast<int64_t>(outs.size());
        for (size_t k = 0; k < outs.size(); ++k) {
          ExpertGroup& g = add_group(t.id.layer, outs[k]);
          PlannedTensor& pt = (*out)[g.index];
          pt.ne = {cols, out_rows, e_count};
          pt.cols = cols;
          pt.sources = 1;
          pt.source = t.info.dtype;
          const quant::FormatTraits* f = plan.FormatOf(hf);
          const GgmlTypeChoice c = ChooseType(f, t.info.dtype, cols, options);
          pt.type = c.type;
          pt.plan_format = FormatLabel(f);
          if (c.fallback)
            pt.note = "fallback " + GgmlTypeName(c.preferred) + "->" + GgmlTypeName(c.type);
          const TensorRole stats_role = outs[k] == TensorRole::kExpertDown
                                            ? TensorRole::kExpertDown
                                            : TensorRole::kExpertGate;
          for (int64_t e = 0; e < e_count; ++e) {
            Part part{hf, (e * rows + static_cast<int64_t>(k) * out_rows) * cols, out_rows, 0, 0,
                      {}};
            part.stats_name = ckpt.adapter().Name({t.id.layer, static_cast<int>(e), stats_role});
            pt.parts.push_back(std::move(part));
          }
        }
        continue;
      }
      ExpertGroup& g = add_group(t.id.layer, role);
      if (t.id.expert < 0)
        return Status::Internal("expert tensor '" + hf + "' without an expert index");
      if (g.per_expert.size() <= static_cast<size_t>(t.id.expert))
        g.per_expert.resize(static_cast<size_t>(t.id.expert) + 1);
      g.per_expert[static_cast<size_t>(t.id.expert)] = &t;
      continue;
    }
    const std::string base = RoleBaseName(role);
    if (base.empty()) {
      return Status::Unsupported(ckpt.dir() + ": tensor '" + hf + "' (role " +
                                 std::string(RoleName(role)) +
                                 ") has no GGUF equivalent for architecture " + arch);
    }
    PlannedTensor pt;
    pt.name = GgufName(t.id, role);
    int64_t rows = 1, cols = shape.empty() ? 1 : shape.back();
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    if (role == TensorRole::kSharedExpertGate) {  // [1, H] -> {H}
      pt.ne = {t.info.numel()};
    } else {
      pt.ne.assign(shape.rbegin(), shape.rend());
      if (pt.ne.empty()) pt.ne = {1};
    }
    pt.cols = pt.ne[0];
    pt.source = t.info.dtype;
    const quant::FormatTraits* f = plan.FormatOf(hf);
    if (ForcedF32(role) || shape.size() < 2) {
      pt.type = GgmlType::kF32;
      pt.forced = true;
      if (f && f->is_affine())
        pt.note = "plan format " + std::string(f->name) + " ignored: stored F32";
    } else {
      const GgmlTypeChoice c = ChooseType(f, t.info.dtype, pt.cols, options);
      pt.type = c.type;
      pt.plan_format = FormatLabel(f);
      if (c.fallback) {
        pt.note = "fallback " + GgmlTypeName(c.preferred) + "->" + GgmlTypeName(c.type) + " (ne0 " +
                  std::to_string(pt.cols) + ")";
      }
    }
    Part part{hf, 0, t.info.numel() / pt.cols, 0, 0, {}};
    (void)rows;
    (void)cols;
    if (rope_permute && (role == TensorRole::kAttnQ || role == TensorRole::kAttnQBias)) {
      part.permute_heads = cfg.num_heads;
    } else if (rope_permute && (role == TensorRole::kAttnK || role == TensorRole::kAttnKBias)) {
      part.permute_heads = cfg.num_kv_heads > 0 ? cfg.num_kv_heads : cfg.num_heads;
    }
    part.permute_cols = IsBiasRole(role) ? 1 : pt.cols;
    pt.parts.push_back(part);
    out->push_back(std::move(pt));
  }

  // Per-expert groups: one 3-D tensor, the highest precision among the experts' formats.
  for (auto& [key, g] : groups) {
    PlannedTensor& pt = (*out)[g.index];
    if (g.per_expert.empty()) continue;  // fused, already planned
    const int64_t n_experts =
        std::max<int64_t>(cfg.num_experts, static_cast<int64_t>(g.per_expert.size()));
    const CheckpointTensor* first = nullptr;
    for (const CheckpointTensor* t : g.per_expert) {
      if (t) {
        first = t;
        break;
      }
    }
    if (!first) continue;
    const auto& shape = first->info.shape;
    if (shape.size() != 2) {
      return Status::Corruption(ckpt.dir() + ": expert tensor '" + first->info.name +
                                "' has shape " + first->info.ShapeString() +
                                ", expected [out, in]");
    }
    pt.ne = {shape[1], shape[0], n_experts};
    pt.cols = shape[1];
    pt.sources = 0;
    pt.source = first->info.dtype;
    const quant::FormatTraits* best = nullptr;
    int64_t best_rank = -1;
    std::map<std::string, int> seen;
    for (int64_t e = 0; e < n_experts; ++e) {
      const CheckpointTensor* t = static_cast<size_t>(e) < g.per_expert.size()
                                      ? g.per_expert[static_cast<size_t>(e)]
                                      : nullptr;
      if (!t) {
        return Status::Corruption(ckpt.dir() + ": layer " + std::to_string(key.first) + " " +
                                  std::string(RoleName(key.second)) + ": expert " +
                                  std::to_string(e) + " is missing");
      }
      if (t->info.shape != shape) {
        return Status::Corruption(ckpt.dir() + ": expert tensor '" + t->info.name + "' has shape " +
                                  t->info.ShapeString() + ", other experts " +
                                  first->info.ShapeString());
      }
      const bool pruned = plan.pruned.count(t->info.name) > 0;
      pt.parts.push_back(Part{pruned ? "" : t->info.name, 0, shape[0], 0, 0, {}});
      ++pt.sources;
      if (pruned) {
        ++seen["pruned"];
        continue;
      }
      const quant::FormatTraits* f = plan.FormatOf(t->info.name);
      ++seen[f ? std::string(f->name) : std::string(DTypeName(t->info.dtype))];
      const int64_t rank = FormatRank(f, t->info.dtype);
      if (rank > best_rank) {
        best_rank = rank;
        best = f;
      }
    }
    const GgmlTypeChoice c = ChooseType(best, first->info.dtype, pt.cols, options);
    pt.type = c.type;
    pt.plan_format = FormatLabel(best);
    std::vector<std::string> notes;
    if (seen.size() > 1) {
      std::string mix;
      for (const auto& [name, n] : seen)
        mix += (mix.empty() ? "" : ", ") + name + " x" + std::to_string(n);
      notes.push_back("experts promoted to " + (best ? std::string(best->name) : "source dtype") +
                      " (" + mix + ")");
    }
    if (c.fallback) {
      notes.push_back("fallback " + GgmlTypeName(c.preferred) + "->" + GgmlTypeName(c.type) +
                      " (ne0 " + std::to_string(pt.cols) + ")");
    }
    for (const auto& n : notes) pt.note += (pt.note.empty() ? "" : "; ") + n;
  }
  return Status::Ok();
}

/// llama.cpp's q/k rotary permutation (convert_hf_to_gguf LlamaModel.permute): within each head
/// of d rows, row i*(d/2)+j moves to j*2+i.
void PermuteRows(const std::vector<float>& in, int64_t rows, int64_t cols, int64_t heads,
                 std::vector<float>* out) {
  out->resize(in.size());
  const int64_t d = rows / heads, half = d / 2;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        const int64_t src = h * d + i * half + j, dst = h * d + j * 2 + i;
        std::memcpy(out->data() + dst * cols, in.data() + src * cols,
                    static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }
}

/// The output file: an AtomicFile (unique O_EXCL|O_NOFOLLOW temporary, renamed by Commit())
/// that counts the bytes written, for the alignment padding.
class TempFile {
 public:
  TempFile(std::string path, AtomicWriteOptions options)
      : path_(std::move(path)), options_(options) {}
  Status Open() {
    MOEQ_ASSIGN_OR_RETURN(file_, AtomicFile::Create(path_, options_));
    if (!file_->Stream())
      return Status::Io(file_->temp_path() + ": cannot open a stream: " + std::strerror(errno));
    return Status::Ok();
  }
  Status Write(const void* data, size_t n) {
    MOEQ_RETURN_IF_ERROR(file_->Write(data, n));
    written_ += n;
    return Status::Ok();
  }
  Status Pad(uint64_t alignment) {
    static const char zeros[64] = {};
    const uint64_t pad = (alignment - written_ % alignment) % alignment;
    return Write(zeros, static_cast<size_t>(pad));
  }
  Status Commit() { return file_->Commit(); }
  uint64_t written() const { return written_; }

 private:
  std::string path_;
  AtomicWriteOptions options_;
  std::unique_ptr<AtomicFile> file_;
  uint64_t written_ = 0;
};

void AppendU32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
void AppendU64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }
void AppendStr(std::string* s, const std::string& v) {
  AppendU64(s, v.size());
  s->append(v);
}

}  // namespace

namespace gguf_internal {

namespace {
Status AppendScalar(GgufValueType type, const nlohmann::json& v, const std::string& key,
                    std::string* out) {
  auto num = [&]() -> Result<double> {
    if (!v.is_number() && !v.is_boolean())
      return Status::InvalidArgument("gguf metadata '" + key + "': not a number");
    return v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>();
  };
  auto put = [&](const auto x) { out->append(reinterpret_cast<const char*>(&x), sizeof x); };
  switch (type) {
    case GgufValueType::kString:
      if (!v.is_string())
        return Status::InvalidArgument("gguf metadata '" + key + "': not a string");
      AppendStr(out, v.get<std::string>());
      return Status::Ok();
    case GgufValueType::kBool:
      put(static_cast<uint8_t>(v.is_boolean() ? v.get<bool>() : v.get<double>() != 0));
      return Status::Ok();
    case GgufValueType::kU64:
      if (!v.is_number_integer())
        return Status::InvalidArgument("gguf metadata '" + key + "': not an integer");
      put(v.get<uint64_t>());
      return Status::Ok();
    case GgufValueType::kI64:
      if (!v.is_number_integer())
        return Status::InvalidArgument("gguf metadata '" + key + "': not an integer");
      put(v.get<int64_t>());
      return Status::Ok();
    default:
      break;
  }
  MOEQ_ASSIGN_OR_RETURN(const double d, num());
  switch (type) {
    case GgufValueType::kU8:
      put(static_cast<uint8_t>(d));
      break;
    case GgufValueType::kI8:
      put(static_cast<int8_t>(d));
      break;
    case GgufValueType::kU16:
      put(static_cast<uint16_t>(d));
      break;
    case GgufValueType::kI16:
      put(static_cast<int16_t>(d));
      break;
    case GgufValueType::kU32:
      put(static_cast<uint32_t>(d));
      break;
    case GgufValueType::kI32:
      put(static_cast<int32_t>(d));
      break;
    case GgufValueType::kF32:
      put(static_cast<float>(d));
      break;
    case GgufValueType::kF64:
      put(d);
      break;
    default:
      return Status::InvalidArgument("gguf metadata '" + key + "': unsupported value type");
  }
  return Status::Ok();
}
}  // namespace

Status AppendKv(const std::string& key, const GgufValue& value, std::string* out) {
  AppendStr(out, key);
  AppendU32(out, static_cast<uint32_t>(value.type));
  if (value.type != GgufValueType::kArray) return AppendScalar(value.type, value.value, key, out);
  if (!value.value.is_array())
    return Status::InvalidArgument("gguf metadata '" + key + "': not an array");
  if (value.elem_type == GgufValueType::kArray) {
    return Status::InvalidArgument("gguf metadata '" + key + "': nested arrays are not supported");
  }
  AppendU32(out, static_cast<uint32_t>(value.elem_type));
  AppendU64(out, value.value.size());
  for (const auto& e : value.value)
    MOEQ_RETURN_IF_ERROR(AppendScalar(value.elem_type, e, key, out));
  return Status::Ok();
}

}  // namespace gguf_internal

Result<std::string> GgufArchitecture(std::string_view model_type) {
  const FamilyTraits* family = FindFamily(model_type);
  if (family == nullptr || family->gguf_arch.empty()) {
    std::string list;
    for (const auto& f : AllFamilies()) {
      if (!f.gguf_arch.empty()) list += (list.empty() ? "" : ", ") + std::string(f.model_type);
    }
    return Status::Unsupported("GGUF output does not support model_type '" +
                               std::string(model_type) + "' (supported: " + list + ")");
  }
  return std::string(family->gguf_arch);
}

nlohmann::json GgufWriteReport::TypeSummary() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& t : tensors) {
    auto& e = j[GgmlTypeName(t.type)];
    if (e.is_null()) e = {{"tensors", 0}, {"bytes", 0}, {"weights", 0}};
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    e["tensors"] = e["tensors"].get<int64_t>() + 1;
    e["bytes"] = e["bytes"].get<uint64_t>() + t.bytes;
    e["weights"] = e["weights"].get<int64_t>() + n;
    if (!t.encoder.empty()) {
      auto& c = e["encoders"][t.encoder];
      c = (c.is_null() ? 0 : c.get<int64_t>()) + 1;
    }
  }
  return j;
}

namespace {

/// Everything of a GGUF file but its tensor data: the planned tensors with their offsets, the
/// metadata and the header bytes (unpadded).
struct PlannedFile {
  std::string arch;
  std::vector<PlannedTensor> tensors;
  KvList kv;
  std::string header;
};

Status PlanFile(const Checkpoint& ckpt, const QuantPlan& plan, const GgufWriteOptions& options,
                PlannedFile* file) {
  const ModelConfig& cfg = ckpt.config();
  MOEQ_ASSIGN_OR_RETURN(file->arch, GgufArchitecture(cfg.model_type));
  const std::string& arch = file->arch;
  std::vector<PlannedTensor>& tensors = file->tensors;
  KvList& kv = file->kv;
  std::string& header = file->header;
  MOEQ_RETURN_IF_ERROR(PlanTensors(ckpt, plan, arch, options, &tensors));
  uint64_t offset = 0;
  int64_t n_vocab = cfg.vocab_size;
  for (PlannedTensor& t : tensors) {
    if (t.name.size() >= 64)
      return Status::Unsupported("GGUF tensor name '" + t.name + "' is 64 bytes or longer");
    MOEQ_ASSIGN_OR_RETURN(const uint64_t row_bytes, GgmlRowBytes(t.type, t.cols));
    int64_t rows = 1;
    for (size_t i = 1; i < t.ne.size(); ++i) rows *= t.ne[i];
    t.bytes = row_bytes * static_cast<uint64_t>(rows);
    t.offset = offset;
    offset += (t.bytes + gguf_internal::kAlignment - 1) / gguf_internal::kAlignment *
              gguf_internal::kAlignment;
    if (t.name == "token_embd.weight" && t.ne.size() == 2) n_vocab = t.ne[1];
  }

  // Metadata.
  gguf_internal::AddString(&kv, "general.architecture", arch);
  std::string name = options.model_name;
  if (name.empty()) name = std::filesystem::path(ckpt.dir()).lexically_normal().filename().string();
  if (name.empty())
    name = std::filesystem::path(ckpt.dir()).lexically_normal().parent_path().filename().string();
  gguf_internal::AddString(&kv, "general.name", name);
  gguf_internal::AddU32(&kv, "general.alignment", gguf_internal::kAlignment);
  gguf_internal::AddU32(&kv, "general.quantization_version", 2);
  gguf_internal::AddU32(&kv, "general.file_type", FileType(tensors));
  MOEQ_RETURN_IF_ERROR(AddArchitectureMetadata(cfg, arch, &kv));
  bool have_tokenizer = false;
  MOEQ_RETURN_IF_ERROR(gguf_internal::AddTokenizerMetadata(ckpt, n_vocab, &kv, &have_tokenizer));
  if (!have_tokenizer) {
    if (options.require_tokenizer) {
      return Status::NotFound(
          ckpt.dir() +
          "/tokenizer.json: missing or empty vocabulary (GGUF needs tokenizer metadata)");
    }
    spdlog::warn("gguf: {} has no tokenizer vocabulary; the GGUF file has no tokenizer metadata",
                 ckpt.dir());
  }
  gguf_internal::AddString(&kv, "moeq.version", kVersion);
  gguf_internal::AddString(&kv, "moeq.plan.source", plan.source);
  if (!plan.allocation_sha256.empty())
    gguf_internal::AddString(&kv, "moeq.plan.allocation_sha256", plan.allocation_sha256);
  gguf_internal::AddString(&kv, "moeq.source.fingerprint", ckpt.fingerprint());
  if (options.stats != nullptr && plan.DataAware()) {
    // Planned encoders of the block-quantized tensors (a tensor without statistics falls back to
    // rtn; the report and the model card give what was really used) and the statistics file.
    std::set<std::string> planned;
    for (const PlannedTensor& t : tensors) {
      if (!quant::GgmlEncoderSupported(t.type)) continue;
      for (const Part& part : t.parts)
        if (!part.source.empty())
          planned.insert(std::string(quant::EncoderName(plan.EncoderOf(part.source))));
    }
    std::string joined;
    for (const std::string& e : planned) joined += (joined.empty() ? "" : ",") + e;
    gguf_internal::AddString(&kv, "moeq.encoders", joined);
    gguf_internal::AddString(&kv, "moeq.stats.sha256", options.stats->sha256());
  }
  if (options.context) {
    gguf_internal::AddString(&kv, "moeq.producer", options.context->tool);
    gguf_internal::AddString(&kv, "moeq.command", options.context->command_line);
  }

  // Header bytes.
  AppendU32(&header, gguf_internal::kMagic);
  AppendU32(&header, gguf_internal::kVersion);
  AppendU64(&header, tensors.size());
  AppendU64(&header, kv.size());
  for (const auto& [key, value] : kv)
    MOEQ_RETURN_IF_ERROR(gguf_internal::AppendKv(key, value, &header));
  for (const PlannedTensor& t : tensors) {
    AppendStr(&header, t.name);
    AppendU32(&header, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) AppendU64(&header, static_cast<uint64_t>(d));
    AppendU32(&header, static_cast<uint32_t>(t.type));
    AppendU64(&header, t.offset);
  }
  return Status::Ok();
}

}  // namespace

Result<gguf_internal::Layout> gguf_internal::PlanLayout(const Checkpoint& ckpt,
                                                        const QuantPlan& plan,
                                                        const GgufWriteOptions& options) {
  PlannedFile f;
  MOEQ_RETURN_IF_ERROR(PlanFile(ckpt, plan, options, &f));
  Layout layout;
  layout.header_bytes = f.header.size();
  for (const PlannedTensor& t : f.tensors) {
    LayoutTensor lt;
    lt.name = t.name;
    lt.ne = t.ne;
    lt.type = t.type;
    lt.bytes = t.bytes;
    lt.source = t.source;
    lt.forced_f32 = t.forced;
    for (const Part& p : t.parts) lt.parts.push_back({p.source, p.rows});
    layout.tensors.push_back(std::move(lt));
  }
  return layout;
}

Status WriteGguf(const Checkpoint& ckpt, const QuantPlan& plan, const std::string& path,
                 const GgufWriteOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  PlannedFile planned;
  MOEQ_RETURN_IF_ERROR(PlanFile(ckpt, plan, options, &planned));
  const std::string& arch = planned.arch;
  std::vector<PlannedTensor>& tensors = planned.tensors;
  const KvList& kv = planned.kv;
  const std::string& header = planned.header;

  TempFile file(path, {.overwrite = options.overwrite});
  MOEQ_RETURN_IF_ERROR(file.Open());
  MOEQ_RETURN_IF_ERROR(file.Write(header.data(), header.size()));
  MOEQ_RETURN_IF_ERROR(file.Pad(gguf_internal::kAlignment));
  const uint64_t data_start = file.written();

  // Progress in millions of weights, not tensors: one embedding can be as big as a layer.
  std::unique_ptr<Progress> progress;
  int64_t weights_done = 0, millions_shown = 0;
  if (options.progress) {
    int64_t total = 0;
    for (const PlannedTensor& t : tensors) {
      int64_t n = 1;
      for (int64_t d : t.ne) n *= d;
      total += n;
    }
    progress =
        std::make_unique<Progress>("gguf", std::max<int64_t>(1, total / 1000000), "M weights");
  }
  auto advance = [&](int64_t n, const std::string& name) {
    weights_done += n;
    const int64_t m = weights_done / 1000000;
    if (progress && m > millions_shown) {
      progress->Advance(m - millions_shown, name);
      millions_shown = m;
    }
  };
  const int threads = ResolveThreads(options.threads);
  constexpr int64_t kChunkElems = int64_t{1} << 22;
  std::vector<float> buf, permuted;
  std::vector<std::byte> enc;
  uint64_t tensor_bytes = 0;
  std::vector<std::string> tensor_encoders;
  // Source tensors in the order they are encoded: each one's successor is read ahead while it
  // is encoded, so the workers do not wait on page faults of a cold checkpoint.
  std::vector<const std::string*> read_order;
  for (const PlannedTensor& t : tensors)
    for (const Part& part : t.parts)
      if (!part.source.empty()) read_order.push_back(&part.source);
  size_t read_next = 0;
  for (const PlannedTensor& t : tensors) {
    std::set<std::string> used_encoders;
    MOEQ_ASSIGN_OR_RETURN(const uint64_t row_bytes, GgmlRowBytes(t.type, t.cols));
    if (file.written() - data_start != t.offset) {
      return Status::Internal("gguf: tensor '" + t.name + "' offset mismatch");
    }
    for (const Part& part : t.parts) {
      TensorView view;
      if (!part.source.empty()) {
        MOEQ_ASSIGN_OR_RETURN(view, ckpt.View(part.source));
        if (++read_next < read_order.size()) ckpt.Prefetch(*read_order[read_next]);
      }
      // The encoder of this part: the plan's, when statistics for its input are given.
      const bool block_quant = quant::GgmlEncoderSupported(t.type);
      quant::EncoderKind kind = quant::EncoderKind::kRtn;
      std::optional<quant::InputStats> stats;
      if (block_quant && !part.source.empty() && options.stats != nullptr &&
          plan.EncoderOf(part.source) != quant::EncoderKind::kRtn) {
        const std::string& sname = part.stats_name.empty() ? part.source : part.stats_name;
        auto st = options.stats->Get(sname, t.cols);
        if (!st.ok()) return st.status().WithContext("gguf: tensor '" + part.source + "'");
        stats = std::move(*st);
        kind = quant::EffectiveEncoder(plan.EncoderOf(part.source), stats ? &*stats : nullptr);
      }
      if (block_quant && !part.source.empty())
        used_encoders.insert(std::string(quant::EncoderName(kind)));
      const int64_t chunk_rows =
          part.permute_heads > 0 ? part.rows
                                 : std::max<int64_t>(1, kChunkElems / std::max<int64_t>(t.cols, 1));
      // Round-to-nearest rows that need no head permutation convert and encode row by row on
      // the workers (the bf16 -> f32 conversion is then no serial step).
      const bool rowwise = kind == quant::EncoderKind::kRtn && part.permute_heads == 0;
      for (int64_t r0 = 0; r0 < part.rows; r0 += chunk_rows) {
        const int64_t nr = std::min(chunk_rows, part.rows - r0);
        const float* src = nullptr;  // the chunk as float32 when converted up front
        if (!rowwise) {
          buf.assign(static_cast<size_t>(nr * t.cols), 0.0f);
          if (!part.source.empty()) {
            Status s = ConvertToF32(view, part.first + r0 * t.cols, nr * t.cols, buf.data());
            if (!s.ok()) return s.WithContext("gguf: tensor '" + part.source + "'");
          }
          src = buf.data();
          if (part.permute_heads > 0) {
            const int64_t prows = nr * t.cols / part.permute_cols;
            if (prows % (2 * part.permute_heads) != 0) {
              return Status::Corruption("gguf: tensor '" + part.source +
                                        "': " + std::to_string(prows) + " rows do not split into " +
                                        std::to_string(part.permute_heads) + " heads of even size");
            }
            PermuteRows(buf, prows, part.permute_cols, part.permute_heads, &permuted);
            src = permuted.data();
          }
          if (kind != quant::EncoderKind::kRtn) {
            quant::EncoderOptions eo = options.encoder_options;
            eo.kind = kind;
            auto coded =
                quant::EncodeGgml(std::span<const float>(src, static_cast<size_t>(nr * t.cols)), nr,
                                  t.cols, t.type, eo, &*stats, threads);
            if (!coded.ok())
              return coded.status().WithContext("gguf: tensor '" + t.name + "' (" + part.source +
                                                ")");
            MOEQ_RETURN_IF_ERROR(file.Write(coded->data(), coded->size()));
            advance(nr * t.cols, t.name);
            continue;
          }
        }
        enc.resize(static_cast<size_t>(row_bytes * static_cast<uint64_t>(nr)));
        std::vector<Status> errors(static_cast<size_t>(nr));
        ParallelFor(
            nr,
            [&](int64_t r) {
              Status& st = errors[static_cast<size_t>(r)];
              const float* x = src != nullptr ? src + r * t.cols : nullptr;
              if (x == nullptr) {  // rowwise: convert this row on the worker
                thread_local std::vector<float> row;
                row.assign(static_cast<size_t>(t.cols), 0.0f);
                if (!part.source.empty()) {
                  st = ConvertToF32(view, part.first + (r0 + r) * t.cols, t.cols, row.data());
                  if (!st.ok()) {
                    st = st.WithContext("gguf: tensor '" + part.source + "'");
                    return;
                  }
                }
                x = row.data();
              }
              st = QuantizeGgmlRow(t.type, x, t.cols,
                                   enc.data() + static_cast<uint64_t>(r) * row_bytes);
              if (!st.ok()) st = st.WithContext("gguf: tensor '" + t.name + "'");
            },
            threads, std::max<int64_t>(1, 65536 / std::max<int64_t>(t.cols, 1)));
        for (const Status& st : errors) MOEQ_RETURN_IF_ERROR(st);
        MOEQ_RETURN_IF_ERROR(file.Write(enc.data(), enc.size()));
        advance(nr * t.cols, t.name);
      }
      if (!part.source.empty()) ckpt.Release(part.source);
    }
    std::string joined;
    for (const std::string& e : used_encoders) joined += (joined.empty() ? "" : ",") + e;
    tensor_encoders.push_back(std::move(joined));
    tensor_bytes += t.bytes;
    MOEQ_RETURN_IF_ERROR(file.Pad(gguf_internal::kAlignment));
  }
  if (progress) progress->Finish();
  const uint64_t file_bytes = file.written();
  MOEQ_RETURN_IF_ERROR(file.Commit());

  GgufWriteReport report;
  report.architecture = arch;
  report.file_bytes = file_bytes;
  report.tensor_bytes = tensor_bytes;
  report.n_kv = static_cast<int64_t>(kv.size());
  for (const PlannedTensor& t : tensors) {
    GgufTensorReport r{t.name,        t.ne,   t.type,    t.bytes,
                       t.plan_format, t.note, t.sources, tensor_encoders[report.tensors.size()]};
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    report.weights += n;
    if (t.note.find("fallback") != std::string::npos) ++report.fallback_tensors;
    if (t.note.find("promoted") != std::string::npos) ++report.promoted_expert_tensors;
    if (!t.note.empty()) spdlog::info("gguf: {} {}: {}", t.name, GgmlTypeName(t.type), t.note);
    report.tensors.push_back(std::move(r));
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info(
      "gguf: wrote {} ({} tensors, {} KV, {:.1f} MB, {:.2f} bpw, {} fallbacks, {} promoted expert "
      "tensors) in {:.2f} s",
      path, tensors.size(), kv.size(), file_bytes / 1e6,
      report.weights > 0 ? tensor_bytes * 8.0 / static_cast<double>(report.weights) : 0.0,
      report.fallback_tensors, report.promoted_expert_tensors, report.seconds);
  if (options.report) *options.report = std::move(report);
  return Status::Ok();
}

}  // namespace moeq
