// The one table of storage formats (FormatTraits) and its lookups and spec parsing.
#include <array>
#include <charconv>
#include <string>

#include "moeq/quant/quant_format.h"

namespace moeq::quant {
namespace {

// NRMSE tolerances for i.i.d. N(0,1) weights: the largest NRMSE measured over bf16, f16 and
// f32 scales on 2048x768, 256x1024 and 64x1024 matrices (mt19937 normal_distribution), plus
// ≈15%. bf16 scales are always the worst: MLX dequantizes in the scale dtype, so every
// reconstructed weight is itself rounded to bf16, which dominates at 8 bits (0.0088 vs 0.0048
// with f32 scales for q8g32). Rows: bits 2, 3, 4, 5, 6, 8; columns: group 32, 64, 128.
constexpr double kAffineTolerance[6][3] = {
    {0.42, 0.46, 0.49},        // 2 bits
    {0.20, 0.22, 0.24},        // 3 bits
    {0.094, 0.105, 0.116},     // 4 bits
    {0.046, 0.052, 0.057},     // 5 bits
    {0.024, 0.027, 0.029},     // 6 bits
    {0.0102, 0.0112, 0.0120},  // 8 bits
};

constexpr FormatTraits Affine(std::string_view name, int bits_index, int group_index) {
  FormatTraits t;
  t.name = name;
  t.kind = FormatKind::kAffine;
  t.bits = kAffineBits[bits_index];
  t.group_size = kAffineGroupSizes[group_index];
  t.float_dtype = DType::kU32;
  t.nrmse_tolerance = kAffineTolerance[bits_index][group_index];
  return t;
}

constexpr FormatTraits Float(std::string_view name, int bits, DType dtype, double tolerance) {
  FormatTraits t;
  t.name = name;
  t.kind = FormatKind::kFloat;
  t.bits = bits;
  t.group_size = 0;
  t.float_dtype = dtype;
  t.nrmse_tolerance = tolerance;
  return t;
}

// Float tolerances: round-to-nearest-even narrowing has relative error <= 2^-(mantissa bits+1),
// so NRMSE <= 2^-9 for bf16 and 2^-11 for f16 (normal range); f32 is exact.
constexpr std::array<FormatTraits, 21> kFormats = {
    Affine("q2g32", 0, 0),
    Affine("q2g64", 0, 1),
    Affine("q2g128", 0, 2),
    Affine("q3g32", 1, 0),
    Affine("q3g64", 1, 1),
    Affine("q3g128", 1, 2),
    Affine("q4g32", 2, 0),
    Affine("q4g64", 2, 1),
    Affine("q4g128", 2, 2),
    Affine("q5g32", 3, 0),
    Affine("q5g64", 3, 1),
    Affine("q5g128", 3, 2),
    Affine("q6g32", 4, 0),
    Affine("q6g64", 4, 1),
    Affine("q6g128", 4, 2),
    Affine("q8g32", 5, 0),
    Affine("q8g64", 5, 1),
    Affine("q8g128", 5, 2),
    Float("bf16", 16, DType::kBF16, 1.0 / 512),
    Float("f16", 16, DType::kF16, 1.0 / 2048),
    Float("f32", 32, DType::kF32, 0.0),
};

std::string ListInts(std::span<const int> v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  return s;
}

// Parses a whole string as a non-negative decimal int.
bool ParseInt(std::string_view s, int* out) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && p == end && *out >= 0;
}

Status SpecError(std::string_view spec) {
  return Status::InvalidArgument(
      "format spec '" + std::string(spec) +
      "' is not recognised (expected q<bits>g<group> such as q4g64, '<bits>,<group>' such as "
      "4,64, 16, 32, bf16, f16 or f32)");
}

Result<const FormatTraits*> ResolveBitsGroup(std::string_view spec, int bits, int group,
                                             bool group_given, DType source) {
  if (bits == 16 || bits == 32) {
    if (group_given && group != 0) {
      return Status::InvalidArgument(
          "format spec '" + std::string(spec) + "': " + std::to_string(bits) +
          "-bit formats are unquantized and take group 0, not " + std::to_string(group));
    }
    if (bits == 32) return FindFormat("f32");
    return FindFormat(source == DType::kF16 ? "f16" : "bf16");
  }
  if (!group_given) return SpecError(spec);
  bool bits_ok = false, group_ok = false;
  for (int b : kAffineBits) bits_ok |= (b == bits);
  for (int g : kAffineGroupSizes) group_ok |= (g == group);
  if (!bits_ok) {
    return Status::InvalidArgument(
        "format spec '" + std::string(spec) + "': bits " + std::to_string(bits) +
        " is not supported (affine bits: " + ListInts(kAffineBits) + "; or 16/32 for float)");
  }
  if (!group_ok) {
    return Status::InvalidArgument(
        "format spec '" + std::string(spec) + "': group size " + std::to_string(group) +
        " is not supported (group sizes: " + ListInts(kAffineGroupSizes) + ")");
  }
  return FindAffineFormat(bits, group);
}

}  // namespace

DType FormatTraits::ScaleDType(DType source) const {
  if (!is_affine()) return float_dtype;
  if (source == DType::kF16 || source == DType::kF32) return source;
  return DType::kBF16;
}

int64_t FormatTraits::PackedWordsPerRow(int64_t cols) const {
  return is_affine() ? cols * bits / 32 : 0;
}

Result<uint64_t> FormatTraits::StorageBytes(int64_t rows, int64_t cols, DType source) const {
  if (rows < 0 || cols < 0) {
    return Status::InvalidArgument("format " + std::string(name) + ": negative shape [" +
                                   std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
  const auto r = static_cast<uint64_t>(rows);
  const auto c = static_cast<uint64_t>(cols);
  if (!is_affine()) return r * c * DTypeSize(float_dtype);
  if (cols % group_size != 0) {
    return Status::InvalidArgument(
        "format " + std::string(name) + ": shape [" + std::to_string(rows) + ", " +
        std::to_string(cols) + "]: last dimension " + std::to_string(cols) +
        " is not a multiple of group size " + std::to_string(group_size));
  }
  const uint64_t words = r * c * static_cast<uint64_t>(bits) / 32;
  const uint64_t groups = r * (c / static_cast<uint64_t>(group_size));
  return words * 4 + 2 * groups * DTypeSize(ScaleDType(source));
}

Result<uint64_t> FormatTraits::StorageBytes(std::span<const int64_t> shape, DType source) const {
  if (shape.empty() || (is_affine() && shape.size() < 2)) {
    if (is_affine()) {
      return Status::InvalidArgument("format " + std::string(name) + ": shape " +
                                     ShapeString(shape) +
                                     " cannot be quantized (affine formats need >= 2 dims)");
    }
    return StorageBytes(1, 1, source);  // a scalar
  }
  int64_t rows = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return Status::InvalidArgument("format " + std::string(name) + ": negative shape " +
                                     ShapeString(shape));
    }
    if (i + 1 < shape.size()) rows *= shape[i];
  }
  auto bytes = StorageBytes(rows, shape.back(), source);
  if (!bytes.ok()) {
    return Status::InvalidArgument("shape " + ShapeString(shape) + ": " + bytes.status().message());
  }
  return bytes;
}

double FormatTraits::BitsPerWeight(DType source) const {
  if (!is_affine()) return bits;
  const double scale_bits = 8.0 * static_cast<double>(DTypeSize(ScaleDType(source)));
  return bits + 2.0 * scale_bits / group_size;
}

std::span<const FormatTraits> AllFormats() { return kFormats; }

const FormatTraits* FindFormat(std::string_view name) {
  for (const auto& f : kFormats) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const FormatTraits* FindAffineFormat(int bits, int group_size) {
  for (const auto& f : kFormats) {
    if (f.is_affine() && f.bits == bits && f.group_size == group_size) return &f;
  }
  return nullptr;
}

Result<const FormatTraits*> ParseFormatSpec(std::string_view spec, DType source) {
  if (const FormatTraits* f = FindFormat(spec)) return f;
  int bits = 0, group = 0;
  // "q<bits>g<group>" with bits or group outside the table: report which one is wrong.
  if (spec.size() > 1 && spec[0] == 'q') {
    const size_t g = spec.find('g');
    if (g != std::string_view::npos && ParseInt(spec.substr(1, g - 1), &bits) &&
        ParseInt(spec.substr(g + 1), &group)) {
      return ResolveBitsGroup(spec, bits, group, true, source);
    }
    return SpecError(spec);
  }
  const size_t comma = spec.find(',');
  if (comma == std::string_view::npos) {
    if (!ParseInt(spec, &bits)) return SpecError(spec);
    return ResolveBitsGroup(spec, bits, 0, false, source);
  }
  std::string_view b = spec.substr(0, comma), g = spec.substr(comma + 1);
  while (!g.empty() && g.front() == ' ') g.remove_prefix(1);
  if (!ParseInt(b, &bits) || !ParseInt(g, &group)) return SpecError(spec);
  return ResolveBitsGroup(spec, bits, group, true, source);
}

std::string FormatSpec(const FormatTraits& format) {
  return std::to_string(format.bits) + "," + std::to_string(format.group_size);
}

}  // namespace moeq::quant
