// moeq-profile: how often the router picks each expert on calibration text, and the second
// moments of every linear layer's input.
#include "moeq/commands.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::ProfileCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-profile", "Expert routing and activation statistics on calibration text",
      [&](CLI::App& app) {
        app.add_option("model", o.model_dir, "Model directory (Hugging Face layout)")->required();
        auto* text = app.add_option("--text", o.input.text_file, "Calibration text, tokenized with the model's tokenizer.json");
        auto* toks = app.add_option("--tokens", o.input.tokens_file, "Pre-tokenized ids (JSON list or .u32/.u16 binary)");
        text->excludes(toks);
        app.add_option("--context", o.context, "Tokens per window");
        app.add_option("--max-windows", o.max_windows, "Profile at most N windows (0 = all)");
        app.add_option("-o,--output", o.output, "routing_profile.json to write");
        app.add_option("--activation-stats", o.activation_stats, "Also write per-layer input second moments (safetensors) here");
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunProfile(o, ctx.artifact); });
}
