// moeq-inspect: describe a Hugging Face MoE checkpoint (architecture, parameter and byte counts
// per role, group and dtype, shards, unrecognised tensors) as a table or as JSON.
#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

#include "moeq/checkpoint.h"
#include "moeq/file_util.h"
#include "moeq/inspect.h"
#include "moeq/quant_report.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  std::string model_dir;
  bool json = false;
  bool quant_report = false;
  moeq::CheckpointOptions open_options;
  return moeq::tool::RunTool(
      argc, argv, "moeq-inspect", "Describe a Hugging Face MoE checkpoint directory",
      [&](CLI::App& app) {
        app.footer("Examples:\n  moeq-inspect models/tiny-qwen3moe\n\n  moeq-inspect models/tiny-qwen3moe --json\n\n  moeq-inspect models/tiny-qwen3moe --check-finite --quant-report\n\nDocumentation: README.md and docs/ of the moeq sources; man moeq-inspect");
        app.add_option("model", model_dir, "Model directory (config.json + *.safetensors)")
            ->required()
            ->check(CLI::ExistingDirectory);
        app.add_flag("--json", json, "Print the report as JSON instead of a table");
        app.add_flag("--quant-report", quant_report,
                     "Also measure uniform quantization error (MINT grid formats) over every tensor");
        app.add_flag("--strict", open_options.strict, "Fail on tensors the adapter does not know");
        app.add_flag("--check-finite", open_options.check_finite,
                     "Read every weight and fail on NaN or Inf");
      },
      [&](const moeq::tool::ToolContext& ctx) -> moeq::Status {
        MOEQ_ASSIGN_OR_RETURN(auto checkpoint, moeq::Checkpoint::Open(model_dir, open_options));
        MOEQ_ASSIGN_OR_RETURN(nlohmann::json report, moeq::InspectCheckpoint(*checkpoint));
        if (quant_report) {
          moeq::QuantReportOptions qo;
          qo.threads = ctx.threads;
          qo.progress = ctx.artifact.progress;
          MOEQ_ASSIGN_OR_RETURN(nlohmann::json qr, moeq::QuantReport(*checkpoint, qo));
          const std::string t = json ? moeq::DumpJson(qr) : moeq::FormatQuantReportTable(qr);
          std::fwrite(t.data(), 1, t.size(), stdout);
          std::fflush(stdout);
          spdlog::info("{}: uniform quantization measured for {} formats", model_dir, qr["formats"].size());
          return moeq::Status::Ok();
        }
        const std::string text = json ? moeq::DumpJson(report) : moeq::FormatInspectTable(report);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        spdlog::info("{}: {} {} layers, {} tensors, {} parameters, {} bytes in {} shard(s), {} "
                     "unknown",
                     model_dir, checkpoint->config().model_type, checkpoint->config().num_layers,
                     report["tensors"].get<int64_t>(), report["parameters"].get<int64_t>(),
                     report["bytes"].get<uint64_t>(), checkpoint->shard_files().size(),
                     checkpoint->unknown_tensors().size());
        return moeq::Status::Ok();
      });
}
