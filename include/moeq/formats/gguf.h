// GGUF v3 files: ggml tensor types and their block codecs, metadata values and a reader (used by
// tests and moeq-inspect). The writer is in moeq/export/gguf_writer.h.
//
// Layouts follow docs/formats.md §3 (file layout, block layouts, MoE experts, tensor
// names); the mapping from plan formats to ggml types is documented in docs/gguf.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/base/tensor.h"

namespace moeq {

/// File constants (docs/formats.md §3): "GGUF" little-endian, version 3, default alignment 32.
inline constexpr uint32_t kGgufMagic = 0x46554747u;
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint32_t kGgufAlignment = 32;

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
  std::string_view name;   ///< ggml's name: "q4_K", "q8_0", "bf16", ...
  int64_t block_size = 1;  ///< elements per block (1 for float types, 32 or 256)
  int64_t type_size = 4;   ///< bytes per block
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
/// Decodes `n` values with ggml's dequantization formulas (docs/formats.md §3.2), exactly.
Status DequantizeGgmlRow(GgmlType type, const std::byte* data, int64_t n, float* out);

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

/// llama.cpp's token types (the values of tokenizer.ggml.token_type), used by the GGUF writer and
/// the tokenizer's GGUF vocabulary reader.
enum class GgufTokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

/// One metadata value. `value` holds a JSON number, bool or string, or (kArray) a JSON array of
/// elements of `elem_type` (nested arrays are not supported).
struct GgufValue {
  GgufValueType type = GgufValueType::kU32;
  GgufValueType elem_type = GgufValueType::kU8;  ///< arrays only
  nlohmann::json value;
};

// ---------------------------------------------------------------------------------------------
// Reader

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  ///< ggml order
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  ///< relative to the data section
  uint64_t nbytes = 0;

  int64_t numel() const;
};

/// What GgufFile::Open reads.
struct GgufOpenOptions {
  /// Read the header and the metadata only (tensors() stays empty; a model file's tensor table
  /// and data are never touched), e.g. for the tokenizer vocabulary.
  bool metadata_only = false;
  /// Oldest version accepted: 3, or 2 (same layout on little-endian machines).
  uint32_t min_version = 3;
};

/// A GGUF file opened read-only (memory-mapped), with its header validated: magic, version 3,
/// key and tensor-name uniqueness, supported types, ne0 divisible by the block size, offsets
/// equal to the running sum of aligned sizes, data inside the file.
class GgufFile {
 public:
  static Result<std::unique_ptr<GgufFile>> Open(const std::string& path,
                                                const GgufOpenOptions& options = {});
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
