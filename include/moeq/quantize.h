// moeq-quantize: writes a quantized checkpoint from a model directory and a QuantPlan.
//
// Output A ("mlx", the default) is a Hugging Face-style directory in MLX's quantized layout
// (docs/quantized-format.md): packed uint32 `.weight`, `.scales` and `.biases` per quantized
// module, config.json with a "quantization" block (defaults + per-module overrides, mirrored
// in "quantization_config"), sharded safetensors with model.safetensors.index.json, the
// tokenizer and other carried files, and quant_manifest.json written last. The directory is
// built under a temporary name next to the output and renamed into place when complete.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "moeq/arch.h"
#include "moeq/artifact.h"
#include "moeq/checkpoint.h"
#include "moeq/quant_plan.h"
#include "moeq/status.h"

namespace moeq {

/// moeq-quantize's options (one field per flag).
struct QuantizeCommandOptions {
  std::string model_dir;
  /// Output directory ("mlx") or .gguf file ("gguf"); must not exist unless --force; never the input.
  std::string output;
  /// allocation.json from moeq-allocate (exclusive with uniform_bits).
  std::string allocation;
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
  /// --gguf-type TYPE (format gguf): store every quantized tensor as this ggml type
  /// ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K".."q6_K"), as llama-quantize's TYPE does;
  /// without --uniform/--allocation the plan is uniform at the type's bit width. "" = off.
  std::string gguf_type;
};

/// Runs moeq-quantize: "mlx" writes the output directory, "gguf" one GGUF v3 file at `output`.
Status RunQuantize(const QuantizeCommandOptions& options, const ArtifactContext& ctx);

/// How WriteMlxCheckpoint lays the tensors out.
struct MlxWriteOptions {
  /// false: per-expert tensors with the Hugging Face names, each expert its own format;
  /// true: mlx-lm's stacked `switch_mlp` tensors, one format per (layer, projection) — the
  /// highest precision among its experts. Fused input experts are always written stacked.
  bool stacked = false;
  uint64_t max_shard_bytes = 5'000'000'000ULL;
  int threads = 0;
  bool progress = true;
};

/// Writes the tensors (sharded safetensors + index), config.json with the "quantization" block
/// and the carried files of `ckpt` quantized by `plan` into the existing, empty directory `dir`,
/// one output tensor at a time. Returns the body of quant_manifest.json (without header):
/// layout, quantization defaults, tensors[], projections[] (stacked only), totals.
Result<nlohmann::json> WriteMlxCheckpoint(const Checkpoint& ckpt, const QuantPlan& plan,
                                          const std::string& dir, const MlxWriteOptions& options);

/// The mlx-lm stacked module path of a (layer, routed-expert projection) — e.g.
/// "model.layers.3.mlp.switch_mlp.gate_proj" (qwen*_moe, olmoe, deepseek) or
/// "model.layers.3.block_sparse_moe.switch_mlp.down_proj" (mixtral) — derived from the
/// adapter's per-expert name. Unsupported when the family has no per-expert tensors of `role`
/// (kExpertGate, kExpertUp, kExpertDown) under "...experts.0.".
Result<std::string> MlxStackedModule(const ArchAdapter& adapter, int layer, TensorRole role);

}  // namespace moeq
