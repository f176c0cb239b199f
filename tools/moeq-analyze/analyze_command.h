// moeq-analyze: per-tensor sensitivity features and the rate-distortion grid, and the merge of
// sharded runs. The analysis is the library's (moeq/sensitivity/analysis.h); this is the
// command: option checks and the call.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"
#include "moeq/sensitivity/analysis.h"

namespace moeq {

/// moeq-analyze MODEL -o sensitivity.jsonl (the fields: moeq/sensitivity/analysis.h).
using AnalyzeCommandOptions = sensitivity::AnalysisOptions;
/// Checks the option values, then runs sensitivity::AnalyzeSensitivity.
Status RunAnalyze(const AnalyzeCommandOptions& options, const ArtifactContext& ctx);

/// moeq-analyze merge OUT IN...: combines shard outputs into the unsharded file.
struct AnalyzeMergeOptions {
  std::string output;
  std::vector<std::string> inputs;
};
Status RunAnalyzeMerge(const AnalyzeMergeOptions& options, const ArtifactContext& ctx);

/// Parses "i/N" (0 <= i < N, N >= 1). InvalidArgument names the text.
using sensitivity::ParseShardSpec;

}  // namespace moeq
