// Internal pieces shared by Checkpoint::Open (safetensors directories, src/io/checkpoint.cpp)
// and the GGUF-backed checkpoint (src/io/gguf_checkpoint.cpp). Not part of the public API.
#pragma once

#include <map>
#include <memory>
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
Status CheckAgainstConfig(const std::string& dir, const ModelConfig& config, const ArchAdapter& adapter,
                          const std::vector<CheckpointTensor>& tensors, const std::vector<std::string>& shard_files);

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
};

/// Decodes a GGUF-backed tensor to float32 in its presented (Hugging Face) layout.
Status ReadGgufF32(const GgufBacking& backing, const CheckpointTensor& t, const std::string& path,
                   std::vector<float>* out);

}  // namespace moeq::checkpoint_internal
