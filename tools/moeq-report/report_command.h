// moeq-report: one self-contained HTML file (inline SVG, no scripts, no network) summarising a
// quantization run: the bit allocation as layer × expert heatmaps per projection, the routing
// hotness heatmap, the budget curve, the distribution of every sensitivity feature and the
// evaluation comparison. Every input is optional; sections without input are omitted.
#pragma once

#include <string>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"

namespace moeq {

struct ReportCommandOptions {
  std::string output = "report.html";
  std::string title = "moeq quantization report";
  std::string profile;      ///< routing_profile.json (moeq-profile)
  std::string sensitivity;  ///< sensitivity.jsonl (moeq-analyze)
  std::string allocation;   ///< allocation.json (moeq-allocate)
  std::string
      curve;  ///< budget curve CSV (moeq-allocate --curve): needs a bytes and an objective column
  /// eval.json files (moeq-eval), each "LABEL=PATH" or "PATH" (label: the file name).
  std::vector<std::string> evals;
  /// "" (none), "text" or "markdown": also print the evaluation comparison (bytes, bpw, PPL,
  /// ΔPPL, KL mean/p99, top-1 agreement) as a table on stdout.
  std::string table;
  /// Label of the eval whose KL the table's "KL ratio" column divides by ("" = no such column).
  std::string table_baseline;
  /// Write the HTML file (false: only the table).
  bool html = true;
  /// Report on artefacts whose model fingerprints differ (a warning instead of the error).
  bool allow_model_mismatch = false;
};

/// The evaluation comparison table of `evals` (each "LABEL=PATH" or "PATH"), as aligned text
/// or a Markdown table. `baseline` ("" = none) names the row the KL ratio column refers to.
Result<std::string> EvalComparisonTable(const std::vector<std::string>& evals,
                                        std::string_view format, std::string_view baseline);

/// The report's HTML text (deterministic: same inputs give the same bytes).
Result<std::string> BuildReportHtml(const ReportCommandOptions& options,
                                    const ArtifactContext& ctx);

/// Builds the report and writes it atomically to options.output (refusing to overwrite an
/// input, or an existing file without ctx.force).
Status RunReport(const ReportCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
