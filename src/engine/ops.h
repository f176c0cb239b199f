// Dense float32 kernels of the forward pass (Eigen inside; private to src/engine).
//
// Every kernel splits its work into tiles whose size does not depend on the thread count, so
// outputs are bit-identical for any number of threads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moeq::engine {

/// A linear layer's weight W [out, in] row-major, with an optional bias [out].
struct Linear {
  int64_t out = 0;
  int64_t in = 0;
  std::vector<float> w;
  std::vector<float> b;
  bool empty() const { return w.empty(); }
};

/// y[t, :] = x[t, :] · Wᵀ (+ b), x [rows, in], y [rows, out] (resized).
void LinearForward(const Linear& lin, const float* x, int64_t rows, std::vector<float>* y,
                   int threads);

/// In place: x[t, :] = x[t, :] / sqrt(mean(x[t, :]²) + eps) * w, over rows of width w.size().
void RmsNormRows(float* x, int64_t rows, std::span<const float> w, float eps);

/// Rotary embedding (rotate-half form) on x [tokens, heads, head_dim], positions 0..tokens-1.
void ApplyRope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, double theta);

/// Causal grouped-query attention for one sequence. q [T, nh, hd], k and v [T, nkv, hd];
/// out [T, nh, hd] (resized). Scale 1/sqrt(hd), softmax in float32.
void CausalAttention(const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, int64_t tokens, int64_t heads,
                     int64_t kv_heads, int64_t head_dim, std::vector<float>* out, int threads);

/// SwiGLU MLP: down(silu(gate(x)) * up(x)), x [rows, hidden], y [rows, hidden] (resized).
/// When `act` is given it receives the down projection's input [rows, ff].
void SwiGluForward(const Linear& gate, const Linear& up, const Linear& down, const float* x,
                   int64_t rows, std::vector<float>* y, int threads,
                   std::vector<float>* act = nullptr);

}  // namespace moeq::engine
