// Upper bounds on model dimensions read from untrusted files (docs/limits.md). Each is far above
// any published model and far below what would make moeq allocate or loop without end: a value
// above its bound is rejected before anything is sized by it.
#pragma once

#include <cstdint>

namespace moeq::limits {

inline constexpr int64_t kMaxLayers = 4096;         ///< num_hidden_layers
inline constexpr int64_t kMaxExperts = 65536;       ///< routed experts per MoE layer
inline constexpr int64_t kMaxSharedExperts = 1024;  ///< n_shared_experts
inline constexpr int64_t kMaxHiddenSize = 1 << 20;  ///< hidden_size, head_dim, MLA ranks
inline constexpr int64_t kMaxIntermediateSize = 1
                                                << 22;  ///< (moe_|shared_expert_)intermediate_size
inline constexpr int64_t kMaxHeads = 65536;    ///< num_attention_heads, num_key_value_heads
inline constexpr int64_t kMaxVocab = 1 << 24;  ///< vocab_size
inline constexpr int64_t kMaxPositions = int64_t{1} << 40;  ///< max_position_embeddings
inline constexpr int64_t kMaxTensorDims = 8;                ///< dimensions of one tensor
inline constexpr int64_t kMaxTensors = 10'000'000;  ///< tensors in one checkpoint / GGUF file

}  // namespace moeq::limits
