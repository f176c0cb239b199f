// Shared driver for every moeq-* executable: common flags, `--config file.json`, logging to
// stderr, exception safety and the mapping of a Status to the process exit code.
//
// A tool's main() only declares its options on a CLI::App and passes a body that calls the
// library:
//
//   int main(int argc, char** argv) {
//     moeq::InspectOptions opts;
//     return moeq::tool::RunTool(argc, argv, "moeq-inspect", "Describe a checkpoint",
//         [&](CLI::App& app) { app.add_option("model", opts.model_dir, "...")->required(); },
//         [&](const moeq::tool::ToolContext& ctx) { return moeq::RunInspect(opts); });
//   }
//
// Exit codes: 0 ok, 1 runtime or data error, 2 usage error, 3 a quality gate failed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"

namespace moeq::tool {

/// What every tool gets besides its own options.
struct ToolContext {
  /// --threads (0 = all cores).
  int threads = 0;
  /// --force: replace an existing output.
  bool force = false;
  /// The effective options (defaults < --config < flags) as a JSON object keyed by long flag
  /// names in snake_case; record it in artefacts.
  nlohmann::json effective_options;
  /// The command line, for artefact headers.
  std::string command_line;
  /// All of the above as the library wants it (producer, options, threads, force, progress).
  ArtifactContext artifact;
};

/// Parses the command line (with `--config`, `--log-level`, `-v`, `-q`, `--threads`, `--force`,
/// `--version` added), configures logging and runs `body`. Returns the process exit code.
int RunTool(int argc, char** argv, std::string_view name, std::string_view description,
            const std::function<void(CLI::App&)>& define_options,
            const std::function<Status(const ToolContext&)>& body);

}  // namespace moeq::tool
