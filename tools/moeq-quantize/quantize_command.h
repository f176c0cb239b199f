// moeq-quantize's command: writes a quantized checkpoint ("mlx" directory or "gguf" file) from
// a model directory and an allocation.json or a uniform format.
#pragma once

#include <string>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"
#include "moeq/export/mlx_writer.h"
#include "moeq/model/mlx_names.h"

namespace moeq {

/// moeq-quantize's options (one field per flag).
struct QuantizeCommandOptions {
  std::string model_dir;
  /// Output directory ("mlx") or .gguf file ("gguf"); must not exist unless --force; never the
  /// input.
  std::string output;
  /// allocation.json from moeq-allocate (exclusive with uniform_bits).
  std::string allocation;
  /// Write an allocation made for another --target than the output's (its budget then does not
  /// hold; a stacked output promotes experts to one format per layer and projection).
  bool ignore_target = false;
  /// --uniform BITS: 2, 3, 4, 5, 6, 8 (affine with `group_size`), 16 (no quantization: the
  /// source's 16-bit dtype) or 32 (f32). 0 = not given.
  int uniform_bits = 0;
  /// --group G for --uniform (32, 64, 128).
  int group_size = 64;
  /// Output format: "mlx" (safetensors, default) or "gguf".
  std::string format = "mlx";
  /// Stack experts into mlx-lm's `switch_mlp` tensors, one format per (layer, projection).
  bool mlx_compatible = false;
  /// Largest data bytes per safetensors shard ("5GB", "500MB", ...).
  std::string max_shard_size = "5GB";
  /// --uniform follows mlx-lm's MoE rule by default: routers (`mlp.gate`) and shared-expert
  /// gates stay at 8 bits, group 64 (mlx-lm's quant_predicate). --uniform-all (true) drops the
  /// rule: routers at BITS, the shared-expert gate (not a quantizable role) unquantized.
  bool uniform_all = false;
  /// --eval eval.json: quality figures (moeq-eval of the quantized model) for the model card.
  std::string eval;
  /// --no-model-card: do not write the model card (README.md in the output directory; for
  /// --format gguf, "<output minus .gguf>.README.md" beside the file).
  bool no_model_card = false;
  /// Quantize with an allocation made for another model (fingerprints differ): warn only.
  bool allow_model_mismatch = false;
  /// activation_stats.safetensors (moeq-profile --activation-stats [--gram]): required when the
  /// plan uses a data-aware encoder.
  std::string stats;
  /// Encoder for every quantized tensor ("" = the plan's: rtn for uniform plans, the
  /// allocation's "encoder" fields otherwise).
  std::string encoder;
  /// Encoder for routed-expert tensors only (applied after `encoder`; "" = unchanged).
  std::string expert_encoder;
  /// Encoder parameters.
  quant::EncoderOptions encoder_options;
  /// --gguf-type TYPE (format gguf): store every quantized tensor as this ggml type
  /// ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K".."q6_K"), as llama-quantize's TYPE does;
  /// without --uniform/--allocation the plan is uniform at the type's bit width. "" = off.
  std::string gguf_type;
};

/// Runs moeq-quantize: "mlx" writes the output directory, "gguf" one GGUF v3 file at `output`.
Status RunQuantize(const QuantizeCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
