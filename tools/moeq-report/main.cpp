// moeq-report: one self-contained HTML report (inline SVG) of a quantization run.
#include "moeq-report/report_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::ReportCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-report",
      "Self-contained HTML report of a quantization run (inline SVG charts)",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-report --profile routing_profile.json --sensitivity "
            "sensitivity.jsonl --allocation allocation.json \\\n      --eval bf16=eval_bf16.json "
            "--eval moeq=eval_moeq.json -o report.html\n\n  moeq-report --no-html --table markdown "
            "--table-baseline uniform --eval uniform=eval_q4.json --eval "
            "moeq=eval_moeq.json\n\nDocumentation: README.md and docs/ of the moeq sources; man "
            "moeq-report");
        app.add_option("-o,--output", o.output, "HTML file to write");
        app.add_option("--title", o.title, "Report title");
        app.add_option("--profile", o.profile,
                       "routing_profile.json (moeq-profile): routing hotness heatmap");
        app.add_option("--sensitivity", o.sensitivity,
                       "sensitivity.jsonl (moeq-analyze): feature distributions");
        app.add_option("--allocation", o.allocation,
                       "allocation.json (moeq-allocate): bit allocation heatmaps");
        app.add_option("--curve", o.curve, "Budget curve CSV (moeq-allocate --curve)");
        app.add_option("--eval", o.evals,
                       "eval.json (moeq-eval), as LABEL=PATH or PATH; repeatable");
        app.add_option("--table", o.table,
                       "Also print the evaluation comparison on stdout: text or markdown")
            ->check(CLI::IsMember({"text", "markdown"}));
        app.add_option("--table-baseline", o.table_baseline,
                       "Label of the --eval the table's KL ratio column divides by");
        app.add_flag("!--no-html", o.html, "Only print the --table; write no HTML file");
        app.add_flag("--allow-model-mismatch", o.allow_model_mismatch,
                     "Report on artefacts of different models (warn only)");
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunReport(o, ctx.artifact); });
}
