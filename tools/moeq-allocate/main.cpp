// moeq-allocate: choose each tensor's quantization config for a memory budget (MINT MCKP with the
// SQNR veto; DynaMINT expert tiers).
#include "moeq-allocate/allocate_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::AllocateCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-allocate",
      "Mixed-precision bit allocation for a memory budget (MCKP with an SQNR veto, expert tiers)",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-allocate sensitivity.jsonl --bpw 4.5 -o allocation.json --curve "
            "24\n\n  moeq-allocate sensitivity.jsonl --budget 21GB --objective mse -o "
            "allocation.json\n\n  moeq-allocate sensitivity.jsonl --bpw 4.5 --policy tiered "
            "--profile routing_profile.json -o allocation.json\n\n  moeq-allocate "
            "sensitivity.jsonl --target gguf --budget 15206496B -o "
            "allocation.json\n\nDocumentation: README.md and "
            "docs/ of the moeq sources; man moeq-allocate");
        app.add_option("sensitivity", o.sensitivity, "sensitivity.jsonl from moeq-analyze")
            ->required();
        app.add_option("--profile", o.profile,
                       "routing_profile.json from moeq-profile (mckp-hotness, tiered)");
        auto* budget = app.add_option("--budget", o.budget,
                                      "Bytes of the allocated tensors (with --target: of the whole "
                                      "written file): 21GB, 19.5GiB, 734MB, 15206496B, or min "
                                      "(the smallest feasible plan)");
        auto* bpw = app.add_option("--bpw", o.bpw,
                                   "Or average bits per weight over the allocated tensors (with "
                                   "--target: over every weight of the written file; e.g. 4.5)");
        budget->excludes(bpw);
        app.add_option(
               "--policy", o.policy,
               "mckp (MINT), mckp-hotness (alpha from routing hotness) or tiered (DynaMINT)")
            ->check(CLI::IsMember({"mckp", "mckp-hotness", "tiered"}));
        app.add_option("--objective", o.objective,
                       "nrmse (MINT: sum of prior*alpha*NRMSE) or mse (sum of "
                       "prior^2*alpha*exposure*NRMSE^2: output noise power)")
            ->check(CLI::IsMember({"nrmse", "mse"}));
        app.add_option("--priors", o.priors,
                       "Priors, hotness constants and rules (moeq.priors; default: built-in = "
                       "configs/priors.json)");
        app.add_option("--rules", o.rules, "Extra pin/bound rules (moeq.allocate_rules)");
        app.add_option(
            "--tiers", o.tiers,
            "Tier thresholds and formats (moeq.tiers; default: built-in = configs/tiers.json)");
        app.add_option("--min-sqnr", o.min_sqnr, "SQNR veto floor in dB");
        app.add_flag("--allow-model-mismatch", o.allow_model_mismatch,
                     "Use a --profile of another model than the sensitivity file's (warn only)");
        app.add_flag("--allow-prune", o.allow_prune,
                     "Tiered: zero the prunable experts (else they are deprioritized)");
        app.add_option("--solver", o.solver, "auto, exact or lagrangian")
            ->check(CLI::IsMember({"auto", "exact", "lagrangian"}));
        app.add_option("--target", o.target,
                       "Written file the budget is for: mlx (per-expert layout), mlx-stacked "
                       "(mlx-lm switch_mlp) or gguf (llama.cpp). --budget/--bpw then mean the "
                       "bytes/bits per weight of that whole file, each option costed at the "
                       "bytes that writer stores; stacked targets choose one format per (layer, "
                       "projection) of experts. Default: the allocated tensors' measured bytes")
            ->check(CLI::IsMember({"mlx", "mlx-stacked", "gguf"}));
        app.add_option("--model", o.model,
                       "Model directory for --target (default: the sensitivity file's "
                       "inputs.model)");
        app.add_option("-o,--output", o.output, "allocation.json to write");
        app.add_option("--curve", o.curve, "Budget sweep with N points (CSV + SVG)");
        app.add_option("--curve-csv", o.curve_csv,
                       "Curve CSV path (default: <output stem>.curve.csv)");
        app.add_option("--curve-svg", o.curve_svg,
                       "Curve SVG path (default: <output stem>.curve.svg)");
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunAllocate(o, ctx.artifact); });
}
