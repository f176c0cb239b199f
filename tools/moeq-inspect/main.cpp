// moeq-inspect: describe a Hugging Face MoE checkpoint (architecture, parameter and byte counts
// per role, group and dtype, shards, unrecognised tensors) as a table or as JSON.
#include "moeq-inspect/inspect_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::InspectCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-inspect", "Describe a Hugging Face MoE checkpoint directory",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-inspect models/tiny-qwen3moe\n\n  moeq-inspect models/tiny-qwen3moe "
            "--json\n\n  moeq-inspect models/tiny-qwen3moe --check-finite "
            "--quant-report\n\nDocumentation: README.md and docs/ of the moeq sources; man "
            "moeq-inspect");
        app.add_option("model", o.model_dir, "Model directory (config.json + *.safetensors)")
            ->required()
            ->check(CLI::ExistingDirectory);
        app.add_flag("--json", o.json, "Print the report as JSON instead of a table");
        app.add_flag(
            "--quant-report", o.quant_report,
            "Also measure uniform quantization error (MINT grid formats) over every tensor");
        app.add_flag("--strict", o.open.strict, "Fail on tensors the adapter does not know");
        app.add_flag("--check-finite", o.open.check_finite,
                     "Read every weight and fail on NaN or Inf");
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunInspect(o, ctx.artifact); });
}
