// moeq-analyze: option checks, then the sensitivity analysis and the shard merge of the
// library (moeq/sensitivity/analysis.h).
#include "moeq-analyze/analyze_command.h"

#include <string>
#include <vector>

#include "moeq/quant/encoders.h"

namespace moeq {

Status RunAnalyze(const AnalyzeCommandOptions& o, const ArtifactContext& ctx) {
  if (o.model_dir.empty())
    return Status::InvalidArgument(
        "missing MODEL directory (moeq-analyze MODEL -o sensitivity.jsonl)");
  if (o.output.empty()) return Status::InvalidArgument("--output: empty path");
  if (o.rank < 1)
    return Status::InvalidArgument("--rank " + std::to_string(o.rank) + ": must be at least 1");
  if (o.oversampling < 0) return Status::InvalidArgument("--oversampling: must be >= 0");
  if (o.power_iterations < 0 || o.power_iterations > 20)
    return Status::InvalidArgument("--power-iterations: must be in [0, 20]");
  if (o.probes < 1 || o.probes > 4096)
    return Status::InvalidArgument("--probes: must be in [1, 4096]");
  if (o.kurtosis_group < 4) return Status::InvalidArgument("--kurtosis-group: must be at least 4");
  if (o.cluster_threshold < 1)
    return Status::InvalidArgument("--cluster-threshold: must be at least 1");
  if (!o.shard.empty()) {
    MOEQ_RETURN_IF_ERROR(ParseShardSpec(o.shard).status());
  }
  auto encoders = quant::ParseEncoderList(o.encoders);
  if (!encoders.ok()) return Status::InvalidArgument("--encoders: " + encoders.status().message());
  const bool data_aware = *encoders != std::vector<quant::EncoderKind>{quant::EncoderKind::kRtn};
  if (o.error != "weight" && o.error != "activation") {
    return Status::InvalidArgument("--error '" + o.error + "': expected weight or activation");
  }
  if ((data_aware || o.error == "activation") && o.activation_stats.empty()) {
    return Status::InvalidArgument(
        std::string(data_aware ? "--encoders " + o.encoders : "--error activation") +
        " needs --activation-stats FILE (moeq-profile --activation-stats, with --gram for gptq)");
  }
  if (o.gptq_damp < 0 || o.gptq_block < 1 || o.weighted_steps < 0) {
    return Status::InvalidArgument(
        "--gptq-damp must be >= 0, --gptq-block >= 1, --weighted-steps >= 0");
  }
  return sensitivity::AnalyzeSensitivity(o, ctx);
}

Status RunAnalyzeMerge(const AnalyzeMergeOptions& o, const ArtifactContext& ctx) {
  return sensitivity::MergeSensitivityShards(o.output, o.inputs, ctx);
}

}  // namespace moeq
