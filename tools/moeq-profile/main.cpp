// moeq-profile: how often the router picks each expert on calibration text (per domain and
// combined, with rank, co-activation, hotness over time and a tier per expert), and the second
// moments of every linear layer's input; or the same routing statistics from routing traces.
#include "moeq-profile/profile_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::ProfileCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-profile", "Expert routing and activation statistics on calibration text",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-profile models/tiny-qwen3moe --text data/moe-corpus/valid.txt -o "
            "routing_profile.json \\\n      --activation-stats "
            "activation_stats.safetensors\n\nDocumentation: README.md and docs/ of the moeq "
            "sources; man moeq-profile");
        app.add_option(
               "model", o.model_dir,
               "Model directory (Hugging Face layout); with --trace only its config.json is read")
            ->required();
        auto* text = app.add_option(
            "--text", o.text_files,
            "Calibration text, tokenized with the model's tokenizer.json (repeatable)");
        auto* toks =
            app.add_option("--tokens", o.token_files,
                           "Pre-tokenized ids, JSON list or .u32/.u16 binary (repeatable)");
        auto* trace = app.add_option("--trace", o.trace_files,
                                     "Routing trace (JSONL) recorded by another runtime, instead "
                                     "of running the model (repeatable)");
        text->excludes(toks)->excludes(trace);
        toks->excludes(trace);
        app.add_option(
            "--domain", o.domains,
            "Domain of each input, in the same order (repeat once per --text/--tokens/--trace)");
        app.add_option("--context", o.context, "Tokens per window");
        app.add_option("--max-windows", o.max_windows,
                       "Profile at most N windows of each input (0 = all)");
        app.add_option("-o,--output", o.output, "routing_profile.json to write");
        app.add_option("--activation-stats", o.activation_stats,
                       "Also write per-layer input second moments (safetensors) here");
        app.add_flag("--gram", o.gram,
                     "With --activation-stats: also the full Gram matrix X^T X of every linear "
                     "input (gptq, activation-weighted error)");
        app.add_option("--shrinkage-tokens", o.shrinkage_tokens,
                       "Shrink each expert's statistics toward the layer's pooled ones with the "
                       "weight of this many tokens (docs/artifacts.md)");
        app.add_option("--tiers", o.tiers,
                       "Tier thresholds (moeq.tiers JSON, e.g. configs/tiers.json; default: the "
                       "same built in)");
        app.add_option("--hotness", o.hotness,
                       "Hotness parameters (moeq.hotness JSON, e.g. configs/hotness.json; default: "
                       "the same built in)");
        app.add_option("--top-pairs", o.top_pairs, "Co-activated expert pairs kept per layer");
        app.add_option("--write-trace", o.write_trace,
                       "Also write the engine's routing as a routing trace (JSONL) here");
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunProfile(o, ctx.artifact); });
}
