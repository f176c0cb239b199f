// moeq-report: one self-contained HTML file (inline SVG, no scripts, no network) summarising a
// quantization run: the bit allocation as layer × expert heatmaps per projection, the routing
// hotness heatmap, the budget curve, the distribution of every sensitivity feature and the
// evaluation comparison. Every input is optional; sections without input are omitted.
#pragma once

#include <string>
#include <vector>

#include "moeq/artifact.h"
#include "moeq/status.h"

namespace moeq {

struct ReportCommandOptions {
  std::string output = "report.html";
  std::string title = "moeq quantization report";
  std::string profile;      ///< routing_profile.json (moeq-profile)
  std::string sensitivity;  ///< sensitivity.jsonl (moeq-analyze)
  std::string allocation;   ///< allocation.json (moeq-allocate)
  std::string curve;        ///< budget curve CSV (moeq-allocate --curve): needs a bytes and an objective column
  /// eval.json files (moeq-eval), each "LABEL=PATH" or "PATH" (label: the file name).
  std::vector<std::string> evals;
};

/// The report's HTML text (deterministic: same inputs give the same bytes).
Result<std::string> BuildReportHtml(const ReportCommandOptions& options, const ArtifactContext& ctx);

/// Builds the report and writes it atomically to options.output (refusing to overwrite an
/// input, or an existing file without ctx.force).
Status RunReport(const ReportCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
