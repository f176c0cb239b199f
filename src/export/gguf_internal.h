// Internal helpers of the GGUF writer (not part of the public API).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/formats/gguf.h"

namespace moeq::gguf_internal {

inline constexpr uint32_t kMagic = kGgufMagic;
inline constexpr uint32_t kVersion = kGgufVersion;
inline constexpr uint32_t kAlignment = kGgufAlignment;

using KvList = std::vector<std::pair<std::string, GgufValue>>;

inline void AddU32(KvList* kv, std::string key, uint64_t v) {
  kv->push_back({std::move(key), GgufValue{GgufValueType::kU32, GgufValueType::kU8, v}});
}
inline void AddF32(KvList* kv, std::string key, double v) {
  kv->push_back({std::move(key), GgufValue{GgufValueType::kF32, GgufValueType::kU8, v}});
}
inline void AddBool(KvList* kv, std::string key, bool v) {
  kv->push_back({std::move(key), GgufValue{GgufValueType::kBool, GgufValueType::kU8, v}});
}
inline void AddString(KvList* kv, std::string key, std::string v) {
  kv->push_back(
      {std::move(key), GgufValue{GgufValueType::kString, GgufValueType::kU8, std::move(v)}});
}
inline void AddArray(KvList* kv, std::string key, GgufValueType elem, nlohmann::json values) {
  kv->push_back({std::move(key), GgufValue{GgufValueType::kArray, elem, std::move(values)}});
}

/// Appends one metadata entry (key, type, value) in GGUF encoding to `out`.
Status AppendKv(const std::string& key, const GgufValue& value, std::string* out);

/// Tokenizer metadata (tokenizer.ggml.*) from the checkpoint's tokenizer.json and
/// tokenizer_config.json (docs/formats.md §3.1, §4.5). Sets *found to false, adding nothing, when
/// there is no tokenizer.json or its vocabulary is empty. `n_vocab` is the embedding row count:
/// the token list is padded to it with "[PAD<i>]" UNUSED tokens.
Status AddTokenizerMetadata(const Checkpoint& ckpt, int64_t n_vocab, KvList* kv, bool* found);

/// One GGUF tensor as WriteGguf plans it (no data).
struct LayoutTensor {
  std::string name;
  std::vector<int64_t> ne;  ///< ggml order
  GgmlType type = GgmlType::kF32;
  uint64_t bytes = 0;  ///< data bytes, without the alignment padding
  DType source = DType::kBF16;
  /// Stored F32 whatever the plan says (norms, router, shared-expert gate, 1-D tensors).
  bool forced_f32 = false;
  /// The checkpoint slices it is made of: (source tensor name, rows); "" = zeros.
  std::vector<std::pair<std::string, int64_t>> parts;
};

/// The whole file but its tensor data, as WriteGguf would write it for `plan`.
struct Layout {
  uint64_t header_bytes = 0;  ///< header + metadata + tensor infos, before the padding
  std::vector<LayoutTensor> tensors;
};

Result<Layout> PlanLayout(const Checkpoint& ckpt, const QuantPlan& plan,
                          const GgufWriteOptions& options);

}  // namespace moeq::gguf_internal
