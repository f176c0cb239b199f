// Inspection of an opened checkpoint: architecture summary, parameter and byte counts per role,
// per group and per dtype, shards and unrecognised tensors (the library side of moeq-inspect).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"

namespace moeq {

/// Describes `checkpoint` as a JSON object (keys sorted, deterministic):
///   model_dir, model_type, architectures, layers, moe_layers, dense_layers, experts_per_layer,
///   top_k, shared_experts, hidden_size, num_heads, num_kv_heads, head_dim, vocab_size,
///   intermediate_size, moe_intermediate_size, shared_expert_intermediate_size,
///   tie_word_embeddings, fused_experts (bool), tensors, parameters, bytes,
///   by_role / by_group / by_dtype: {name: {tensors, parameters, bytes}},
///   shards: [{file, tensors, bytes (file size)}], unknown_tensors: [names], extra_files,
///   fingerprint; by_format {format: tally} ("q4g64" for MLX-quantized tensors, else the
///   lower-case dtype), bits_per_weight (stored bytes * 8 / parameters), quantized (bool) and
///   quantized_tensors: [{name, format, bits, group_size, shape, bytes, bits_per_weight}].
/// Bytes are the bytes stored: packed codes + scales + biases for quantized tensors, whose
/// parameters count their logical (dequantized) elements.
/// Parameters are element counts of every stored tensor (buffers and unknown tensors included,
/// in their own role/group). Groups: experts, shared_experts, attention, embeddings (embedding
/// and lm_head), router, norms, dense_mlp, other.
Result<nlohmann::json> InspectCheckpoint(const Checkpoint& checkpoint);

/// A readable, column-aligned text rendering of InspectCheckpoint()'s JSON (ends with '\n').
std::string FormatInspectTable(const nlohmann::json& report);

}  // namespace moeq
