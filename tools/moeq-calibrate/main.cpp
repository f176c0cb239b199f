// moeq-calibrate: measure per-role quantization sensitivity (KL on calibration text) and write
// the priors moeq-allocate takes with --rules.
#include "moeq-calibrate/calibrate_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::CalibrateCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-calibrate",
      "Measured priors: KL of quantizing one tensor role at a time, as moeq-allocate rules",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-calibrate models/tiny-qwen3moe --sensitivity sensitivity.jsonl \\\n "
            "     --text data/moe-corpus/calib.txt -o calibrated_priors.json\n\nDocumentation: "
            "README.md and docs/ of the moeq sources; man moeq-calibrate");
        app.add_option("model", o.model_dir, "Model directory (Hugging Face layout, unquantized)")
            ->required();
        app.add_option("--sensitivity", o.sensitivity,
                       "sensitivity.jsonl of this model (moeq-analyze)")
            ->required();
        auto* text = app.add_option("--text", o.input.text_file,
                                    "Calibration text (not the evaluation text)");
        auto* tokens = app.add_option("--tokens", o.input.tokens_file, "Or calibration token ids");
        text->excludes(tokens);
        app.add_option("--windows", o.windows, "Windows run per probe");
        app.add_option("--context", o.context, "Tokens per window");
        app.add_option("--probe-format", o.probe_format,
                       "Format each role is probed with (a grid config)");
        app.add_option("--top-k", o.top_k,
                       "Reference entries kept per token for the KL (0 = whole vocabulary)");
        app.add_flag("--allow-model-mismatch", o.allow_model_mismatch,
                     "Use a sensitivity file of another model (warn only)");
        app.add_flag("!--whole-roles", o.per_layer,
                     "Probe each role over all layers at once instead of each (role, layer)");
        app.add_option("--method", o.method,
                       "Probe KL: kl (measured to the logits; default), local (probed layer only, "
                       "converted to KL: "
                       "about one forward pass for all probes, less accurate), auto (kl when it "
                       "costs at most 10 "
                       "forward passes, else local)")
            ->check(CLI::IsMember({"auto", "kl", "local"}));
        app.add_option("-o,--output", o.output,
                       "moeq.allocate_rules JSON to write (for moeq-allocate --rules)");
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunCalibrate(o, ctx.artifact); });
}
