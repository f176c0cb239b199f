// A Hugging Face model directory: config.json, one safetensors file or an index plus shards,
// tokenizer and other files carried along.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/formats/safetensors.h"
#include "moeq/model/arch.h"
#include "moeq/model/model_config.h"
#include "moeq/quant/quantizer.h"

namespace moeq {

namespace checkpoint_internal {
struct GgufBacking;
}  // namespace checkpoint_internal

/// How a tensor stored in MLX's quantized layout is held (docs/quantized-format.md): a packed
/// uint32 `.weight`, `.scales` and `.biases`, with bits and group size from config.json
/// "quantization" (defaults and per-module overrides, as mlx-lm reads them).
struct TensorQuantization {
  int bits = 0;  ///< 0: the tensor is stored as plain floats
  int group_size = 0;
  std::string mode;    ///< "affine"
  std::string weight;  ///< stored names of the three parts
  std::string scales;
  std::string biases;
  uint64_t stored_bytes = 0;  ///< bytes of the three parts together

  bool quantized() const { return bits > 0; }
};

/// One tensor of a checkpoint and where it lives. For a quantized tensor, `info` describes the
/// LOGICAL float tensor (name = the stored `.weight` name, logical shape, dtype of the scales)
/// and `quant` the stored parts; mlx-lm's stacked `switch_mlp` expert tensors [E, out, in]
/// are presented like fused expert tensors.
struct CheckpointTensor {
  TensorInfo info;
  TensorId id;
  bool fused_experts = false;  ///< [experts, out, in] tensor holding all experts of a layer
  int shard = 0;               ///< index into Checkpoint::shard_files()
  TensorQuantization quant;    ///< bits == 0 unless stored MLX-quantized
};

struct CheckpointOptions {
  /// When false (default), tensors the adapter does not recognise are kept with role kUnknown
  /// and listed by unknown_tensors(); when true, Open fails naming them.
  bool strict = false;
  /// Verify that every floating-point weight is finite (reads all bytes once).
  bool check_finite = false;
};

/// An opened model directory. Shards are mmapped and validated on Open; tensor bytes are only
/// touched through View().
///
/// Open also accepts a GGUF file ("model.gguf", as moeq-quantize --format gguf writes it;
/// docs/gguf.md "Reading GGUF"): the config comes from the architecture metadata, tensors are
/// presented with their Hugging Face names and shapes (each layer's experts as one fused
/// [experts, out, in] tensor named like mlx-lm's stacked switch_mlp), and ReadF32 decodes the
/// ggml blocks to float32 (undoing llama.cpp's q/k rotary permutation for Mixtral/Llama).
/// Such a checkpoint has no shards; View maps F32/F16/BF16 tensors in place and serves the
/// others as float32 decoded once and kept while the Checkpoint lives.
class Checkpoint {
 public:
  static Result<std::unique_ptr<Checkpoint>> Open(const std::string& dir,
                                                  const CheckpointOptions& options = {});
  ~Checkpoint();
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  /// True when opened from a GGUF file (dir() is then the file's path).
  bool is_gguf() const { return gguf_ != nullptr; }
  /// The ggml type name ("q4_K", "f32", ...) a GGUF-backed tensor is stored as; "" otherwise.
  std::string GgufStorageType(std::string_view name) const;

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const ArchAdapter& adapter() const { return *adapter_; }

  /// All tensors sorted by TensorId, then name.
  const std::vector<CheckpointTensor>& tensors() const { return tensors_; }
  const CheckpointTensor* Find(std::string_view name) const;
  /// Zero-copy view of a tensor's bytes (valid while the Checkpoint lives). Quantized tensors
  /// have no float bytes to view: use ReadF32 or ReadQuantized (Unsupported otherwise).
  Result<TensorView> View(std::string_view name) const;
  /// The whole tensor as float32: float tensors converted, quantized ones dequantized
  /// (quant::Dequantize, bit-exact with MLX). `out` is resized to the logical element count.
  Status ReadF32(std::string_view name, std::vector<float>* out, int threads = 0) const;
  /// The stored parts of a quantized tensor (copied out of the mapping).
  Result<quant::QuantizedTensor> ReadQuantized(std::string_view name) const;
  /// True when at least one tensor is stored MLX-quantized.
  bool is_quantized() const { return quantized_tensors_ > 0; }
  /// Hints that a tensor's pages can be dropped from memory.
  void Release(std::string_view name) const;
  /// Hints that a tensor will be read next: its pages are read ahead in the background.
  void Prefetch(std::string_view name) const;

  /// Names of tensors with role kUnknown.
  std::vector<std::string> unknown_tensors() const;
  /// Shard file names relative to dir(), in index order.
  const std::vector<std::string>& shard_files() const { return shard_files_; }
  const SafetensorsFile& shard(int i) const { return *shards_[static_cast<size_t>(i)]; }
  /// Other files of the directory to carry into a derived checkpoint (tokenizer.json,
  /// tokenizer_config.json, generation_config.json, special_tokens_map.json, ...), relative.
  const std::vector<std::string>& extra_files() const { return extra_files_; }
  /// sha256 over config.json and the tensor table (names, dtypes, shapes, shard offsets).
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  Checkpoint();
  static Result<std::unique_ptr<Checkpoint>> OpenGguf(const std::string& path,
                                                      const CheckpointOptions& options);
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<ArchAdapter> adapter_;
  std::vector<CheckpointTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;  // name -> index into tensors_
  std::vector<std::string> shard_files_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> extra_files_;
  std::string fingerprint_;
  int64_t quantized_tensors_ = 0;
  std::map<std::string, int, std::less<>> part_shard_;      // stored part name -> shard (quantized)
  std::unique_ptr<checkpoint_internal::GgufBacking> gguf_;  // set when opened from a .gguf file
};

}  // namespace moeq
