// Native inference engine: the forward pass of the supported decoder-only (MoE) transformers,
// computing in float32 from bf16/f16/f32 weights, or straight from MLX affine-packed weights
// (moeq-quantize's output; docs/inference.md): packed tensors stay packed in memory and run
// on kernels that unpack codes in registers (AVX-512, AVX2 or portable, chosen at run time).
//
// Forward processes one window of tokens as an independent sequence starting at position 0
// (perplexity protocols score windows independently). ForwardIncremental continues a sequence
// held in a KvCache, for token-by-token decoding.
// In each MoE layer the window's tokens are sorted by expert so every routed expert does one
// matrix product per window. Work is split into fixed-size tiles handed to a thread pool, so the
// logits are bit-identical whatever the thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moeq/checkpoint/checkpoint.h"
#include "moeq/model/model_config.h"
#include "moeq/base/status.h"

namespace moeq {

/// Observes a forward pass (moeq-profile's routing counts and activation statistics). Every
/// callback has an empty default. Spans are valid only during the call.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  /// The normalised input of layer `layer`'s attention projections, [tokens, hidden_size].
  virtual void OnAttentionInput(int /*layer*/, int64_t /*tokens*/, std::span<const float> /*hidden*/) {}
  /// The normalised input of layer `layer`'s MLP or MoE block, [tokens, hidden_size].
  virtual void OnMlpInput(int /*layer*/, int64_t /*tokens*/, std::span<const float> /*hidden*/) {}
  /// Called once per MoE layer and window. `experts` and `weights` are [tokens, top_k]
  /// row-major (the chosen experts of each token, best first, and their mixing weights);
  /// `probs` is [tokens, num_experts], the router's softmax over all experts; `hidden` is the
  /// layer's normalised MoE input [tokens, hidden_size] (also the input of every expert).
  virtual void OnRouting(int /*layer*/, int64_t /*tokens*/, int /*top_k*/,
                         std::span<const int32_t> /*experts*/, std::span<const float> /*weights*/,
                         std::span<const float> /*probs*/, std::span<const float> /*hidden*/) {}
  /// The input of expert `expert`'s down projection for the `tokens` routed to it,
  /// [tokens, moe_intermediate_size]. Called concurrently for different experts of a layer.
  virtual void OnExpertActivation(int /*layer*/, int /*expert*/, int64_t /*tokens*/,
                                  std::span<const float> /*act*/) {}
};

struct EngineOptions {
  /// Worker threads (0 = all cores). Results do not depend on it.
  int threads = 0;
  /// Keep MLX-quantized tensors packed and run them on the packed kernels (no float copy of
  /// the model; products computed as MLX's quantized matmul does: scale·Σq·x + bias·Σx).
  /// false (default): dequantize them to float32 on load (bit-exact with MLX's dequantize,
  /// then float products), which the bit-exact round-trip tests of moeq-quantize rely on.
  bool packed_weights = false;
};

/// Keys and values of one sequence, for Engine::ForwardIncremental. Opaque; one per sequence.
class KvCache {
 public:
  /// Tokens held (the position of the next token).
  int64_t size() const { return length_; }
  void Clear() {
    k_.clear();
    v_.clear();
    length_ = 0;
  }

 private:
  friend class Engine;
  std::vector<std::vector<float>> k_, v_;  // per layer: [length, kv_heads * head_dim]
  int64_t length_ = 0;
};

/// A model loaded for inference. Float weights are held as float32, packed ones packed.
class Engine {
 public:
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Loads every weight the forward pass needs from `checkpoint` (bf16, f16 or f32; F8_E4M3
  /// is decoded). Unsupported architectures (MLA attention) give Unsupported.
  static Result<std::unique_ptr<Engine>> Load(const Checkpoint& checkpoint,
                                              const EngineOptions& options = {});

  const ModelConfig& config() const;
  int64_t vocab_size() const;
  /// Bytes of weights held in memory (float32 tensors, packed codes + scales + biases).
  uint64_t weight_bytes() const;
  /// Number of tensors held packed (0 for a float model or packed_weights = false).
  int64_t packed_tensors() const;
  /// Name of the packed kernel path in use: "avx512", "avx2" or "portable".
  static std::string kernel_name();

  /// Runs `tokens` as one sequence from position 0 and writes logits [tokens, vocab] row-major
  /// to `logits` (resized). Token ids outside the vocabulary give InvalidArgument. `threads`
  /// overrides EngineOptions::threads for this call (-1 = keep); callers that run several
  /// windows concurrently pass 1. Thread-safe: concurrent calls share only read-only weights.
  Status Forward(std::span<const int32_t> tokens, std::vector<float>* logits,
                 ForwardObserver* observer = nullptr, int threads = -1) const;

  /// Runs `tokens` as the continuation of the sequence in `cache` (positions cache->size()..)
  /// and appends their keys and values to it; logits [tokens, vocab] as Forward. With an empty
  /// cache the logits equal Forward's up to float rounding of the attention (the MLP and
  /// projections are the same kernels). Not thread-safe for one cache.
  Status ForwardIncremental(std::span<const int32_t> tokens, KvCache* cache,
                            std::vector<float>* logits, int threads = -1) const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  Status Run(std::span<const int32_t> tokens, KvCache* cache, std::vector<float>* logits,
             ForwardObserver* observer, int threads) const;
};

}  // namespace moeq
