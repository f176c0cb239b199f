// The MLX writer of moeq-quantize: a quantized checkpoint from a model directory and a QuantPlan.
//
// Output A ("mlx", the default) is a Hugging Face-style directory in MLX's quantized layout
// (docs/quantized-format.md): packed uint32 `.weight`, `.scales` and `.biases` per quantized
// module, config.json with a "quantization" block (defaults + per-module overrides, mirrored
// in "quantization_config"), sharded safetensors with model.safetensors.index.json, the
// tokenizer and other carried files, and quant_manifest.json written last. The directory is
// built under a temporary name next to the output and renamed into place when complete.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/quant_plan.h"
#include "moeq/model/arch.h"
#include "moeq/quant/encoders.h"

namespace moeq {

class InputStatsFile;

/// How WriteMlxCheckpoint lays the tensors out.
struct MlxWriteOptions {
  /// false: per-expert tensors with the Hugging Face names, each expert its own format;
  /// true: mlx-lm's stacked `switch_mlp` tensors, one format per (layer, projection) — the
  /// highest precision among its experts. Fused input experts are always written stacked.
  bool stacked = false;
  uint64_t max_shard_bytes = 5'000'000'000ULL;
  /// Input statistics for data-aware encoders (plan.encoders); tensors without statistics in
  /// it fall back to rtn (recorded per tensor in the manifest).
  const InputStatsFile* stats = nullptr;
  quant::EncoderOptions encoder_options;
  int threads = 0;
  bool progress = true;
};

/// Writes the tensors (sharded safetensors + index), config.json with the "quantization" block
/// and the carried files of `ckpt` quantized by `plan` into the existing, empty directory `dir`,
/// one output tensor at a time. Returns the body of quant_manifest.json (without header):
/// layout, quantization defaults, tensors[], projections[] (stacked only), totals.
Result<nlohmann::json> WriteMlxCheckpoint(const Checkpoint& ckpt, const QuantPlan& plan,
                                          const std::string& dir, const MlxWriteOptions& options);

}  // namespace moeq
