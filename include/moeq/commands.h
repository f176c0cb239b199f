// The library side of each moeq-* executable: an options struct (one field per flag, with its
// default) and a Run function. Tools only bind flags to these structs and call Run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moeq/artifact.h"
#include "moeq/status.h"

namespace moeq {

/// Token input shared by the tools that run the model.
struct TextInput {
  /// A UTF-8 text file, tokenized whole with MODEL_DIR/tokenizer.json.
  std::string text_file;
  /// Or pre-tokenized ids (docs/tokens-format.md).
  std::string tokens_file;
};

/// moeq-eval: perplexity (and KL against a reference) with an optional CI gate.
struct EvalCommandOptions {
  std::string model_dir;
  TextInput input;
  /// Protocol preset: reference, mint or llama; the fields below override it when set.
  std::string protocol = "reference";
  int64_t context = 0;       ///< 0 = preset
  int64_t stride = 0;        ///< 0 = preset (non-overlapping)
  std::string scored;        ///< "" = preset; "all-but-first" or "second-half"
  int64_t chunks = 0;        ///< 0 = all windows
  int64_t samples = -1;      ///< -1 = preset; 0 = all windows in order
  int64_t seed = 42;
  std::string reference_dir; ///< compare with this model (KL, top-1, ΔPPL)
  /// Or compare with a saved reference distribution written by --save-logits.
  std::string reference_logits;
  /// Save this model's distribution on the evaluated windows here (a reference for later runs).
  std::string save_logits;
  /// Entries kept per scored token in --save-logits (0 = the whole vocabulary).
  int64_t save_logits_top_k = 64;
  std::string output;        ///< eval.json path ("" = print JSON to stdout)
  std::string baseline;      ///< eval.json of the baseline for the gate
  std::string max_ppl_delta; ///< "2%" (relative) or "0.5" (absolute)
  double max_kl = -1;        ///< < 0 = unchecked
  /// Run quantized tensors from their packed codes (no dequantized copy in memory; products
  /// as MLX's quantized matmul computes them, docs/inference.md) instead of dequantizing them
  /// to float32 on load (bit-exact with MLX's dequantize).
  bool packed = false;
};
Status RunEval(const EvalCommandOptions& options, const ArtifactContext& ctx);

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
