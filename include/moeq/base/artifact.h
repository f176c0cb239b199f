// Artefact headers and output-path safety shared by every tool.
//
// Every JSON artefact (and the first line of every JSONL artefact) carries a header:
//   {"schema": "moeq.<kind>", "version": N, "producer": {"tool", "version", "command"},
//    "inputs": {...hashes...}, "options": {...effective options...}}
// Readers reject an unknown schema and a version newer than they support.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq {

/// Who is producing an artefact, with which options (filled by the tool driver).
struct ArtifactContext {
  std::string tool;                                   ///< "moeq-eval"
  std::string command_line;                           ///< argv joined by spaces
  nlohmann::json options = nlohmann::json::object();  ///< effective options
  int threads = 0;
  bool force = false;
  bool progress = true;  ///< show progress on stderr
};

/// The header object for a new artefact.
nlohmann::json MakeArtifactHeader(std::string_view schema, int version, const ArtifactContext& ctx,
                                  nlohmann::json inputs);

/// Checks that `header` (an artefact's JSON object or JSONL first line) has `schema` and a
/// version <= `max_version`. `path` names the file in messages.
Status CheckArtifactHeader(const nlohmann::json& header, std::string_view schema, int max_version,
                           std::string_view path);

/// Refuses to write `output` when it is one of `inputs` (same file or directory, after resolving
/// links), or when it exists and `force` is false.
Status CheckOutputPath(const std::string& output, const std::vector<std::string>& inputs,
                       bool force);

/// Parses a byte size: "21GB", "19.5GiB", "734MB", "1024" (bytes), "4k".
Result<uint64_t> ParseByteSize(std::string_view text);

}  // namespace moeq
