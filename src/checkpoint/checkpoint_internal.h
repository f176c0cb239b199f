// Internal pieces shared by Checkpoint::Open (safetensors directories, src/io/checkpoint.cpp)
// and the GGUF-backed checkpoint (src/io/gguf_checkpoint.cpp). Not part of the public API.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/checkpoint/checkpoint.h"
#include "moeq/formats/gguf.h"

namespace moeq::checkpoint_internal {

/// True when `path` names a GGUF file by its extension (".gguf", any case).
bool IsGgufPath(std::string_view path);

/// Checks recognised tensors against the adapter's expectations for this config (shapes,
/// duplicates, unexpected and missing tensors); `shard_files[t.shard]` names a tensor's file.
Status CheckAgainstConfig(const std::string& dir, const ModelConfig& config,
                          const ArchAdapter& adapter, const std::vector<CheckpointTensor>& tensors,
                          const std::vector<std::string>& shard_files);

/// Where a presented (Hugging Face) tensor lives in the GGUF file.
struct GgufSource {
  std::string gguf_name;
  /// llama.cpp's q/k rotary permutation to undo, with this many heads (0 = none); rows of
  /// `permute_cols` elements (the row length for weights, 1 for biases).
  int64_t permute_heads = 0;
  int64_t permute_cols = 0;
};

struct GgufBacking {
  std::unique_ptr<GgufFile> file;
  std::map<std::string, GgufSource, std::less<>> sources;  // presented name -> source
  /// Tensors decoded for View (ggml blocks or permuted rows), kept for the checkpoint's life:
  /// a view must stay valid while the Checkpoint lives, as a mapped one does.
  mutable std::mutex mu;
  mutable std::map<std::string, std::unique_ptr<std::vector<float>>, std::less<>> decoded;
};

/// View of a GGUF-backed tensor: the mapped bytes for F32/F16/BF16 tensors stored as
/// presented, else float32 decoded once (ReadGgufF32) and cached in `backing`.
Result<TensorView> GgufView(const GgufBacking& backing, const CheckpointTensor& t,
                            const std::string& path);

/// Decodes a GGUF-backed tensor to float32 in its presented (Hugging Face) layout.
Status ReadGgufF32(const GgufBacking& backing, const CheckpointTensor& t, const std::string& path,
                   std::vector<float>* out);

}  // namespace moeq::checkpoint_internal
