// A seeded generator of tiny but structurally complete Hugging Face checkpoints for every
// supported model_type: config.json with the family's own keys, weights for every tensor the
// architecture adapter expects (per-expert or fused 3-D experts), optional sharding with
// model.safetensors.index.json, and a placeholder tokenizer.json. The same options and seed
// always give the same bytes. Used by the tests of every module.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/base/tensor.h"

namespace moeq::test {

struct SyntheticCheckpointOptions {
  /// Any of SupportedModelTypes().
  std::string model_type = "qwen3_moe";
  int layers = 2;
  int hidden = 64;
  int heads = 4;
  int kv_heads = 2;
  /// Routed experts per MoE layer and experts per token (ignored by dense families).
  int experts = 4;
  int top_k = 2;
  /// Routed expert width (mixtral/olmoe write it as intermediate_size).
  int moe_ff = 32;
  /// Dense MLP width: dense families, and the dense layers of MoE families.
  int dense_ff = 96;
  /// Shared experts: qwen2_moe gets shared_expert_intermediate_size = shared_experts * moe_ff,
  /// deepseek n_shared_experts = shared_experts; ignored by the other families.
  int shared_experts = 0;
  /// Leading dense layers of qwen2_moe/qwen3_moe (mlp_only_layers) and deepseek
  /// (first_k_dense_replace); ignored by the other families.
  int dense_layers = 0;
  int vocab = 256;
  uint64_t seed = 1;
  /// Element type of every tensor: kBF16, kF16 or kF32.
  DType dtype = DType::kBF16;
  /// 1: a single model.safetensors; N > 1: N shards plus model.safetensors.index.json.
  int shards = 1;
  /// Store each MoE layer's experts as fused 3-D tensors (transformers v5 gate_up_proj /
  /// down_proj) instead of per-expert 2-D ones; the values are the same either way.
  bool fused_experts = false;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  /// Also write a placeholder tokenizer.json.
  bool tokenizer = true;

  // Deliberate defects, for tests of error paths.
  /// RFC 7396 merge patch applied to config.json (a null value deletes the key).
  nlohmann::json config_patch;
  /// Tensor names not to write.
  std::vector<std::string> drop_tensors;
  /// Tensor name → shape to write instead of the correct one.
  std::map<std::string, std::vector<int64_t>> shape_overrides;
  /// Additional tensors (name, shape), written with random values.
  std::vector<std::pair<std::string, std::vector<int64_t>>> extra_tensors;
};

/// What WriteSyntheticCheckpoint wrote.
struct SyntheticCheckpoint {
  nlohmann::json config;
  /// Every tensor, sorted by name.
  std::vector<TensorInfo> tensors;
  /// Safetensors files relative to the directory, in order.
  std::vector<std::string> shard_files;
  /// Sum of all tensors' element counts.
  int64_t parameters = 0;
};

/// The config.json object for `options` (config_patch applied).
nlohmann::json SyntheticConfig(const SyntheticCheckpointOptions& options);

/// Writes a checkpoint into `dir` (created if missing). Fails for an unsupported model_type or
/// inconsistent options.
Result<SyntheticCheckpoint> WriteSyntheticCheckpoint(const std::string& dir,
                                                     const SyntheticCheckpointOptions& options);

/// The float32 values the generator draws for tensor `name` with `numel` elements (before
/// rounding to the checkpoint dtype). Per-expert values are the same in fused checkpoints.
std::vector<float> SyntheticValues(const SyntheticCheckpointOptions& options,
                                   const std::string& name, int64_t numel);

}  // namespace moeq::test
