// Internal interface between the quantizer's drivers (affine.cpp, quant_error.cpp) and its
// row kernels. The kernels are one template (affine_kernels.h) compiled twice: once for the
// baseline ISA ("portable") and once with AVX2 enabled ("avx2", x86-64 only); both produce
// bit-identical results. Tests may call either set directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "moeq/base/tensor.h"

namespace moeq::quant::internal {

/// Dtype of scales and biases, as the kernels see it.
enum class ScaleKind : uint8_t { kF32, kBF16, kF16 };

/// ScaleKind of a scale dtype (BF16, F16 or F32; anything else maps to kBF16).
inline ScaleKind ScaleKindOf(DType d) {
  return d == DType::kF32 ? ScaleKind::kF32
                          : (d == DType::kF16 ? ScaleKind::kF16 : ScaleKind::kBF16);
}

/// Bytes of one scale or bias.
inline size_t ScaleSize(ScaleKind k) { return k == ScaleKind::kF32 ? 4 : 2; }

/// Error sums of one row block (lanes already reduced in a fixed order).
struct ErrorAccum {
  double weight_sq = 0.0;
  double error_sq = 0.0;
  double max_abs = 0.0;
};

/// One call quantizes `rows` consecutive rows.
struct QuantizeRowsArgs {
  const float* w = nullptr;  ///< [rows, cols] float32, row-major
  int64_t rows = 0;
  int64_t cols = 0;  ///< multiple of group_size
  int bits = 0;
  int group_size = 0;  ///< 32, 64 or 128
  ScaleKind scale_kind = ScaleKind::kBF16;
  /// When set: codes [rows, cols*bits/32], scales and biases [rows, cols/group_size] are
  /// written. All three are set or none.
  uint32_t* packed = nullptr;
  std::byte* scales = nullptr;
  std::byte* biases = nullptr;
  /// When set: the block is also dequantized (with the stored scale/bias) and its error
  /// added here.
  ErrorAccum* error = nullptr;
};

/// Returns -1, or the index (in the block) of a row holding a non-finite value; outputs are
/// then incomplete.
using QuantizeRowsFn = int64_t (*)(const QuantizeRowsArgs&);

/// One call dequantizes `rows` consecutive rows.
struct DequantizeRowsArgs {
  const uint32_t* packed = nullptr;   ///< [rows, cols*bits/32]
  const std::byte* scales = nullptr;  ///< [rows, cols/group_size]
  const std::byte* biases = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int bits = 0;
  int group_size = 0;
  ScaleKind scale_kind = ScaleKind::kBF16;
  float* out = nullptr;  ///< [rows, cols]
};

using DequantizeRowsFn = void (*)(const DequantizeRowsArgs&);

/// One compiled kernel set.
struct KernelSet {
  const char* name;
  QuantizeRowsFn quantize_rows;
  DequantizeRowsFn dequantize_rows;
};

/// The baseline kernels (always available).
const KernelSet& PortableKernels();
/// The AVX2 kernels, or nullptr when not compiled in or the CPU lacks AVX2.
const KernelSet* Avx2Kernels();
/// The kernels in use: AVX2 when available and SelectIsa() (MOEQ_ISA) allows it.
const KernelSet& ActiveKernels();

}  // namespace moeq::quant::internal
