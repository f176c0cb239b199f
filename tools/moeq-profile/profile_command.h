// moeq-profile's command: its options struct (one field per flag, with its default) and Run
// function; tools/moeq-profile/main.cpp binds flags to the struct and calls RunProfile.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"

namespace moeq {

/// moeq-profile: expert routing and activation statistics on calibration text, or routing
/// statistics from routing traces recorded by another runtime.
struct ProfileCommandOptions {
  /// Model directory; with traces only its config.json is read (MODEL_DIR may then also be the
  /// config.json file itself).
  std::string model_dir;
  /// Calibration inputs, one kind per run: texts (tokenized with the model's tokenizer.json),
  /// pre-tokenized id files, or routing traces (JSONL, docs/artifacts.md).
  std::vector<std::string> text_files;
  std::vector<std::string> token_files;
  std::vector<std::string> trace_files;
  /// One domain name per input, in the same order (empty = every input is domain "default").
  std::vector<std::string> domains;
  int64_t context = 512;
  int64_t max_windows = 0;  ///< per input
  std::string output = "routing_profile.json";
  /// Also write activation second moments here ("" = do not collect them).
  std::string activation_stats;
  /// Also collect the full Gram matrix of every linear input into activation_stats (for the
  /// gptq encoder and the activation-weighted error).
  bool gram = false;
  /// Shrinkage of few-token experts toward the layer's pooled statistics, in tokens (k of
  /// ActivationStatsOptions).
  double shrinkage_tokens = 32.0;
  /// moeq.tiers thresholds ("" = built-in defaults, the same as configs/tiers.json).
  std::string tiers;
  /// moeq.hotness parameters ("" = built-in defaults, the same as configs/hotness.json).
  std::string hotness;
  int64_t top_pairs = 16;
  /// Also write the engine's routing as a routing trace (JSONL) here.
  std::string write_trace;
};
Status RunProfile(const ProfileCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
