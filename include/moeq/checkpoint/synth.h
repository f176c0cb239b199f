// moeq-synth: seeded bf16 Hugging Face checkpoints with the shapes of real MoE models
// (docs/scale.md), for running the pipeline at real scale without downloading weights.
//
// The output is a model directory as transformers saves it: config.json, sharded
// model-0000i-of-0000N.safetensors with model.safetensors.index.json (one model.safetensors
// when everything fits in one shard), and for the Qwen3 presets the real Qwen3 tokenizer
// (tokenizer.json, tokenizer_config.json, bundled in data/tokenizers/qwen3/).
//
// Values are a pure function of (seed, tensor name, row, column), drawn by a counter-based
// hash, so the bytes do not depend on the thread count or the order of generation. Tensors are
// generated (in parallel pieces) and written one at a time: memory is the largest tensor, not
// the checkpoint. Statistics differ between tensors on purpose (see docs/scale.md):
// per-tensor scales, outlier input channels, heavy-tailed outlier groups and elements, and a
// few low-rank-plus-noise matrices, so sensitivity features and allocations are not all alike.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moeq/base/status.h"

namespace moeq {

/// The shape of a named architecture.
struct SynthPreset {
  std::string name;        ///< e.g. "qwen3-30b-a3b"
  std::string model_type;  ///< config.json model_type
  int layers = 0;
  int hidden = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int experts = 0;
  int top_k = 0;
  int moe_ff = 0;    ///< routed expert width
  int dense_ff = 0;  ///< config intermediate_size (dense MLP width; mixtral: the expert width)
  int vocab = 0;
  double rope_theta = 0;
  double rms_norm_eps = 0;
  int max_position = 0;
  int bos_id = 0, eos_id = 0;
  /// Bundled tokenizer to copy ("qwen3" = data/tokenizers/qwen3), empty for none.
  std::string tokenizer;
};

/// The presets moeq-synth knows: "qwen3-30b-a3b", "mixtral-8x7b".
const std::vector<SynthPreset>& SynthPresets();
Result<SynthPreset> FindSynthPreset(const std::string& name);

struct SynthOptions {
  std::string preset = "qwen3-30b-a3b";
  /// Overrides of the preset's sizes (0 = the preset's). Tests use small ones.
  int layers = 0;
  int hidden = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int experts = 0;
  int top_k = 0;
  int moe_ff = 0;
  int vocab = 0;
  uint64_t seed = 1;
  /// Largest data bytes per shard (Hugging Face's default 5 GB is what transformers writes).
  uint64_t shard_bytes = 5'000'000'000ULL;
  /// Directory holding tokenizer.json / tokenizer_config.json to copy; empty = the bundled
  /// tokenizer of the preset (none when the vocabulary was overridden below its size).
  std::string tokenizer_dir;
  int threads = 0;
  /// Replace an existing output directory.
  bool force = false;
};

/// What WriteSynthCheckpoint wrote.
struct SynthSummary {
  std::string dir;
  int64_t tensors = 0;
  int64_t parameters = 0;
  uint64_t bytes = 0;  ///< tensor data bytes
  std::vector<std::string> shard_files;
  bool tokenizer = false;
  double seconds = 0;
};

/// The config.json of `options` (preset with overrides applied).
Result<std::string> SynthConfigJson(const SynthOptions& options);

/// Writes the checkpoint into `dir` (via a temporary sibling directory renamed into place).
/// Fails if `dir` exists and options.force is false.
Result<SynthSummary> WriteSynthCheckpoint(const std::string& dir, const SynthOptions& options);

}  // namespace moeq
