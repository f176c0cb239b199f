// moeq-inspect's command: describe a checkpoint directory (architecture, parameters and bytes
// per role, dtypes, shards) or measure uniform quantization error over it (--quant-report).
#pragma once

#include <string>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"

namespace moeq {

/// moeq-inspect's options (one field per flag).
struct InspectCommandOptions {
  std::string model_dir;
  /// Print JSON instead of a table.
  bool json = false;
  /// Also measure uniform quantization error (MINT grid formats) over every tensor; prints that
  /// report instead of the summary.
  bool quant_report = false;
  /// --strict, --check-finite.
  CheckpointOptions open;
};

/// Opens the checkpoint and prints the report on stdout.
Status RunInspect(const InspectCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
