// Element types, tensor descriptions and zero-copy tensor views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq {

/// Element types of safetensors files. Values are not persisted; names are ("BF16").
enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E4M3,  ///< read-only: decoded to float, never written by moeq
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64,
};

/// safetensors dtype string, e.g. "BF16".
std::string_view DTypeName(DType dtype);
/// Parses a safetensors dtype string; nullopt for unknown or unsupported ones.
std::optional<DType> ParseDType(std::string_view name);
/// Bytes per element.
size_t DTypeSize(DType dtype);
/// True for F32, F16, BF16, F64 and F8_E4M3.
bool IsFloatDType(DType dtype);

/// Name, element type and shape of a tensor (row-major, little-endian).
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  /// Number of elements (1 for a scalar, 0 if any dimension is 0).
  int64_t numel() const;
  /// Bytes of the data: numel() * DTypeSize(dtype).
  uint64_t nbytes() const;
  /// "[2048, 768]".
  std::string ShapeString() const;
};

/// A non-owning view of a tensor's bytes, valid while the file that owns them is open.
/// The data may be unaligned (MLX writers do not pad), so read it with memcpy-style loads.
struct TensorView {
  const TensorInfo* info = nullptr;
  std::span<const std::byte> data;

  int64_t numel() const { return info ? info->numel() : 0; }
};

/// "[2048, 768]" for a shape ("[]" for a scalar), as used in error messages.
std::string ShapeString(std::span<const int64_t> shape);

/// Converts `n` elements of a floating dtype starting at element `first` of `view` to float32.
/// Integer dtypes are converted by value. `out` must hold `n` floats.
Status ConvertToF32(const TensorView& view, int64_t first, int64_t n, float* out);

/// Converts a whole tensor to float32.
Result<std::vector<float>> ToF32(const TensorView& view);

/// Returns an error naming the tensor and the first non-finite element, if any.
Status CheckFinite(const TensorView& view, std::string_view file);

}  // namespace moeq
