// moeq-inspect's command (see inspect_command.h).
#include "moeq-inspect/inspect_command.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>

#include "moeq/base/file_util.h"
#include "moeq/report/inspect.h"
#include "moeq/report/quant_report.h"

namespace moeq {

Status RunInspect(const InspectCommandOptions& options, const ArtifactContext& ctx) {
  const std::string& model_dir = options.model_dir;
  MOEQ_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::Open(model_dir, options.open));
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json report, InspectCheckpoint(*checkpoint));
  if (options.quant_report) {
    QuantReportOptions qo;
    qo.threads = ctx.threads;
    qo.progress = ctx.progress;
    MOEQ_ASSIGN_OR_RETURN(nlohmann::json qr, QuantReport(*checkpoint, qo));
    const std::string t = options.json ? DumpJson(qr) : FormatQuantReportTable(qr);
    std::fwrite(t.data(), 1, t.size(), stdout);
    std::fflush(stdout);
    spdlog::info("{}: uniform quantization measured for {} formats", model_dir,
                 qr["formats"].size());
    return Status::Ok();
  }
  const std::string text = options.json ? DumpJson(report) : FormatInspectTable(report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  spdlog::info(
      "{}: {} {} layers, {} tensors, {} parameters, {} bytes in {} shard(s), {} "
      "unknown",
      model_dir, checkpoint->config().model_type, checkpoint->config().num_layers,
      report["tensors"].get<int64_t>(), report["parameters"].get<int64_t>(),
      report["bytes"].get<uint64_t>(), checkpoint->shard_files().size(),
      checkpoint->unknown_tensors().size());
  return Status::Ok();
}

}  // namespace moeq
