// GGUF v3 output for llama.cpp: ggml block codecs, the plan-format → ggml-type mapping, a
// streaming writer for a whole checkpoint and a reader (used by tests and moeq-inspect).
//
// Layouts follow ../shared/docs/formats.md §3 (file layout, block layouts, MoE experts, tensor
// names); the mapping from plan formats to ggml types is documented in docs/gguf.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "moeq/artifact.h"
#include "moeq/checkpoint.h"
#include "moeq/quant_format.h"
#include "moeq/quant_plan.h"
#include "moeq/status.h"
#include "moeq/tensor.h"

namespace moeq {

// ---------------------------------------------------------------------------------------------
// ggml tensor types and block codecs

/// ggml tensor types moeq writes. Values are ggml's `enum ggml_type` ids (persisted in files).
enum class GgmlType : int32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kBF16 = 30,
};

/// One row of the ggml type table.
struct GgmlTypeTraits {
  GgmlType type = GgmlType::kF32;
  std::string_view name;    ///< ggml's name: "q4_K", "q8_0", "bf16", ...
  int64_t block_size = 1;   ///< elements per block (1 for float types, 32 or 256)
  int64_t type_size = 4;    ///< bytes per block
  bool quantized = false;

  /// Storage bits per weight: type_size * 8 / block_size (Q4_K → 4.5).
  double BitsPerWeight() const {
    return static_cast<double>(type_size) * 8.0 / static_cast<double>(block_size);
  }
};

/// Every supported type, in ggml id order.
std::span<const GgmlTypeTraits> AllGgmlTypes();
/// The traits of `type`, or nullptr for a type moeq does not support.
const GgmlTypeTraits* FindGgmlType(GgmlType type);
/// Lookup by ggml id (as read from a file); nullptr when unsupported.
const GgmlTypeTraits* FindGgmlTypeById(int32_t id);
/// Lookup by name, case-insensitive ("Q4_K", "q4_k", "bf16").
const GgmlTypeTraits* FindGgmlTypeByName(std::string_view name);
/// ggml's name of a type ("q4_K"), or "type<id>" for an unsupported id.
std::string GgmlTypeName(GgmlType type);

/// Bytes of one row of `n` elements; InvalidArgument when n is not a multiple of the block size.
Result<uint64_t> GgmlRowBytes(GgmlType type, int64_t n);

/// Encodes `n` float32 values (n a multiple of the block size) into `out`
/// (GgmlRowBytes(type, n) bytes). Quantized types use round-to-nearest with per-(sub)block
/// scales chosen by a small least-squares search; deterministic.
Status QuantizeGgmlRow(GgmlType type, const float* x, int64_t n, std::byte* out);
/// Decodes `n` values with ggml's dequantization formulas (formats.md §3.2), exactly.
Status DequantizeGgmlRow(GgmlType type, const std::byte* data, int64_t n, float* out);

// ---------------------------------------------------------------------------------------------
// Plan format → ggml type

/// The ggml type a tensor gets, and why.
struct GgmlTypeChoice {
  GgmlType type = GgmlType::kF32;
  /// The type the format maps to before the shape fallback (== type when none was needed).
  GgmlType preferred = GgmlType::kF32;
  /// True when ne0 is not a multiple of `preferred`'s block size and `type` replaces it.
  bool fallback = false;
};

/// Maps a plan format to a ggml type for a tensor whose rows have `ne0` elements and whose
/// source dtype is `source` (docs/gguf.md): nullptr keeps the source dtype (BF16/F16/F32);
/// float formats map to BF16/F16/F32; affine formats by bits and group size (q8 → Q8_0,
/// q6 → Q6_K, q5g32 → Q5_1, q5g64/128 → Q5_K, q4g32 → Q4_1, q4g64/128 → Q4_K, q3 → Q3_K,
/// q2 → Q2_K), then the shape fallback when ne0 is not a multiple of the block size
/// (Q6_K → Q8_0, Q5_K → Q5_1, Q4_K → Q4_1, Q3_K/Q2_K → Q4_0, 32-blocks → F16/BF16).
GgmlTypeChoice ChooseGgmlType(const quant::FormatTraits* format, DType source, int64_t ne0);

/// `preferred` when ne0 is a multiple of its block size, else the shape fallback above
/// (K-quants to their legacy neighbour, 32-blocks to F16/BF16).
GgmlTypeChoice GgmlTypeForShape(GgmlType preferred, DType source, int64_t ne0);

// ---------------------------------------------------------------------------------------------
// Metadata values

/// GGUF metadata value types (`gguf_type`).
enum class GgufValueType : int32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

/// One metadata value. `value` holds a JSON number, bool or string, or (kArray) a JSON array of
/// elements of `elem_type` (nested arrays are not supported).
struct GgufValue {
  GgufValueType type = GgufValueType::kU32;
  GgufValueType elem_type = GgufValueType::kU8;  ///< arrays only
  nlohmann::json value;
};

// ---------------------------------------------------------------------------------------------
// Writer

/// What WriteGguf did with one tensor.
struct GgufTensorReport {
  std::string name;                  ///< GGUF name, e.g. "blk.0.ffn_down_exps.weight"
  std::vector<int64_t> ne;           ///< ggml order (ne[0] innermost)
  GgmlType type = GgmlType::kF32;
  uint64_t bytes = 0;
  std::string plan_format;           ///< plan format that decided the type ("" = keep source)
  std::string note;                  ///< "fallback q4_K->q4_1 (ne0 128 % 256)", "experts promoted", ...
  int sources = 1;                   ///< checkpoint tensors merged into it
};

struct GgufWriteReport {
  std::string architecture;          ///< general.architecture
  uint64_t file_bytes = 0;
  uint64_t tensor_bytes = 0;         ///< data section without padding
  int64_t n_kv = 0;
  int64_t weights = 0;               ///< elements of all tensors
  int fallback_tensors = 0;          ///< tensors whose preferred type needed a shape fallback
  int promoted_expert_tensors = 0;   ///< merged expert tensors whose experts had different formats
  std::vector<GgufTensorReport> tensors;  ///< in file order
  double seconds = 0;

  /// {"ggml_type": {"tensors": n, "bytes": b, "weights": w}}.
  nlohmann::json TypeSummary() const;
};

struct GgufWriteOptions {
  /// Worker threads for encoding (0 = all cores). Output bytes do not depend on it.
  int threads = 0;
  /// Progress on stderr.
  bool progress = true;
  /// Producer recorded in the metadata (moeq.producer, moeq.command); may be null.
  const ArtifactContext* context = nullptr;
  /// general.name; "" = the model directory's base name.
  std::string model_name;
  /// Refuse to write without tokenizer metadata (no or empty tokenizer.json). When false, a
  /// missing vocabulary only logs a warning (llama.cpp will not load such a file).
  bool require_tokenizer = false;
  /// Filled when not null.
  GgufWriteReport* report = nullptr;
  /// Replace an existing `path` (--force); without it an output that appears while writing is
  /// not replaced (AlreadyExists).
  bool overwrite = false;
  /// When set, every tensor the plan quantizes (affine plan format) is stored as this ggml
  /// type instead of the one its format maps to (shape fallback as GgmlTypeForShape), as
  /// llama-quantize's TYPE argument does (moeq-quantize --gguf-type).
  std::optional<GgmlType> force_type;
};

/// Writes one GGUF v3 file for `ckpt` with per-tensor types chosen from `plan` (plan.FormatOf of
/// each checkpoint tensor; experts of one layer and projection are merged into one 3-D tensor of
/// the highest precision among them). Streams tensor by tensor; the file appears atomically
/// (through an AtomicFile: a unique temporary renamed into place; see options.overwrite). Supported architectures: qwen3_moe, qwen2_moe, mixtral, olmoe, llama,
/// qwen2, qwen3.
Status WriteGguf(const Checkpoint& ckpt, const QuantPlan& plan, const std::string& path,
                 const GgufWriteOptions& options);

/// The GGUF architecture name for a Hugging Face model_type ("qwen3_moe" → "qwen3moe",
/// "mixtral" → "llama"); Unsupported otherwise.
Result<std::string> GgufArchitecture(std::string_view model_type);

// ---------------------------------------------------------------------------------------------
// Reader

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;           ///< ggml order
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;               ///< relative to the data section
  uint64_t nbytes = 0;

  int64_t numel() const;
};

/// A GGUF file opened read-only (memory-mapped), with its header validated: magic, version 3,
/// key and tensor-name uniqueness, supported types, ne0 divisible by the block size, offsets
/// equal to the running sum of aligned sizes, data inside the file.
class GgufFile {
 public:
  static Result<std::unique_ptr<GgufFile>> Open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  /// Byte offset of the data section in the file.
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }

  /// Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* Find(std::string_view key) const;
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;

  /// The raw bytes of a tensor.
  Result<std::span<const std::byte>> TensorData(std::string_view name) const;
  /// A whole tensor decoded to float32 (ggml element order).
  Result<std::vector<float>> DequantizeTensor(std::string_view name) const;

 private:
  GgufFile() = default;
  std::string path_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  uint64_t size_ = 0;
  const std::byte* base_ = nullptr;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace moeq
