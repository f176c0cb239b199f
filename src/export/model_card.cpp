// The model card moeq-quantize writes next to its output (README.md with Hugging Face front
// matter): base model, quantized_by, library tags, the allocation summary (bits by role and by
// layer, bpw, bytes), the command that produced it and, with --eval, the quality figures.
#include "moeq/export/model_card.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"

namespace moeq {
namespace {

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

/// Bits per weight a tensor is stored at under the plan (codes + scales + biases for affine
/// formats, the element size for float ones, the source dtype when the plan keeps it).
double StoredBits(const CheckpointTensor& t, const quant::FormatTraits* f) {
  if (f == nullptr) return 8.0 * static_cast<double>(DTypeSize(t.info.dtype));
  if (!f->is_affine()) return f->bits;
  const double scale_bits = 8.0 * static_cast<double>(DTypeSize(f->ScaleDType(t.info.dtype)));
  return f->bits + 2.0 * scale_bits / f->group_size;
}

struct Tally {
  double weights = 0;
  double bits = 0;
  std::map<std::string, int> formats;
  void Add(const CheckpointTensor& t, const quant::FormatTraits* f) {
    const double n = static_cast<double>(t.info.numel());
    weights += n;
    bits += n * StoredBits(t, f);
    ++formats[f ? std::string(f->name) : std::string(DTypeName(t.info.dtype))];
  }
  std::string Mix() const {
    std::string s;
    for (const auto& [name, n] : formats)
      s += (s.empty() ? "" : ", ") + name + " ×" + std::to_string(n);
    return s;
  }
};

std::string YamlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string BaseModelName(const Checkpoint& ckpt) {
  const nlohmann::json& raw = ckpt.config().raw;
  if (auto it = raw.find("_name_or_path");
      it != raw.end() && it->is_string() && !it->get<std::string>().empty()) {
    return it->get<std::string>();
  }
  std::filesystem::path p = std::filesystem::path(ckpt.dir()).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

std::string RenderModelCard(const ModelCardInput& in) {
  const Checkpoint& ckpt = *in.checkpoint;
  const QuantPlan& plan = *in.plan;
  const std::string base = BaseModelName(ckpt);
  const bool gguf = in.format == "gguf";
  std::string md = "---\n";
  md += "base_model: " + YamlString(base) + "\n";
  md += "quantized_by: moeq\n";
  md += std::string("library_name: ") + (gguf ? "gguf" : "mlx") + "\n";
  md += "pipeline_tag: text-generation\n";
  md += "tags:\n";
  md += std::string("  - ") + (gguf ? "gguf" : "mlx") + "\n";
  md += "  - moeq\n  - quantized\n  - mixture-of-experts\n";
  md += "  - " + ckpt.config().model_type + "\n";
  md += "---\n\n";
  md += "# " + base + " — quantized by moeq\n\n";
  md += "Quantized from `" + base + "` (model_type `" + ckpt.config().model_type + "`) by moeq " +
        std::string(kVersion) + " with the plan *" + plan.source + "*";
  md += gguf ? ", written as one GGUF v3 file for llama.cpp (`" + in.output_name + "`).\n\n"
             : ", written in MLX's affine quantized layout (" +
                   std::string(in.mlx_stacked ? "mlx-lm's stacked `switch_mlp` experts"
                                              : "per-expert tensors") +
                   "; see moeq's docs/quantized-format.md).\n\n";

  // Allocation summary.
  Tally total;
  std::map<std::string, Tally> by_role;
  std::map<int, Tally> experts_by_layer, all_by_layer;
  for (const auto& t : ckpt.tensors()) {
    if (t.id.role == TensorRole::kBuffer || t.id.role == TensorRole::kUnknown) continue;
    const quant::FormatTraits* f = plan.FormatOf(t.info.name);
    total.Add(t, f);
    by_role[std::string(RoleName(t.id.role))].Add(t, f);
    if (t.id.layer >= 0) {
      all_by_layer[t.id.layer].Add(t, f);
      if (IsExpertRole(t.id.role)) experts_by_layer[t.id.layer].Add(t, f);
    }
  }
  md += "## Allocation\n\n";
  md += "| | value |\n|---|---|\n";
  md += "| file bytes | " + std::to_string(in.output_bytes) + " (" +
        Fixed(in.output_bytes / 1048576.0, 2) + " MiB) |\n";
  if (in.written_bpw > 0)
    md += "| bits per weight (as written) | " + Fixed(in.written_bpw, 3) + " |\n";
  md += "| bits per weight (plan, all tensors) | " +
        Fixed(total.weights > 0 ? total.bits / total.weights : 0, 3) + " |\n";
  md += "| weights | " + std::to_string(static_cast<int64_t>(total.weights)) + " |\n";
  if (!in.encoders.empty()) md += "| encoders | " + in.encoders + " |\n";
  if (!plan.pruned.empty())
    md += "| pruned expert tensors | " + std::to_string(plan.pruned.size()) + " |\n";
  if (in.gguf_types && in.gguf_types->is_object()) {
    md +=
        "\nggml tensor types as written (what llama.cpp loads):\n\n| type | tensors | weights | "
        "bytes | bpw |\n|---|---:|---:|---:|---:|\n";
    for (const auto& [type, e] : in.gguf_types->items()) {
      const double w = e.value("weights", 0.0), b = e.value("bytes", 0.0);
      md += "| " + type + " | " + std::to_string(e.value("tensors", 0)) + " | " +
            std::to_string(static_cast<int64_t>(w)) + " | " +
            std::to_string(static_cast<uint64_t>(b)) + " | " + Fixed(w > 0 ? b * 8 / w : 0, 3) +
            " |\n";
    }
    md += "\nThe plan behind it";
    md += (in.plan->source.empty() ? std::string() : " (" + in.plan->source + ")");
    md += ", in moeq's MLX format names:\n";
  }
  md += "\nBits by role (bits per weight including scales and biases; formats × tensors):\n\n";
  md += "| role | weights | bpw | formats |\n|---|---:|---:|---|\n";
  for (const auto& [role, t] : by_role) {
    md += "| " + role + " | " + std::to_string(static_cast<int64_t>(t.weights)) + " | " +
          Fixed(t.weights > 0 ? t.bits / t.weights : 0, 3) + " | " + t.Mix() + " |\n";
  }
  md +=
      "\nBits by layer:\n\n| layer | bpw (all) | bpw (routed experts) | expert formats "
      "|\n|---:|---:|---:|---|\n";
  for (const auto& [layer, t] : all_by_layer) {
    auto e = experts_by_layer.find(layer);
    md += "| " + std::to_string(layer) + " | " + Fixed(t.weights > 0 ? t.bits / t.weights : 0, 3) +
          " | " +
          (e != experts_by_layer.end() && e->second.weights > 0
               ? Fixed(e->second.bits / e->second.weights, 3)
               : "–") +
          " | " + (e != experts_by_layer.end() ? e->second.Mix() : "") + " |\n";
  }
  if (gguf) {
    md +=
        "\nllama.cpp stores each layer's experts as one tensor of one type, so experts of one "
        "layer and "
        "projection share the highest precision the plan gave any of them; norms, routers and "
        "shared-expert gates are F32 (moeq docs/gguf.md).\n";
  }

  md += "\n## How it was made\n\n```sh\n";
  for (const std::string& c : in.commands) md += c + "\n";
  md += "```\n";
  if (!plan.allocation_sha256.empty())
    md += "\nallocation.json sha256: `" + plan.allocation_sha256 + "`\n";
  md += "\nSource fingerprint: `" + ckpt.fingerprint() + "`\n";

  if (in.eval) {
    const nlohmann::json& e = *in.eval;
    md += "\n## Quality\n\nFrom `" + in.eval_name + "` (moeq-eval";
    if (e.contains("protocol") && e["protocol"].is_object() && e["protocol"].contains("name")) {
      md += ", protocol " + e["protocol"]["name"].dump();
    }
    md += "):\n\n| metric | value |\n|---|---|\n";
    auto num = [&](const nlohmann::json& j, const char* key, int digits) -> std::string {
      return j.contains(key) && j[key].is_number() ? Fixed(j[key].get<double>(), digits) : "";
    };
    if (auto v = num(e, "ppl", 3); !v.empty())
      md += "| perplexity | " + v + " ± " + num(e, "ppl_stderr", 3) + " |\n";
    if (auto v = num(e, "tokens_scored", 0); !v.empty()) md += "| tokens scored | " + v + " |\n";
    if (e.contains("reference") && e["reference"].is_object()) {
      const nlohmann::json& r = e["reference"];
      if (auto v = num(r, "ppl", 3); !v.empty()) md += "| reference perplexity | " + v + " |\n";
      if (auto v = num(r, "ppl_delta_pct", 2); !v.empty()) md += "| ΔPPL % | " + v + " |\n";
      if (auto v = num(r, "kl_mean", 5); !v.empty()) md += "| KL mean (nats) | " + v + " |\n";
      if (auto v = num(r, "kl_p99", 4); !v.empty()) md += "| KL p99 | " + v + " |\n";
      if (auto v = num(r, "top1_agreement", 4); !v.empty())
        md += "| top-1 agreement | " + v + " |\n";
    }
  }
  md += "\n---\nGenerated by moeq-quantize " + std::string(kVersion) + ".\n";
  return md;
}

}  // namespace moeq
