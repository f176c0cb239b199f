// Internal interface shared by the encoders of the MLX affine layout (encoders.cpp) and of the
// GGUF block layouts (gguf_encoders.cpp): the factored inverse Hessian of GPTQ.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/quant/encoders.h"

namespace moeq::quant::internal {

struct GptqFactor {
  Eigen::MatrixXf u;      // upper Cholesky factor of (P (H+λI) Pᵀ)⁻¹, [cols, cols]
  std::vector<int> perm;  // processing position → column
};

/// U with (H + λI)⁻¹ = Uᵀ U for the statistics' Gram matrix (or diagonal), λ = damp·mean(diag H)
/// (raised ×10 up to 6 times until the factorisation succeeds); columns in decreasing diag H
/// when o.gptq_act_order. Dead inputs (diag ≤ 0) get a unit diagonal.
Result<GptqFactor> FactorHessian(const InputStats& st, int64_t cols, const EncoderOptions& o);

}  // namespace moeq::quant::internal
