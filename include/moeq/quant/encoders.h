// Encoders: how the codes, scales and biases of an MLX affine format are chosen for a weight
// matrix. One interface, chosen per tensor by the plan (allocation.json "encoder"):
//
//   rtn       MLX's round-to-nearest (QuantizeAffine): byte-identical to MLX and to moeq's
//             default. Needs no statistics.
//   weighted  importance-weighted search of each group's scale and bias. For a group with
//             weights w_j and input importances h_j = E[x_j²] (diagonal of H = E[x xᵀ]) it
//             minimises Σ_j h_j (w_j − ŵ_j)² over a candidate grid: the RTN parameters, and for
//             each of `weighted_steps` shrunk ranges [min + a·r, max − b·r] the codes rounded
//             with those parameters followed by a weighted least-squares refit of (scale, bias)
//             for the fixed codes. Errors are measured on what is stored (scale and bias
//             rounded to the scale dtype, MLX's dequantization), and the RTN candidate is
//             always in the set, so weighted never does worse than rtn on this objective.
//   gptq      error-compensating column-by-column rounding (Frantar et al., GPTQ) with the
//             full input Gram matrix H: Cholesky factor of (H + λI)⁻¹ with λ = damp·mean(diag H),
//             lazy batch updates of `gptq_block` columns, optional act-order (columns in
//             decreasing diag H). A group's scale and bias are fixed when its first column is
//             reached (from the partially updated weights, by MLX's RTN rule), as GPTQ does,
//             so the codes are in the plain MLX affine layout. With H = I the result is
//             byte-identical to rtn (no error is propagated).
//
// Statistics are the second moments of the layer's input (moeq-profile --activation-stats,
// docs/artifacts.md). An encoder given no statistics for a tensor falls back to rtn (weighted:
// no diagonal; gptq: no Gram matrix — it then uses the diagonal as H when present).
//
// Determinism: rows are processed in fixed blocks (independent of the thread count), every
// reduction is in a fixed order, so the output is identical for any thread count.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/base/tensor.h"
#include "moeq/quant/quant_format.h"
#include "moeq/quant/quantizer.h"

namespace moeq::quant {

enum class EncoderKind : uint8_t { kRtn, kWeighted, kGptq };

/// "rtn", "weighted", "gptq".
std::string_view EncoderName(EncoderKind kind);
/// Parses an encoder name; InvalidArgument lists the accepted names.
Result<EncoderKind> ParseEncoder(std::string_view name);
/// Parses a comma-separated list ("rtn,gptq"); duplicates are an error.
Result<std::vector<EncoderKind>> ParseEncoderList(std::string_view list);

/// Second moments of a linear layer's input x (the columns of W): `diag` = E[x_j²] [cols],
/// `gram` = E[x xᵀ] row-major [cols, cols] (may be empty), from `count` tokens.
struct InputStats {
  std::vector<double> diag;
  std::vector<double> gram;
  int64_t count = 0;

  bool has_diag() const { return !diag.empty(); }
  bool has_gram() const { return !gram.empty(); }
  int64_t cols() const { return static_cast<int64_t>(diag.size()); }
};

struct EncoderOptions {
  EncoderKind kind = EncoderKind::kRtn;
  /// weighted: shrink steps of the range search (per side; steps² candidates + RTN).
  int weighted_steps = 8;
  /// weighted: largest fraction of the range removed per side.
  double weighted_max_shrink = 0.2;
  /// gptq: dampening λ = damp · mean(diag H) (added to the diagonal).
  double gptq_damp = 0.01;
  /// gptq: columns per lazy batch update.
  int gptq_block = 128;
  /// gptq: process columns in decreasing diag H.
  bool gptq_act_order = false;
};

/// Encodes a float32 row-major W [rows, cols] into the MLX affine format `format` (scales and
/// biases as `scale_dtype`) with options.kind. `stats` (may be null) must have cols() == cols.
/// rtn ignores `stats` and equals QuantizeAffine exactly. `threads`: 0 = all cores; the result
/// does not depend on it.
Result<QuantizedTensor> EncodeAffine(std::span<const float> w, int64_t rows, int64_t cols,
                                     const FormatTraits& format, DType scale_dtype,
                                     const EncoderOptions& options, const InputStats* stats,
                                     int threads = 0);

/// The encoder that EncodeAffine really runs for these statistics: options.kind, or rtn when
/// the statistics it needs are missing (weighted: diag; gptq: diag or gram).
EncoderKind EffectiveEncoder(EncoderKind kind, const InputStats* stats);

/// Activation-weighted error of a reconstruction Ŵ of W [rows, cols] under input statistics:
/// output_error = tr(Δ H Δᵀ) with Δ = W − Ŵ, output_power = tr(W H Wᵀ); H is the Gram matrix
/// when present, else diag. rel = sqrt(output_error / output_power) = ‖(W−Ŵ)X‖ / ‖WX‖ for
/// H = XᵀX / n. Computed in double, fixed summation order.
struct WeightedError {
  double output_error = 0;
  double output_power = 0;
  double Relative() const;
  /// 10·log10(power / error), capped at ±kSqnrCapDb.
  double SqnrDb() const;
};
Result<WeightedError> MeasureWeightedError(std::span<const float> w, std::span<const float> w_hat,
                                           int64_t rows, int64_t cols, const InputStats& stats,
                                           int threads = 0);

}  // namespace moeq::quant
