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

#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/model/model_config.h"

namespace moeq {

/// Observes a forward pass (moeq-profile's routing counts and activation statistics). Every
/// callback has an empty default. Spans are valid only during the call.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  /// The normalised input of layer `layer`'s attention projections, [tokens, hidden_size].
  virtual void OnAttentionInput(int /*layer*/, int64_t /*tokens*/,
                                std::span<const float> /*hidden*/) {}
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
  /// With packed_weights: multiply packed weights by int8-quantized activations (per token and
  /// block of 32 inputs, scale amax / 127; exact integer dot products, vpdpbusd on AVX-512 VNNI)
  /// instead of float32 ones, as llama.cpp does for its quantized types. Faster, approximate:
  /// docs/inference.md ("int8 activations") gives the contract and the measured KL. Results
  /// still do not depend on threads, ISA or how many tokens run together.
  bool int8_activations = false;
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

/// A model loaded for inference. Weights are used where they lie in the memory-mapped
/// checkpoint (docs/inference.md): bf16/f16 matrices are converted to float32 one tile at a time
/// inside the products, f32 ones and MLX-packed ones are read in place; no copy of the model is
/// made. The engine opens its own handle on the checkpoint's directory, so the Checkpoint passed
/// to Load may be closed before the engine.
class Engine {
 public:
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Prepares every weight the forward pass needs from `checkpoint` (bf16, f16 or f32 in place;
  /// F8_E4M3 is decoded into memory). Unsupported architectures (MLA attention) give Unsupported.
  static Result<std::unique_ptr<Engine>> Load(const Checkpoint& checkpoint,
                                              const EngineOptions& options = {});

  const ModelConfig& config() const;
  int64_t vocab_size() const;
  /// Bytes of weights a forward pass reads: used in place from the mapped checkpoint (bf16/f16/
  /// f32 matrices, packed codes + scales + biases) plus those the engine owns.
  uint64_t weight_bytes() const;
  /// Bytes of weights the engine holds in its own memory: norms and biases as float32, and
  /// tensors that cannot be used in place (F8 or MLX-quantized weights dequantized to float32,
  /// a packed code stream ending at the very end of a shard).
  uint64_t owned_weight_bytes() const;
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

  /// Offline passes over many windows (eval, profile, calibrate), layer by layer: every window
  /// goes through layer L before any goes through L + 1, so each weight is read from the
  /// checkpoint once per pass however many windows there are (a model larger than memory is
  /// streamed from disk once, not once per window). `hidden` receives each window's residual
  /// stream after the last layer, [tokens, hidden_size], to be turned into logits by
  /// LogitsFromHidden; together they give bit-identical logits to Forward on each window.
  /// `observers` is empty or one per window (each called only for its window, in layer order).
  Status ForwardHidden(std::span<const std::span<const int32_t>> windows,
                       std::vector<std::vector<float>>* hidden,
                       std::span<ForwardObserver* const> observers = {}, int threads = -1) const;
  /// Final norm (applied in place to `hidden`) and lm_head: logits [tokens, vocab].
  Status LogitsFromHidden(std::vector<float>* hidden, std::vector<float>* logits,
                          int threads = -1) const;
  /// The embedding of `tokens`: the residual stream entering layer 0, [tokens, hidden_size].
  Status Embed(std::span<const int32_t> tokens, std::vector<float>* hidden) const;
  /// Layers [begin, end) on residual streams `hidden` (one per window, each [tokens,
  /// hidden_size], positions from 0), in place, layer by layer as ForwardHidden. Starting from
  /// a cached stream at layer `begin` gives the same bits as the whole pass.
  Status ForwardLayers(int begin, int end, std::vector<std::vector<float>>* hidden,
                       std::span<ForwardObserver* const> observers = {}, int threads = -1) const;

  /// Weight overlay (moeq-calibrate's probes): the float weights of checkpoint tensor `name`
  /// (every linear layer bound to it: all experts of a fused tensor, a tied lm_head) are
  /// replaced by `values` (its logical elements, row-major, float32) until ClearOverrides.
  /// Only for engines whose tensor is float (not packed). Must not run concurrently with a
  /// forward pass.
  Status OverrideWeights(const std::string& name, std::vector<float> values);
  /// Restores every weight replaced by OverrideWeights.
  void ClearOverrides();

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  Status Run(std::span<const int32_t> tokens, KvCache* cache, std::vector<float>* logits,
             ForwardObserver* observer, int threads) const;
};

}  // namespace moeq
