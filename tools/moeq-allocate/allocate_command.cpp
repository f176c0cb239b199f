// moeq-allocate: mixed-precision bit allocation (MINT MCKP with the SQNR veto; DynaMINT tiers).
#include "moeq-allocate/allocate_command.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "moeq/allocate/allocation.h"
#include "moeq/artifacts/allocate_rules.h"
#include "moeq/artifacts/allocation.h"
#include "moeq/artifacts/model_match.h"
#include "moeq/artifacts/routing_profile.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/target_cost.h"
#include "moeq/profile/expert_tiers.h"
#include "moeq/profile/routing_profile.h"
#include "moeq/quant/quant_format.h"

namespace moeq {
namespace {

std::string GiBText(uint64_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f GiB", static_cast<double>(b) / (1024.0 * 1024 * 1024));
  return buf;
}

std::string CurvePath(const AllocateCommandOptions& o, const std::string& given, const char* ext) {
  if (!given.empty()) return given;
  std::filesystem::path p(o.output);
  p.replace_extension();
  return p.string() + ext;
}

Result<alloc::SolverKind> ParseSolver(const std::string& s) {
  if (s == "auto") return alloc::SolverKind::kAuto;
  if (s == "exact") return alloc::SolverKind::kExact;
  if (s == "lagrangian") return alloc::SolverKind::kLagrangian;
  return Status::InvalidArgument("--solver '" + s + "': expected auto, exact or lagrangian");
}

}  // namespace

Status RunAllocate(const AllocateCommandOptions& o, const ArtifactContext& ctx) {
  using namespace alloc;
  if (o.sensitivity.empty())
    return Status::InvalidArgument("missing the sensitivity.jsonl argument");
  if (o.budget.empty() == (o.bpw <= 0)) {
    return Status::InvalidArgument(
        "give exactly one budget: --budget SIZE (e.g. 21GB, 19.5GiB) or --bpw BITS (e.g. 4.5)");
  }
  if (o.bpw < 0 || o.bpw > 32)
    return Status::InvalidArgument("--bpw " + std::to_string(o.bpw) +
                                   ": expected a value in (0, 32]");
  if (!(o.min_sqnr >= -200 && o.min_sqnr <= 200))
    return Status::InvalidArgument("--min-sqnr: expected a value in dB between -200 and 200");
  if (o.curve < 0 || o.curve == 1 || o.curve > 10000)
    return Status::InvalidArgument("--curve " + std::to_string(o.curve) +
                                   ": expected 0 or 2..10000 points");
  AllocationSettings settings;
  MOEQ_ASSIGN_OR_RETURN(settings.policy, ParsePolicy(o.policy));
  MOEQ_ASSIGN_OR_RETURN(settings.solver, ParseSolver(o.solver));
  MOEQ_ASSIGN_OR_RETURN(settings.objective, ParseObjective(o.objective));
  settings.min_sqnr = o.min_sqnr;
  settings.allow_prune = o.allow_prune;
  if (o.allow_prune && settings.policy != Policy::kTiered) {
    return Status::InvalidArgument("--allow-prune applies only to --policy tiered");
  }
  if (settings.policy != Policy::kMckp && o.profile.empty()) {
    return Status::InvalidArgument("--policy " + o.policy +
                                   " needs --profile routing_profile.json");
  }
  std::optional<uint64_t> budget_bytes;
  const bool min_budget = o.budget == "min";  // the smallest feasible plan
  if (!o.budget.empty() && !min_budget) {
    auto b = ParseByteSize(o.budget);
    if (!b.ok()) return Status::InvalidArgument("--budget: " + b.status().message());
    budget_bytes = *b;
  }

  const std::vector<std::string> inputs = {o.sensitivity, o.profile, o.priors, o.rules, o.tiers};
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, inputs, ctx.force));
  const std::string csv_path = o.curve > 0 ? CurvePath(o, o.curve_csv, ".curve.csv") : "";
  const std::string svg_path = o.curve > 0 ? CurvePath(o, o.curve_svg, ".curve.svg") : "";
  if (o.curve > 0) {
    MOEQ_RETURN_IF_ERROR(CheckOutputPath(csv_path, inputs, ctx.force));
    MOEQ_RETURN_IF_ERROR(CheckOutputPath(svg_path, inputs, ctx.force));
  }

  const auto t0 = std::chrono::steady_clock::now();
  MOEQ_ASSIGN_OR_RETURN(SensitivityFile sens, ReadSensitivity(o.sensitivity));
  nlohmann::json in = {{"sensitivity", o.sensitivity}, {"sensitivity_sha256", sens.sha256}};
  if (sens.header.contains("inputs") && sens.header["inputs"].is_object()) {
    const auto& si = sens.header["inputs"];
    if (si.contains("model")) in["model"] = si["model"];
    if (si.contains("model_fingerprint")) in["model_fingerprint"] = si["model_fingerprint"];
  }
  if (!o.priors.empty()) {
    MOEQ_ASSIGN_OR_RETURN(nlohmann::json pj, ReadJsonFile(o.priors));
    MOEQ_ASSIGN_OR_RETURN(settings.priors, PriorsFromJson(pj, o.priors));
    MOEQ_ASSIGN_OR_RETURN(in["priors_sha256"], Sha256File(o.priors));
    in["priors"] = o.priors;
  }
  if (!o.rules.empty()) {
    MOEQ_ASSIGN_OR_RETURN(const artifacts::AllocateRulesArtifact rules,
                          artifacts::ReadAllocateRules(o.rules));
    MOEQ_RETURN_IF_ERROR(AppendRules(rules, o.rules, &settings.priors));
    MOEQ_ASSIGN_OR_RETURN(in["rules_sha256"], Sha256File(o.rules));
    in["rules"] = o.rules;
  }
  if (!o.tiers.empty()) {
    MOEQ_ASSIGN_OR_RETURN(settings.tiers, LoadTierThresholds(o.tiers));
    MOEQ_ASSIGN_OR_RETURN(in["tiers_sha256"], Sha256File(o.tiers));
    in["tiers"] = o.tiers;
  }
  if (!o.profile.empty()) {
    MOEQ_ASSIGN_OR_RETURN(const artifacts::RoutingProfileArtifact pa,
                          artifacts::ReadRoutingProfile(o.profile));
    MOEQ_RETURN_IF_ERROR(artifacts::RequireSameModel(
        {o.sensitivity, artifacts::ModelFingerprintOf(sens.header)},
        {o.profile, artifacts::ModelFingerprintOf(pa.header)}, o.allow_model_mismatch));
    MOEQ_ASSIGN_OR_RETURN(settings.profile, RoutingProfileFromArtifact(pa, o.profile));
    MOEQ_ASSIGN_OR_RETURN(in["profile_sha256"], Sha256File(o.profile));
    in["profile"] = o.profile;
  }

  // --target: cost every option at the bytes that writer stores (export/target_cost.h).
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<TargetCostModel> coster;
  if (!o.target.empty()) {
    MOEQ_ASSIGN_OR_RETURN(const WriteTarget target, ParseWriteTarget(o.target));
    std::string model_dir = o.model;
    if (model_dir.empty() && in.contains("model") && in["model"].is_string())
      model_dir = in["model"].get<std::string>();
    if (model_dir.empty()) {
      return Status::InvalidArgument("--target " + o.target +
                                     " needs the model directory: " + o.sensitivity +
                                     " names none (inputs.model); give --model DIR");
    }
    MOEQ_ASSIGN_OR_RETURN(ckpt, Checkpoint::Open(model_dir));
    std::set<std::string, std::less<>> costed;
    for (const auto& t : sens.tensors) costed.insert(t.name);
    MOEQ_ASSIGN_OR_RETURN(coster, TargetCostModel::Make(*ckpt, target, costed));
    TargetCosting tc;
    tc.target = std::string(WriteTargetName(target));
    tc.stacked = !TargetHoldsPerExpertFormats(target);
    tc.fixed_bytes = coster->fixed_bytes();
    tc.weights = coster->weights();
    tc.accuracy = coster->accuracy();
    const TargetCostModel* c = coster.get();
    tc.item_bytes = [c](const std::vector<const SensitivityTensor*>& members,
                        const std::string& format) -> Result<uint64_t> {
      const quant::FormatTraits* f = quant::FindFormat(format);
      if (f == nullptr) return Status::InvalidArgument("unknown format '" + format + "'");
      std::vector<std::string> names;
      for (const auto* t : members) names.push_back(t->name);
      return c->ItemBytes(names, f);
    };
    settings.target = std::move(tc);
    in["model"] = model_dir;
    spdlog::info("target {}: {} bytes fixed ({}); {}", o.target, coster->fixed_bytes(),
                 GiBText(coster->fixed_bytes()), coster->accuracy());
  }

  MOEQ_ASSIGN_OR_RETURN(AllocationModel model, BuildAllocationModel(sens, settings));
  std::optional<double> bpw;
  if (min_budget) {
    budget_bytes = model.MinFileBytes();
  } else if (!budget_bytes) {
    bpw = o.bpw;
    // With a target: bits per weight of the whole written file (every tensor it stores).
    const double weights = model.target ? static_cast<double>(model.target->weights)
                                        : static_cast<double>(model.total_params);
    budget_bytes = static_cast<uint64_t>(std::floor(o.bpw * weights / 8.0));
  }
  const uint64_t min_bytes = model.MinFileBytes(), max_bytes = model.MaxFileBytes();
  if (*budget_bytes < min_bytes) {
    return Status::Unsupported(o.sensitivity + ": budget " + std::to_string(*budget_bytes) +
                               " bytes (" + GiBText(*budget_bytes) +
                               ") is below the smallest feasible size of the allocated tensors, " +
                               std::to_string(min_bytes) + " bytes (" + GiBText(min_bytes) +
                               "), with the SQNR veto at " + std::to_string(o.min_sqnr) +
                               " dB, pins and tiers applied");
  }
  if (*budget_bytes >= max_bytes) {
    spdlog::info(
        "budget {} bytes is at or above full precision ({} bytes): every tensor keeps its "
        "highest-precision config (16-bit)",
        *budget_bytes, max_bytes);
  }
  MOEQ_ASSIGN_OR_RETURN(AllocationResult result,
                        SolveAllocation(sens, model, *budget_bytes, settings.solver));
  const double solve_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  nlohmann::json j =
      MakeArtifactHeader(artifacts::kAllocationSchema, artifacts::kAllocationVersion, ctx, in);
  nlohmann::json body = AllocationToJson(sens, result, model, settings.policy, bpw);
  for (auto& [k, v] : body.items()) j[k] = std::move(v);
  j["settings"] = {{"priors", PriorsToJson(settings.priors)},
                   {"tiers", TierThresholdsToJson(settings.tiers)},
                   {"min_sqnr_db", o.min_sqnr},
                   {"allow_prune", o.allow_prune},
                   {"policy", std::string(PolicyName(settings.policy))},
                   {"objective", std::string(ObjectiveName(settings.objective))}};
  if (!o.target.empty()) j["settings"]["target"] = o.target;
  // Through the schema: what is written is what the readers parse.
  MOEQ_ASSIGN_OR_RETURN(artifacts::AllocationArtifact alloc,
                        artifacts::ParseAllocation(j, o.output + " (being written)"));
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(o.output, DumpJson(artifacts::AllocationToJson(alloc)),
                                       {.overwrite = ctx.force}));

  std::fputs(SummaryTable(sens, result).c_str(), stdout);
  if (model.target) {
    const uint64_t file = result.solution.bytes + model.target->fixed_bytes;
    std::printf(
        "\ntarget %s: file %llu bytes (%s) of %llu budget, %.4f bpw over %lld weights; fixed "
        "%llu bytes\n%s\nper-expert formats: only --target mlx (and moeq's own engine) hold "
        "them; mlx-stacked and gguf store one format per (layer, projection) of experts\n",
        model.target->target.c_str(), static_cast<unsigned long long>(file), GiBText(file).c_str(),
        static_cast<unsigned long long>(*budget_bytes),
        8.0 * static_cast<double>(file) / static_cast<double>(model.target->weights),
        static_cast<long long>(model.target->weights),
        static_cast<unsigned long long>(model.target->fixed_bytes),
        model.target->stacked ? "experts: one format per (layer, projection), chosen in the MCKP"
                              : "experts: per-expert formats");
  }
  std::fflush(stdout);

  if (o.curve > 0) {
    MOEQ_ASSIGN_OR_RETURN(std::vector<CurvePoint> curve,
                          BudgetCurve(model, o.curve, settings.solver));
    MOEQ_RETURN_IF_ERROR(
        WriteFileAtomic(csv_path, CurveCsv(curve, model.total_params), {.overwrite = ctx.force}));
    MOEQ_RETURN_IF_ERROR(WriteFileAtomic(
        svg_path,
        CurveSvg(curve, model.total_params,
                 "moeq-allocate budget curve (" + std::string(PolicyName(settings.policy)) +
                     "): " + std::filesystem::path(o.sensitivity).filename().string(),
                 settings.objective == Objective::kMse ? "Σ π²·α·x·NRMSE²" : "Σ π·α·NRMSE"),
        {.overwrite = ctx.force}));
    const auto& k = curve[CurveKnee(curve)];
    spdlog::info(
        "budget curve: {} points from {} to {} bytes; knee at {} bytes (objective {:.6g}); wrote "
        "{} and {}",
        curve.size(), curve.front().budget, curve.back().budget, k.budget, k.objective, csv_path,
        svg_path);
  }
  const auto& s = result.solution;
  spdlog::info(
      "allocated {} tensors ({} params) with {} ({} objective): {} bytes ({}) of {} budget, {:.4f} "
      "bpw; objective {:.6g}, lower bound {:.6g}, gap {:.3g}%; "
      "{} configs vetoed, {} tensors forced; {:.3f} s; wrote {}",
      sens.tensors.size(), model.total_params, s.method, ObjectiveName(settings.objective), s.bytes,
      GiBText(s.bytes), *budget_bytes,
      8.0 * static_cast<double>(s.bytes) / static_cast<double>(model.total_params), s.objective,
      s.lower_bound, 100.0 * s.gap, model.vetoed_configs, model.forced_tensors, solve_s, o.output);
  return Status::Ok();
}

}  // namespace moeq
