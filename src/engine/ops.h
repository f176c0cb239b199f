// Dense float32 kernels of the forward pass (Eigen inside; private to src/engine).
//
// Every kernel splits its work into tiles whose size does not depend on the thread count, so
// outputs are bit-identical for any number of threads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/qmatmul.h"

namespace moeq::engine {

/// A linear layer's weight W [out, in] row-major, with an optional bias [out]. The weight is
/// one of:
///  * float32: owned (`w`, converted or dequantized on load) or in the mapped checkpoint (`wf`);
///  * bf16/f16 in the mapped checkpoint (`wh`): products convert one tile of 64 rows at a time
///    to float32 (exactly) and run the float32 product on it, so results are bit-identical to
///    the float32 path on a converted copy, without the copy;
///  * MLX affine-packed (`q`, pointing into the mapped checkpoint or memory the engine owns):
///    products run the packed kernels (qmatmul.h) and never expand it.
struct Linear {
  int64_t out = 0;
  int64_t in = 0;
  std::vector<float> w;
  const float* wf = nullptr;
  const uint16_t* wh = nullptr;
  bool wh_f16 = false;  ///< `wh` holds IEEE f16 (else bf16)
  std::vector<float> b;
  PackedMatrix q;
  bool packed() const { return q.valid(); }
  /// float32 weights, wherever they are (nullptr for half or packed weights).
  const float* f32() const { return w.empty() ? wf : w.data(); }
  bool empty() const { return w.empty() && wf == nullptr && wh == nullptr && !q.valid(); }
  /// Bytes of weights a product reads.
  int64_t weight_bytes() const { return packed() ? q.nbytes() : out * in * (wh ? 2 : 4); }
};

/// Rows [r0, r1) of a half-precision matrix [*, in] converted to float32 into dst.
void HalfRowsToF32(const uint16_t* src, bool f16, int64_t in, int64_t r0, int64_t r1, float* dst);

/// Outputs [o0, o1) of x [rows, in] · Wᵀ (+ b) into y[r * y_stride + o], single-threaded:
/// the packed kernel for a packed weight, Eigen for a float one. A work item of the MoE
/// dispatch; the result of an element does not depend on the range it is computed in for
/// packed weights.
/// `xq`: x already quantized, for a packed weight with int8 activations (else it is quantized
/// here, once per call).
void LinearRange(const Linear& lin, const float* x, int64_t rows, float* y, int64_t y_stride,
                 int64_t o0, int64_t o1, const Int8Rows* xq = nullptr);

/// y[t, :] = x[t, :] · Wᵀ (+ b), x [rows, in], y [rows, out] (resized).
void LinearForward(const Linear& lin, const float* x, int64_t rows, std::vector<float>* y,
                   int threads);

/// In place: x[t, :] = x[t, :] / sqrt(mean(x[t, :]²) + eps) * w, over rows of width w.size().
void RmsNormRows(float* x, int64_t rows, std::span<const float> w, float eps);

/// Rotary embedding (rotate-half form) on x [tokens, heads, head_dim], positions
/// pos0..pos0+tokens-1.
void ApplyRope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, double theta,
               int64_t pos0 = 0);

/// Causal grouped-query attention for one sequence. q [T, nh, hd], k and v [T, nkv, hd];
/// out [T, nh, hd] (resized). Scale 1/sqrt(hd), softmax in float32.
void CausalAttention(const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, int64_t tokens, int64_t heads, int64_t kv_heads,
                     int64_t head_dim, std::vector<float>* out, int threads);

/// Causal attention of `tokens` new queries at positions pos0.. against a cache of
/// pos0 + tokens keys/values: q [T, nh, hd], k_all and v_all [pos0 + T, nkv, hd]. Query i sees
/// keys 0..pos0+i. out [T, nh, hd] (resized).
void CachedAttention(const std::vector<float>& q, const float* k_all, const float* v_all,
                     int64_t tokens, int64_t pos0, int64_t heads, int64_t kv_heads,
                     int64_t head_dim, std::vector<float>* out, int threads);

/// In place: g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] (vectorized exp).
void SiluMul(float* g, const float* u, int64_t n);

/// SwiGLU MLP: down(silu(gate(x)) * up(x)), x [rows, hidden], y [rows, hidden] (resized).
/// When `act` is given it receives the down projection's input [rows, ff].
void SwiGluForward(const Linear& gate, const Linear& up, const Linear& down, const float* x,
                   int64_t rows, std::vector<float>* y, int threads,
                   std::vector<float>* act = nullptr);

}  // namespace moeq::engine
