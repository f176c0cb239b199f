// moeq-eval's command: its options struct (one field per flag, with its default) and Run
// function; tools/moeq-eval/main.cpp binds flags to the struct and calls RunEval.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"
#include "moeq/tokenizer/text_input.h"

namespace moeq {

/// moeq-eval: perplexity (and KL against a reference) with an optional CI gate.
struct EvalCommandOptions {
  std::string model_dir;
  TextInput input;
  /// Protocol preset: reference, mint or llama; the fields below override it when set.
  std::string protocol = "reference";
  int64_t context = 0;   ///< 0 = preset
  int64_t stride = 0;    ///< 0 = preset (non-overlapping)
  std::string scored;    ///< "" = preset; "all-but-first" or "second-half"
  int64_t chunks = 0;    ///< 0 = all windows
  int64_t samples = -1;  ///< -1 = preset; 0 = all windows in order
  int64_t seed = 42;
  std::string reference_dir;  ///< compare with this model (KL, top-1, ΔPPL)
  /// Or compare with a saved reference distribution written by --save-logits.
  std::string reference_logits;
  /// Save this model's distribution on the evaluated windows here (a reference for later runs).
  std::string save_logits;
  /// Entries kept per scored token in --save-logits (0 = the whole vocabulary).
  int64_t save_logits_top_k = 64;
  std::string output;         ///< eval.json path ("" = print JSON to stdout)
  std::string baseline;       ///< eval.json of the baseline for the gate
  std::string max_ppl_delta;  ///< "2%" (relative) or "0.5" (absolute)
  double max_kl = -1;         ///< < 0 = unchecked
  /// Run quantized tensors from their packed codes (no dequantized copy in memory; products
  /// as MLX's quantized matmul computes them, docs/inference.md) instead of dequantizing them
  /// to float32 on load (bit-exact with MLX's dequantize).
  bool packed = false;
  /// With packed: int8 activations (EngineOptions::int8_activations).
  bool int8_activations = false;
};
Status RunEval(const EvalCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
