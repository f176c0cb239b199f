// MLX affine quantization (bit-exact with MLX's CPU kernel), dequantization, and the
// quantization-error measurement that the sensitivity analysis runs for every tensor × format.
//
// Algorithm (docs/formats.md §2.2), per group of g consecutive elements of a row, all in
// float32 with round-half-even:
//   n_bins = 2^bits − 1; scale = max((max − min) / n_bins, 1e-7), negated unless |min| > |max|;
//   edge = |min| > |max| ? min : max; q0 = rint(edge / scale);
//   if q0 != 0 { scale = edge / q0; bias = edge } else bias = 0;
//   q_i = clamp(rint((w_i − bias) / scale), 0, n_bins)       (float32 scale and bias)
//   stored scale/bias = scale/bias rounded (RNE) to the scale dtype.
// Codes are packed per row as a little-endian bit stream (code k at bits [k*bits, k*bits+bits)),
// 4 bytes per uint32 word, so 3-, 5- and 6-bit codes straddle words (§2.3).
//
// Dequantization follows MLX's CPU `dequantize` (ops.cpp: multiply then add, each an op in the
// scale dtype): w' = R(R(q * scale) + bias), where R rounds a float32 result to the scale dtype
// (RNE; identity for f32) and scale/bias are the stored values. For bf16 and f16 scales q * scale
// is exact in float32, so R(q*scale) is the correctly rounded product; the sum is computed in
// float32 and rounded once more, as MLX's bf16 arithmetic (and its f16 arithmetic where no
// native half type exists) does. Native _Float16 addition rounds once, which can differ only
// when the float32 sum is inexact and lands exactly on an f16 midpoint. For f32 scales the
// product and the sum are rounded separately: the kernels disable floating-point contraction,
// so no fma is formed even in -march=native builds.
//
// Threading: work is split into row blocks of a fixed size that depends only on the tensor's
// shape; per-block partial sums are reduced in block order. Results are byte-identical for any
// thread count and with or without the AVX2 kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/base/tensor.h"
#include "moeq/quant/quant_format.h"

namespace moeq::quant {

/// An MLX affine-quantized tensor, laid out exactly as mlx-lm stores `.weight/.scales/.biases`.
struct QuantizedTensor {
  /// Shape of the float weight (>= 2 dims), e.g. [out, in] or fused experts [E, out, in].
  std::vector<int64_t> shape;
  int bits = 0;
  int group_size = 0;
  /// Dtype of scales and biases: kBF16, kF16 or kF32.
  DType scale_dtype = DType::kBF16;
  /// Codes, row-major [..., in * bits / 32] uint32 words.
  std::vector<uint32_t> packed;
  /// Scales, row-major [..., in / group_size] elements of scale_dtype as little-endian bytes
  /// (the bit patterns safetensors stores).
  std::vector<std::byte> scales;
  /// Biases, same shape and dtype as scales.
  std::vector<std::byte> biases;

  /// Product of all dimensions but the last.
  int64_t rows() const;
  /// Last dimension (input features).
  int64_t cols() const;
  /// Number of groups = rows() * cols() / group_size.
  int64_t num_groups() const;
  /// Shape of `packed`: shape with the last dim replaced by cols * bits / 32.
  std::vector<int64_t> PackedShape() const;
  /// Shape of `scales` and `biases`: shape with the last dim replaced by cols / group_size.
  std::vector<int64_t> ScalesShape() const;
  /// Raw bit pattern of scale / bias number `group` (16-bit dtypes in the low 16 bits).
  uint32_t ScaleBits(int64_t group) const;
  uint32_t BiasBits(int64_t group) const;
  /// Scale / bias number `group` as float32 (exact).
  float Scale(int64_t group) const;
  float Bias(int64_t group) const;
  /// Bytes of packed + scales + biases.
  uint64_t nbytes() const;
};

/// Checks affine parameters against a weight shape: bits in {2,3,4,5,6,8}, group in
/// {32,64,128}, >= 2 dims, last dim a multiple of the group size, scale dtype BF16/F16/F32.
/// Messages name the shape, bits and group ("shape [4, 100]: last dimension 100 is not a
/// multiple of group size 64").
Status CheckAffineParams(std::span<const int64_t> shape, int bits, int group_size,
                         DType scale_dtype);

/// Quantizes a float32 row-major matrix `w` [rows, cols] (cols % group_size == 0) with MLX's
/// affine scheme; scales and biases are stored as `scale_dtype` (MLX: the source dtype).
/// Non-finite weights are an InvalidArgument naming the row and column.
/// `threads`: 0 = all cores; the result does not depend on it.
Result<QuantizedTensor> QuantizeAffine(std::span<const float> w, int64_t rows, int64_t cols,
                                       int bits, int group_size, DType scale_dtype,
                                       int threads = 0);

/// Quantizes a tensor view (BF16, F16 or F32; other float dtypes are converted to float32 and
/// get bf16 scales) with an affine `format`. Scales take the view's dtype (format.ScaleDType).
/// Shapes with more than 2 dims (fused experts [E, out, in]) are treated as E*out rows; the
/// result keeps the original shape. Converts one row block at a time.
Result<QuantizedTensor> QuantizeTensor(const TensorView& view, const FormatTraits& format,
                                       int threads = 0);

/// Dequantizes all of `q` into float32 (values exactly representable in q.scale_dtype).
Result<std::vector<float>> Dequantize(const QuantizedTensor& q, int threads = 0);

/// Dequantizes rows [first_row, first_row + n_rows) of `q` into `out` (n_rows * cols floats).
Status DequantizeRows(const QuantizedTensor& q, int64_t first_row, int64_t n_rows,
                      std::span<float> out);

/// Packs codes (each < 2^bits) into a little-endian bit stream of uint32 words: code k occupies
/// stream bits [k*bits, k*bits+bits). codes.size() * bits must equal words.size() * 32.
Status PackBits(std::span<const uint8_t> codes, int bits, std::span<uint32_t> words);
/// Inverse of PackBits.
Status UnpackBits(std::span<const uint32_t> words, int bits, std::span<uint8_t> codes);

/// SQNR reported when the error is exactly zero (or the weights are zero too), in dB; keeps
/// artefacts finite JSON. Zero weights with a non-zero error report −kSqnrCapDb.
inline constexpr double kSqnrCapDb = 200.0;

/// Reconstruction error of one tensor in one format, accumulated in double.
struct ErrorStats {
  /// ‖W‖F², the sum of squared weights.
  double weight_sq_sum = 0.0;
  /// ‖W − Q‖F², the sum of squared reconstruction errors.
  double error_sq_sum = 0.0;
  /// max |W − Q| over all elements.
  double max_abs_error = 0.0;
  /// Number of weights.
  int64_t count = 0;
  /// Bytes the format stores for the tensor (FormatTraits::StorageBytes).
  uint64_t storage_bytes = 0;

  /// ‖W−Q‖F / ‖W‖F. 0 when both are 0; +inf when only ‖W‖F is 0.
  double Nrmse() const;
  /// 10·log10(‖W‖² / ‖W−Q‖²) in dB, capped at ±kSqnrCapDb (see there).
  double SqnrDb() const;
  /// sqrt(‖W−Q‖² / count); 0 for an empty tensor.
  double Rmse() const;
  /// Adds another tensor's sums (count, bytes, max included).
  void Merge(const ErrorStats& other);
};

/// Error between `w` and its reconstruction `w_hat` (same size), in double; storage_bytes 0.
ErrorStats CompareTensors(std::span<const float> w, std::span<const float> w_hat);
/// Continues `s`'s sums over `w` and `w_hat` in element order: calling it on consecutive pieces
/// of a tensor gives exactly (bit for bit) CompareTensors of the whole tensor.
void AccumulateError(std::span<const float> w, std::span<const float> w_hat, ErrorStats* s);

/// The hot path of the sensitivity analysis: quantizes `w` [rows, cols] with `format`,
/// dequantizes and accumulates the error, one row block at a time (no full-size copy). The
/// codes and the stored (rounded) scales/biases are exactly those QuantizeAffine produces; the
/// codes are not bit-packed here since packing is lossless.
/// `source` is the dtype the weights came from; it picks the scale dtype (MLX rule) and the
/// storage bytes. Float formats measure narrowing to their dtype (zero error when `source`
/// already is that dtype).
Result<ErrorStats> MeasureFormatError(std::span<const float> w, int64_t rows, int64_t cols,
                                      DType source, const FormatTraits& format, int threads = 0);

/// The same for a tensor view (any float dtype, >= 1 dim; affine formats need >= 2 dims, and
/// [E, out, in] counts as E*out rows).
Result<ErrorStats> MeasureFormatError(const TensorView& view, const FormatTraits& format,
                                      int threads = 0);

/// Several formats in one pass over the tensor: each row block is converted to float32 once
/// and run through every format. Result i belongs to formats[i]; identical to calling
/// MeasureFormatError per format.
Result<std::vector<ErrorStats>> MeasureFormatErrors(const TensorView& view,
                                                    std::span<const FormatTraits* const> formats,
                                                    int threads = 0);

/// Name of the kernel set in use: "avx2" or "portable" (AVX2 is picked at run time when the
/// CPU has it; set MOEQ_ISA=portable to force the portable one, moeq/base/cpu_features.h).
std::string_view ActiveKernelName();

}  // namespace moeq::quant
