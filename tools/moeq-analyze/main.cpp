// moeq-analyze: per-tensor sensitivity features and the rate-distortion grid (sensitivity.jsonl);
// `moeq-analyze merge OUT SHARD...` combines --shard outputs.
#include "moeq-analyze/analyze_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::AnalyzeCommandOptions o;
  moeq::AnalyzeMergeOptions m;
  CLI::App* merge = nullptr;
  return moeq::tool::RunTool(
      argc, argv, "moeq-analyze",
      "Per-tensor quantization sensitivity features and the rate-distortion grid",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-analyze models/tiny-qwen3moe --activation-stats "
            "activation_stats.safetensors -o sensitivity.jsonl\n\n  moeq-analyze MODEL --shard 0/4 "
            "-o s0.jsonl   # one of 4 layer shards\n\n  moeq-analyze merge sensitivity.jsonl "
            "s0.jsonl s1.jsonl s2.jsonl s3.jsonl\n\nDocumentation: README.md and docs/ of the moeq "
            "sources; man moeq-analyze");
        app.add_option("model", o.model_dir, "Model directory (Hugging Face layout)");
        app.add_option("-o,--output", o.output, "sensitivity.jsonl to write");
        app.add_option("--grid", o.grid,
                       "Rate-distortion grid (moeq.mint_grid JSON; default: "
                       "configs/mint_grid.json, compiled in)");
        app.add_option("--csv", o.csv, "Also write a CSV, one row per tensor x config");
        app.add_option(
            "--activation-stats", o.activation_stats,
            "activation_stats.safetensors from moeq-profile: adds noise_amplification_act");
        app.add_option("--rank", o.rank, "Singular values of the randomized SVD (k)");
        app.add_option("--oversampling", o.oversampling,
                       "Extra random directions of the randomized SVD");
        app.add_option("--power-iterations", o.power_iterations,
                       "Power iterations of the randomized SVD");
        app.add_option("--probes", o.probes, "Gaussian probe columns of the noise amplification");
        app.add_option("--kurtosis-group", o.kurtosis_group,
                       "Weights per group of the group kurtosis");
        app.add_option("--seed", o.seed, "Seed of the SVD sketches, probes and k-means");
        app.add_flag("--all-experts", o.all_experts,
                     "Analyse every routed expert (no k-means above the threshold)");
        app.add_option("--cluster-threshold", o.cluster_threshold,
                       "Cluster the experts of layers with more than this many");
        app.add_option("--shard", o.shard,
                       "i/N: analyse layers l with l % N == i (model-level tensors in shard 0)");
        app.add_option("--encoders", o.encoders,
                       "Encoders measured per affine config: rtn,weighted,gptq (comma-separated; "
                       "needs --activation-stats for weighted/gptq)");
        app.add_option("--error", o.error,
                       "Error the grid reports: weight (||W-Q||/||W||) or activation "
                       "(||(W-Q)X||/||WX||, needs --activation-stats)")
            ->check(CLI::IsMember({"weight", "activation"}));
        app.add_option("--gptq-damp", o.gptq_damp, "gptq dampening: lambda = damp * mean(diag H)");
        app.add_option("--gptq-block", o.gptq_block, "gptq lazy-batch columns");
        app.add_flag("--gptq-act-order", o.gptq_act_order,
                     "gptq: process columns in decreasing diag H");
        app.add_option("--weighted-steps", o.weighted_steps,
                       "weighted: range-shrink steps per side of the scale/bias search");
        merge = app.add_subcommand("merge", "Combine --shard outputs into one sensitivity.jsonl");
        merge->fallthrough();  // --force, -q, ... may follow the subcommand
        merge->add_option("out", m.output, "Merged sensitivity.jsonl to write")->required();
        merge->add_option("shards", m.inputs, "Shard outputs (every i of i/N exactly once)")
            ->required();
      },
      [&](const moeq::tool::ToolContext& ctx) {
        if (merge && merge->parsed()) return moeq::RunAnalyzeMerge(m, ctx.artifact);
        return moeq::RunAnalyze(o, ctx.artifact);
      });
}
