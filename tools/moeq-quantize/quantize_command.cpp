// moeq-quantize: plan (allocation.json or uniform), then an MLX checkpoint written into a
// temporary sibling directory that is renamed into place only once complete (manifest last).
#include "moeq-quantize/quantize_command.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <random>
#include <tuple>

#include "moeq/artifacts/eval.h"
#include "moeq/artifacts/model_match.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/export/model_card.h"
#include "moeq/export/quant_plan.h"
#include "moeq/export/target_cost.h"
#include "moeq/quant/input_stats.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

/// mlx-lm's MoE quant_predicate: the router (`mlp.gate`, Mixtral's `block_sparse_moe.gate`) and
/// qwen2_moe's `shared_expert_gate` are quantized at 8 bits, group 64, whatever the uniform
/// width (they are tiny and steer every token). Tensors whose rows do not fit group 64 keep
/// the uniform plan's choice.
Status ApplyMlxLmGateRule(const Checkpoint& ckpt, QuantPlan* plan) {
  const quant::FormatTraits* q8 = quant::FindFormat("q8g64");
  if (q8 == nullptr) return Status::Internal("format q8g64 is not registered");
  int n = 0;
  for (const auto& t : ckpt.tensors()) {
    if (t.id.role != TensorRole::kRouter && t.id.role != TensorRole::kSharedExpertGate) continue;
    if (t.info.shape.empty() || t.info.shape.back() % 64 != 0) continue;
    plan->formats[t.info.name] = q8;
    ++n;
  }
  if (n > 0) plan->source += " (mlx-lm rule: routers and shared-expert gates q8g64)";
  return Status::Ok();
}

Result<QuantPlan> MakePlan(const QuantizeCommandOptions& o, const Checkpoint& ckpt) {
  if (!o.allocation.empty()) return LoadAllocationPlan(o.allocation, ckpt);
  DType source = DType::kBF16;
  for (const auto& t : ckpt.tensors()) {
    if (IsQuantizableRole(t.id.role) && IsFloatDType(t.info.dtype)) {
      source = t.info.dtype;
      break;
    }
  }
  const std::string spec =
      o.uniform_bits >= 16 ? std::to_string(o.uniform_bits)
                           : std::to_string(o.uniform_bits) + "," + std::to_string(o.group_size);
  auto fmt = quant::ParseFormatSpec(spec, source);
  if (!fmt.ok())
    return fmt.status().WithContext("--uniform " + std::to_string(o.uniform_bits) + " --group " +
                                    std::to_string(o.group_size));
  std::map<std::string, std::string> skipped;
  MOEQ_ASSIGN_OR_RETURN(QuantPlan plan, MakeUniformPlan(ckpt, **fmt, &skipped));
  for (const auto& [name, why] : skipped)
    spdlog::warn("{}: tensor '{}' kept in its dtype: {}", o.model_dir, name, why);
  if (!o.uniform_all && (*fmt)->is_affine()) MOEQ_RETURN_IF_ERROR(ApplyMlxLmGateRule(ckpt, &plan));
  return plan;
}

/// The model card's path for --format gguf: "dir/model.gguf" -> "dir/model.README.md".
std::string GgufCardPath(const std::string& output) {
  fs::path p(output);
  std::string stem = p.filename().string();
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".gguf") == 0)
    stem.resize(stem.size() - 5);
  return (p.parent_path() / (stem + ".README.md")).string();
}

ModelCardInput CardInput(const QuantizeCommandOptions& o, const ArtifactContext& ctx,
                         const Checkpoint& ckpt, const QuantPlan& plan) {
  ModelCardInput in;
  in.checkpoint = &ckpt;
  in.plan = &plan;
  in.format = o.format;
  in.mlx_stacked = o.mlx_compatible;
  in.output_name = fs::path(o.output).filename().string();
  if (!plan.allocation_command.empty()) in.commands.push_back(plan.allocation_command);
  in.commands.push_back(ctx.command_line.empty() ? "moeq-quantize (library call)"
                                                 : ctx.command_line);
  return in;
}

/// --format gguf: -o names the .gguf file. WriteGguf writes "<file>.tmp" and renames it into
/// place only once complete (removing it on any error), so an existing file (--force) is
/// replaced atomically and a kill or a full disk never leaves a complete-looking output.
Status RunGguf(const QuantizeCommandOptions& o, const ArtifactContext& ctx, const Checkpoint& ckpt,
               const QuantPlan& plan, const InputStatsFile* stats,
               std::chrono::steady_clock::time_point start) {
  std::error_code ec;
  if (fs::is_directory(o.output, ec)) {
    return Status::InvalidArgument(
        "--output " + o.output +
        " is a directory; --format gguf writes one file (e.g. -o model.gguf)");
  }
  GgufWriteOptions wo;
  wo.threads = ctx.threads;
  wo.progress = ctx.progress;
  wo.context = &ctx;
  wo.require_tokenizer = true;
  wo.overwrite = ctx.force;
  GgufWriteReport report;
  wo.report = &report;
  if (!o.gguf_type.empty()) wo.force_type = FindGgmlTypeByName(o.gguf_type)->type;
  wo.stats = stats;
  wo.encoder_options = o.encoder_options;
  MOEQ_RETURN_IF_ERROR(WriteGguf(ckpt, plan, o.output, wo));
  // Encoders really used (a tensor without statistics falls back to rtn), for the card.
  std::map<std::string, int64_t> by_encoder;
  for (const GgufTensorReport& t : report.tensors)
    if (!t.encoder.empty()) ++by_encoder[t.encoder];
  if (!o.no_model_card) {
    ModelCardInput card = CardInput(o, ctx, ckpt, plan);
    card.output_bytes = report.file_bytes;
    card.written_bpw =
        report.weights > 0 ? report.tensor_bytes * 8.0 / static_cast<double>(report.weights) : 0.0;
    card.gguf_types = report.TypeSummary();
    if (plan.DataAware() && stats != nullptr) {
      for (const auto& [e, n] : by_encoder)
        card.encoders += (card.encoders.empty() ? "" : ", ") + e + " ×" + std::to_string(n);
      card.encoders += "; statistics " + std::filesystem::path(stats->path()).filename().string() +
                       " sha256 " + stats->sha256();
    }
    if (!o.eval.empty()) {
      MOEQ_ASSIGN_OR_RETURN(artifacts::EvalArtifact eval, artifacts::ReadEval(o.eval));
      card.eval = artifacts::EvalToJson(eval);
      card.eval_name = fs::path(o.eval).filename().string();
    }
    MOEQ_RETURN_IF_ERROR(WriteFileAtomic(GgufCardPath(o.output), RenderModelCard(card)));
  }
  std::string types;
  const nlohmann::json summary = report.TypeSummary();
  for (const auto& [type, e] : summary.items()) {
    if (!types.empty()) types += ", ";
    types += type + "×" + std::to_string(e["tensors"].get<int64_t>());
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info(
      "quantized {} ({}) to GGUF ({}): {} tensors [{}], {:.1f} MiB, {:.3f} bpw, {} fallbacks, {} "
      "promoted "
      "expert tensors; wrote {} in {:.1f} s",
      o.model_dir, plan.source, report.architecture, report.tensors.size(), types,
      report.file_bytes / 1048576.0,
      report.weights > 0 ? report.tensor_bytes * 8.0 / static_cast<double>(report.weights) : 0.0,
      report.fallback_tensors, report.promoted_expert_tensors, o.output, secs);
  return Status::Ok();
}

/// An allocation made with moeq-allocate --target must be written to that target: its budget
/// (file bytes) and its expert groups (one format per layer and projection for stacked
/// targets) hold only there.
Status CheckPlanTarget(const QuantizeCommandOptions& o, const Checkpoint& ckpt,
                       const QuantPlan& plan) {
  if (plan.target.empty()) return Status::Ok();
  const WriteTarget out = TargetOfOutput(o.format, o.mlx_compatible);
  const std::string out_name(WriteTargetName(out));
  if (plan.target != out_name) {
    if (o.ignore_target) {
      spdlog::warn(
          "{}: made for --target {}, written as {} (--ignore-target): the budget does "
          "not hold for this output",
          o.allocation, plan.target, out_name);
      return Status::Ok();
    }
    return Status::InvalidArgument(
        o.allocation + ": field 'budget.target': the allocation was made for --target " +
        plan.target + " but this command writes " + out_name + " (--format " + o.format +
        (o.mlx_compatible ? " --mlx-compatible" : "") + "); re-run moeq-allocate --target " +
        out_name + ", or give --ignore-target");
  }
  if (TargetHoldsPerExpertFormats(out)) return Status::Ok();
  // Stacked targets: every routed expert of one (layer, role) has one format (no promotion).
  std::map<std::pair<int, TensorRole>, std::pair<const quant::FormatTraits*, std::string>> seen;
  for (const CheckpointTensor& t : ckpt.tensors()) {
    if (!IsExpertRole(t.id.role) || t.id.expert < 0 || plan.pruned.count(t.info.name)) continue;
    const quant::FormatTraits* f = plan.FormatOf(t.info.name);
    auto [it, inserted] =
        seen.emplace(std::make_pair(t.id.layer, t.id.role), std::make_pair(f, t.info.name));
    if (!inserted && it->second.first != f) {
      return Status::Corruption(
          o.allocation + ": tensor '" + t.info.name + "' has format " +
          (f ? std::string(f->name) : "source") + " but '" + it->second.second + "' has " +
          (it->second.first ? std::string(it->second.first->name) : "source") +
          ": an allocation for --target " + plan.target +
          " gives every expert of a layer and projection one format");
    }
  }
  return Status::Ok();
}

}  // namespace

Status RunQuantize(const QuantizeCommandOptions& o, const ArtifactContext& ctx) {
  const auto start = std::chrono::steady_clock::now();
  if (o.model_dir.empty()) return Status::InvalidArgument("a model directory is required");
  if (o.output.empty()) return Status::InvalidArgument("-o/--output OUT_DIR is required");
  if (o.uniform_all && o.uniform_bits == 0)
    return Status::InvalidArgument("--uniform-all needs --uniform BITS");
  QuantizeCommandOptions with_type = o;
  if (!o.gguf_type.empty()) {
    const GgmlTypeTraits* gt = FindGgmlTypeByName(o.gguf_type);
    if (gt == nullptr || !gt->quantized) {
      return Status::InvalidArgument(
          "--gguf-type '" + o.gguf_type +
          "': expected one of q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K");
    }
    if (o.format != "gguf")
      return Status::InvalidArgument("--gguf-type applies to --format gguf only");
    // Without a plan, quantize what a uniform plan at the type's width would (routers excepted).
    if (o.allocation.empty() && o.uniform_bits == 0) {
      with_type.uniform_bits = static_cast<int>(gt->BitsPerWeight());
      if (with_type.uniform_bits > 6) with_type.uniform_bits = 8;
      with_type.group_size = 32;
    }
  }
  if (with_type.allocation.empty() == (with_type.uniform_bits == 0)) {
    return Status::InvalidArgument(
        "give exactly one of --allocation allocation.json and --uniform BITS");
  }
  if (o.format != "mlx" && o.format != "gguf") {
    return Status::InvalidArgument("--format '" + o.format + "': expected 'mlx' or 'gguf'");
  }
  if (o.mlx_compatible && o.format != "mlx") {
    return Status::InvalidArgument("--mlx-compatible applies to --format mlx only");
  }
  MOEQ_ASSIGN_OR_RETURN(uint64_t max_shard, ParseByteSize(o.max_shard_size));
  if (max_shard == 0) return Status::InvalidArgument("--max-shard-size must be positive");
  std::vector<std::string> inputs = {o.model_dir};
  if (!o.allocation.empty()) inputs.push_back(o.allocation);
  if (!o.stats.empty()) inputs.push_back(o.stats);
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, inputs, ctx.force));
  if (!o.eval.empty()) inputs.push_back(o.eval);
  // The GGUF model card ("<name>.README.md") belongs to the .gguf output: it is replaced with it.
  // Without the .gguf (a run killed after writing the card, or a removed output) it is a
  // leftover, so only an input may not be overwritten.
  if (o.format == "gguf" && !o.no_model_card) {
    MOEQ_RETURN_IF_ERROR(
        CheckOutputPath(GgufCardPath(o.output), inputs, /*force=*/true).WithContext("model card"));
  }
  {
    // The output must not lie inside the input directory either.
    std::error_code ec;
    const fs::path in = fs::weakly_canonical(o.model_dir, ec);
    const fs::path out = fs::weakly_canonical(o.output, ec);
    if (!ec && out.string().rfind(in.string() + "/", 0) == 0) {
      return Status::InvalidArgument("--output " + o.output +
                                     " lies inside the input model directory " + o.model_dir);
    }
  }

  MOEQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(o.model_dir));
  MOEQ_ASSIGN_OR_RETURN(QuantPlan plan, MakePlan(with_type, *ckpt));
  if (!o.allocation.empty()) {
    MOEQ_RETURN_IF_ERROR(artifacts::RequireSameModel(
        {o.allocation, plan.allocation_model_fingerprint},
        {"checkpoint " + o.model_dir, ckpt->fingerprint()}, o.allow_model_mismatch));
  }
  MOEQ_RETURN_IF_ERROR(CheckPlanTarget(o, *ckpt, plan));
  // Encoder overrides: --encoder for every quantized tensor, then --expert-encoder for routed
  // experts.
  for (const auto& [flag, value, experts_only] :
       {std::tuple<const char*, const std::string*, bool>{"--encoder", &o.encoder, false},
        std::tuple<const char*, const std::string*, bool>{"--expert-encoder", &o.expert_encoder,
                                                          true}}) {
    if (value->empty()) continue;
    auto k = quant::ParseEncoder(*value);
    if (!k.ok()) return Status::InvalidArgument(std::string(flag) + ": " + k.status().message());
    for (const auto& [name, fmt] : plan.formats) {
      if (!fmt->is_affine()) continue;
      const CheckpointTensor* t = ckpt->Find(name);
      if (experts_only && (t == nullptr || !IsExpertRole(t->id.role))) continue;
      if (*k == quant::EncoderKind::kRtn) {
        plan.encoders.erase(name);
      } else {
        plan.encoders[name] = *k;
      }
    }
  }
  std::unique_ptr<InputStatsFile> stats;
  if (!o.stats.empty()) {
    MOEQ_ASSIGN_OR_RETURN(stats, InputStatsFile::Open(o.stats));
  }
  if (plan.DataAware()) {
    if (!stats) {
      return Status::InvalidArgument(
          "the plan uses data-aware encoders (weighted/gptq): give --stats "
          "activation_stats.safetensors "
          "(moeq-profile --activation-stats, with --gram for gptq)");
    }
  }
  // A file-size limit or a full disk must become an error we can clean up after, not a signal.
  std::signal(SIGXFSZ, SIG_IGN);
  if (o.format == "gguf") return RunGguf(o, ctx, *ckpt, plan, stats.get(), start);
  // The checkpoint is built in a unique temporary sibling directory (AtomicDir) and renamed into
  // place only once complete, manifest last; --force swaps an existing output out atomically.
  MOEQ_ASSIGN_OR_RETURN(auto out_dir, AtomicDir::Create(o.output, {.overwrite = ctx.force}));
  const std::string& tmp = out_dir->temp_path();

  MlxWriteOptions wo;
  wo.stacked = o.mlx_compatible;
  wo.max_shard_bytes = max_shard;
  wo.threads = ctx.threads;
  wo.progress = ctx.progress;
  wo.stats = stats.get();
  wo.encoder_options = o.encoder_options;
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json body, WriteMlxCheckpoint(*ckpt, plan, tmp, wo));

  nlohmann::json inputs_json = {{"model", o.model_dir}, {"model_fingerprint", ckpt->fingerprint()}};
  if (!o.allocation.empty()) {
    inputs_json["allocation"] = o.allocation;
    inputs_json["allocation_sha256"] = plan.allocation_sha256;
  }
  nlohmann::json manifest = MakeArtifactHeader("moeq.quant_manifest", 1, ctx, inputs_json);
  for (auto& [k, v] : body.items()) manifest[k] = v;
  manifest["plan"] = {{"source", plan.source},
                      {"allocation_sha256", plan.allocation_sha256},
                      {"pruned", plan.pruned.size()}};
  if (stats) {
    manifest["inputs"]["stats"] = o.stats;
    manifest["inputs"]["stats_sha256"] = stats->sha256();
  }
  if (plan.DataAware()) {
    std::map<std::string, int64_t> by_encoder;
    for (const auto& [name, fmt] : plan.formats) {
      if (fmt->is_affine()) ++by_encoder[std::string(quant::EncoderName(plan.EncoderOf(name)))];
    }
    const quant::EncoderOptions& eo = o.encoder_options;
    manifest["plan"]["encoders"] = by_encoder;
    manifest["plan"]["encoder_options"] = {{"gptq_damp", eo.gptq_damp},
                                           {"gptq_block", eo.gptq_block},
                                           {"gptq_act_order", eo.gptq_act_order},
                                           {"weighted_steps", eo.weighted_steps}};
  }
  if (!o.no_model_card) {
    ModelCardInput card = CardInput(o, ctx, *ckpt, plan);
    const auto& totals = manifest["totals"];
    card.output_bytes = totals.contains("bytes") ? totals["bytes"].get<uint64_t>() : 0;
    card.written_bpw = totals.contains("bpw") ? totals["bpw"].get<double>() : 0.0;
    if (!o.eval.empty()) {
      MOEQ_ASSIGN_OR_RETURN(artifacts::EvalArtifact eval, artifacts::ReadEval(o.eval));
      card.eval = artifacts::EvalToJson(eval);
      card.eval_name = fs::path(o.eval).filename().string();
    }
    MOEQ_RETURN_IF_ERROR(
        WriteFileAtomic((fs::path(tmp) / "README.md").string(), RenderModelCard(card)));
  }
  MOEQ_RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(tmp) / "quant_manifest.json").string(), DumpJson(manifest)));

  // Into place: an existing output (--force) is replaced only now that the new one is complete.
  MOEQ_RETURN_IF_ERROR(out_dir->Commit());

  const auto& totals = manifest["totals"];
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info(
      "quantized {} ({}): {} of {} tensors quantized, {:.1f} MiB -> {:.1f} MiB ({:.3f} bpw, NRMSE "
      "{:.4f}), "
      "{} layout, wrote {} in {:.1f} s",
      o.model_dir, plan.source, totals["quantized_tensors"].get<int64_t>(),
      totals["tensors"].get<int64_t>(), totals["source_bytes"].get<double>() / 1048576.0,
      totals["bytes"].get<double>() / 1048576.0, totals["bpw"].get<double>(),
      totals["nrmse"].get<double>(), body["layout"].get<std::string>(), o.output, secs);
  return Status::Ok();
}

}  // namespace moeq
