// A Hugging Face model directory: config.json, one safetensors file or an index plus shards,
// tokenizer and other files carried along.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/arch.h"
#include "moeq/model_config.h"
#include "moeq/safetensors.h"
#include "moeq/status.h"

namespace moeq {

/// One tensor of a checkpoint and where it lives.
struct CheckpointTensor {
  TensorInfo info;
  TensorId id;
  bool fused_experts = false;  ///< [experts, out, in] tensor holding all experts of a layer
  int shard = 0;               ///< index into Checkpoint::shard_files()
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
class Checkpoint {
 public:
  static Result<std::unique_ptr<Checkpoint>> Open(const std::string& dir,
                                                  const CheckpointOptions& options = {});

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const ArchAdapter& adapter() const { return *adapter_; }

  /// All tensors sorted by TensorId, then name.
  const std::vector<CheckpointTensor>& tensors() const { return tensors_; }
  const CheckpointTensor* Find(std::string_view name) const;
  /// Zero-copy view of a tensor's bytes (valid while the Checkpoint lives).
  Result<TensorView> View(std::string_view name) const;
  /// Hints that a tensor's pages can be dropped from memory.
  void Release(std::string_view name) const;

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
  Checkpoint() = default;
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<ArchAdapter> adapter_;
  std::vector<CheckpointTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;  // name -> index into tensors_
  std::vector<std::string> shard_files_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> extra_files_;
  std::string fingerprint_;
};

}  // namespace moeq
