// The table of storage formats a tensor can be given: MLX affine formats and float passthrough.
//
// One row per format (like ggml's type_traits): every property that depends on the format —
// name, bits, group size, scale/bias dtype, packed size, bits per weight, the error tolerance
// tests use — lives in that row, so no caller switches on bits or group size. The table is
// defined in src/quant/format_registry.cpp; iterate it with AllFormats().
//
// Affine formats follow MLX (docs/formats.md §2.1–2.3): per group of `group_size` consecutive
// elements of a row, a scale and a bias stored in the *source* float dtype, codes packed as a
// little-endian bit stream into uint32 words.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "moeq/base/status.h"
#include "moeq/base/tensor.h"

namespace moeq::quant {

/// How a format stores a tensor.
enum class FormatKind : uint8_t {
  kAffine,  ///< MLX affine: packed uint32 codes + per-group scales and biases
  kFloat,   ///< unquantized float (bf16, f16 or f32), one element per weight
};

/// Bit widths of affine formats (MLX rejects 7 and anything else).
inline constexpr int kAffineBits[] = {2, 3, 4, 5, 6, 8};
/// Group sizes of affine formats.
inline constexpr int kAffineGroupSizes[] = {32, 64, 128};

/// Properties of one storage format. Instances live only in the registry table; compare
/// formats by address or by name.
struct FormatTraits {
  /// Stable name, persisted in artefacts: "q4g64" (affine, 4 bits, group 64), "bf16", "f16", "f32".
  std::string_view name;
  FormatKind kind = FormatKind::kAffine;
  /// Bits per code (affine: 2, 3, 4, 5, 6, 8) or per element (float: 16 or 32).
  int bits = 0;
  /// Elements per scale/bias group along the last axis (affine: 32, 64, 128); 0 for float.
  int group_size = 0;
  /// Element type of a float format; unused (kU32, the packed word type) for affine formats.
  DType float_dtype = DType::kU32;
  /// Test tolerance: upper bound of the NRMSE (‖W−Q‖F/‖W‖F) this format gives on i.i.d.
  /// standard normal float32 weights of at least 64k elements, with bf16, f16 or f32
  /// scales. Values are measured upper bounds with ≈15% margin (see format_registry.cpp).
  double nrmse_tolerance = 0.0;

  bool is_affine() const { return kind == FormatKind::kAffine; }

  /// Dtype of the scales and biases for a source tensor of dtype `source`: MLX stores them in
  /// the input dtype, so F16 → F16, F32 → F32, and BF16 → BF16. Any other source (F64, F8, ...)
  /// is converted to bf16 by moeq before quantization, so → BF16. Float formats: their own dtype.
  DType ScaleDType(DType source) const;

  /// uint32 words per packed row of `cols` elements: cols * bits / 32 (affine), or 0 (float).
  /// `cols` must be a multiple of group_size.
  int64_t PackedWordsPerRow(int64_t cols) const;

  /// Bytes this format stores for a [rows, cols] tensor whose source dtype is `source`:
  /// affine = packed uint32 words + scales + biases (both of ScaleDType(source));
  /// float = rows * cols * element size. InvalidArgument when cols is not a multiple of the
  /// group size or a dimension is negative.
  Result<uint64_t> StorageBytes(int64_t rows, int64_t cols, DType source) const;
  /// The same for any shape; all leading dimensions count as rows ([E, out, in] → E*out rows).
  /// A 1-D shape is one row; affine formats need at least 2 dimensions (as MLX).
  Result<uint64_t> StorageBytes(std::span<const int64_t> shape, DType source) const;

  /// Storage bits per weight, scales and biases included: bits + 2 * scale_bits / group_size
  /// for affine (q4g64 with a bf16 source → 4.5), bits for float formats.
  double BitsPerWeight(DType source) const;
};

/// Every format, affine first (ordered by bits, then group size), then bf16, f16, f32.
std::span<const FormatTraits> AllFormats();

/// The format called `name` ("q4g64", "bf16", ...), or nullptr.
const FormatTraits* FindFormat(std::string_view name);

/// The affine format with these parameters, or nullptr when MLX does not support them.
const FormatTraits* FindAffineFormat(int bits, int group_size);

/// Parses a format spec as written in config files and on command lines:
///   "q4g64" or any registry name ("bf16", "f16", "f32");
///   "4,64" (bits,group);
///   "16" or "16,0" — unquantized 16-bit, i.e. the source's own 16-bit dtype: f16 for an F16
///   `source`, bf16 otherwise (F32 sources are narrowed to bf16 like mlx-lm models);
///   "32" or "32,0" — f32.
/// Errors (InvalidArgument) name the spec and list what is accepted; unsupported bits or group
/// sizes are named ("bits 7 is not supported: ...").
Result<const FormatTraits*> ParseFormatSpec(std::string_view spec, DType source = DType::kBF16);

/// The "(bits,group)" spec of a format, as in mint_grid.json: "4,64", "16,0", "32,0".
std::string FormatSpec(const FormatTraits& format);

}  // namespace moeq::quant
