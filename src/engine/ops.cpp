// Dense float32 kernels of the forward pass, on Eigen row-major maps.
#include "engine/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

// GCC 12 reports false "may be used uninitialized" warnings inside its own AVX-512 intrinsics
// headers when Eigen's GEMM kernels are inlined here; they are not about moeq code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <Eigen/Dense>

#include "moeq/base/half.h"
#include "moeq/base/parallel.h"

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace moeq::engine {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRow = Eigen::Map<RowMat>;
using CMapRow = Eigen::Map<const RowMat>;

// Output features per tile of a linear layer. Fixed: it defines the summation order.
constexpr int64_t kOutTile = 64;

// Queries per work item of CausalAttention.
constexpr int64_t kQueryBlock = 64;

// Converted tiles of half-precision weights, per thread (at most kOutTile rows, or one
// LinearRange's rows).
std::vector<float>& TileBuffer() {
  thread_local std::vector<float> buf;
  return buf;
}

// The float32 weights of rows [o0, o1) of `lin`: in place for float32, converted into this
// thread's tile buffer for bf16/f16.
const float* WeightRows(const Linear& lin, int64_t o0, int64_t o1) {
  if (const float* f = lin.f32()) return f + o0 * lin.in;
  std::vector<float>& buf = TileBuffer();
  buf.resize(static_cast<size_t>((o1 - o0) * lin.in));
  HalfRowsToF32(lin.wh, lin.wh_f16, lin.in, o0, o1, buf.data());
  return buf.data();
}

// Vectorized elementwise functions on Eigen's packets, with unaligned loads and the tail padded
// into one more full packet: every element goes through the same packet code whatever the
// buffer's address (Eigen's array expressions peel a scalar prologue up to the first aligned
// element, so which elements got the scalar std::exp would depend on the allocation, and results
// on the thread count or on the buffer reused).
using Packet = Eigen::internal::packet_traits<float>::type;
constexpr int64_t kPacket = static_cast<int64_t>(sizeof(Packet) / sizeof(float));

template <typename F>
void PacketMap(float* p, const float* q, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kPacket <= n; i += kPacket) {
    Eigen::internal::pstoreu(
        p + i, f(Eigen::internal::ploadu<Packet>(p + i), Eigen::internal::ploadu<Packet>(q + i)));
  }
  if (i < n) {
    alignas(64) float a[kPacket] = {}, b[kPacket] = {};
    std::copy(p + i, p + n, a);
    std::copy(q + i, q + n, b);
    Eigen::internal::pstore(
        a, f(Eigen::internal::pload<Packet>(a), Eigen::internal::pload<Packet>(b)));
    std::copy(a, a + (n - i), p + i);
  }
}

// In place: p[i] = exp(p[i] * scale - max_j(p[j] * scale)), then normalised to sum 1 (softmax of
// the scaled row). The sum runs in packets, then over the lanes: a fixed order for a given n.
void SoftmaxScaled(float* p, int64_t n, float scale) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    p[i] *= scale;
    mx = std::max(mx, p[i]);
  }
  const Packet vmx = Eigen::internal::pset1<Packet>(mx);
  PacketMap(p, p, n,
            [&](Packet a, Packet) { return Eigen::internal::pexp(Eigen::internal::psub(a, vmx)); });
  Packet acc = Eigen::internal::pzero(Packet());
  int64_t i = 0;
  for (; i + kPacket <= n; i += kPacket)
    acc = Eigen::internal::padd(acc, Eigen::internal::ploadu<Packet>(p + i));
  float sum = Eigen::internal::predux(acc);
  for (; i < n; ++i) sum += p[i];
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) p[j] *= inv;
}

}  // namespace

void SiluMul(float* g, const float* u, int64_t n) {
  const Packet one = Eigen::internal::pset1<Packet>(1.0f);
  PacketMap(g, u, n, [&](Packet a, Packet b) {
    const Packet e = Eigen::internal::pexp(Eigen::internal::pnegate(a));
    return Eigen::internal::pmul(Eigen::internal::pdiv(a, Eigen::internal::padd(one, e)), b);
  });
}

void HalfRowsToF32(const uint16_t* src, bool f16, int64_t in, int64_t r0, int64_t r1, float* dst) {
  const uint16_t* s = src + r0 * in;
  const int64_t n = (r1 - r0) * in;
  int64_t i = 0;
  if (!f16) {
    // bf16 -> f32 is a 16-bit shift; blocks of 16 so the compiler emits one vector op per block.
    for (; i + 16 <= n; i += 16) {
      uint32_t u[16];
      for (int j = 0; j < 16; ++j) u[j] = static_cast<uint32_t>(s[i + j]) << 16;
      std::memcpy(dst + i, u, sizeof u);
    }
    for (; i < n; ++i) dst[i] = Bf16ToF32(s[i]);
    return;
  }
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) dst[i] = F16ToF32(s[i]);
}

void LinearRange(const Linear& lin, const float* x, int64_t rows, float* y, int64_t y_stride,
                 int64_t o0, int64_t o1, const Int8Rows* xq) {
  if (rows == 0 || o1 <= o0) return;
  if (lin.packed()) {
    const PackedMatrix& w = lin.q;
    PackedGemmArgs a;
    a.xq = Int8RowsFor(w, x, rows, lin.in, xq, DefaultPackedIsa());
    a.w = &w;
    a.x = x;
    a.x_stride = lin.in;
    a.work = PackedWorkBuffer(w.in);
    a.rows = rows;
    a.y = y;
    a.y_stride = y_stride;
    a.o0 = o0;
    a.o1 = o1;
    static const PackedIsa kIsa = DefaultPackedIsa();
    FindPackedGemm(w, kIsa)(a);
  } else {
    CMapRow X(x, rows, lin.in);
    CMapRow W(WeightRows(lin, o0, o1), o1 - o0, lin.in);
    Eigen::Map<RowMat, 0, Eigen::OuterStride<>> Y(y + o0, rows, o1 - o0,
                                                  Eigen::OuterStride<>(y_stride));
    Y.noalias() = X * W.transpose();
  }
  if (!lin.b.empty()) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = o0; j < o1; ++j) y[r * y_stride + j] += lin.b[static_cast<size_t>(j)];
    }
  }
}

void LinearForward(const Linear& lin, const float* x, int64_t rows, std::vector<float>* y,
                   int threads) {
  y->resize(static_cast<size_t>(rows * lin.out));
  if (rows == 0) return;
  if (lin.packed()) {
    PackedGemm(lin.q, x, rows, lin.in, y->data(), lin.out, threads);
    if (!lin.b.empty()) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < lin.out; ++j)
          (*y)[static_cast<size_t>(r * lin.out + j)] += lin.b[static_cast<size_t>(j)];
      }
    }
    return;
  }
  CMapRow X(x, rows, lin.in);
  const int64_t tiles = (lin.out + kOutTile - 1) / kOutTile;
  // Small products are not worth a thread hand-off; the tiling (and so the result) is the same.
  const int t = rows * lin.out * lin.in < (int64_t{1} << 18) ? 1 : threads;
  ParallelFor(
      tiles,
      [&](int64_t tile) {
        const int64_t o0 = tile * kOutTile;
        const int64_t n = std::min(kOutTile, lin.out - o0);
        CMapRow W(WeightRows(lin, o0, o0 + n), n, lin.in);
        Eigen::Map<RowMat, 0, Eigen::OuterStride<>> Y(y->data() + o0, rows, n,
                                                      Eigen::OuterStride<>(lin.out));
        Y.noalias() = X * W.transpose();
        if (!lin.b.empty()) {
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t j = 0; j < n; ++j) Y(r, j) += lin.b[static_cast<size_t>(o0 + j)];
          }
        }
      },
      t);
}

void RmsNormRows(float* x, int64_t rows, std::span<const float> w, float eps) {
  const int64_t d = static_cast<int64_t>(w.size());
  for (int64_t r = 0; r < rows; ++r) {
    float* p = x + r * d;
    float ss = 0.0f;
    for (int64_t i = 0; i < d; ++i) ss += p[i] * p[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    for (int64_t i = 0; i < d; ++i) p[i] = w[static_cast<size_t>(i)] * (p[i] * inv);
  }
}

void ApplyRope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, double theta,
               int64_t pos0) {
  const int64_t half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[static_cast<size_t>(i)] = 1.0f / std::pow(static_cast<float>(theta), e);
  }
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float a = static_cast<float>(t + pos0) * inv_freq[static_cast<size_t>(i)];
      cs[static_cast<size_t>(i)] = std::cos(a);
      sn[static_cast<size_t>(i)] = std::sin(a);
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* p = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = p[i], b = p[i + half];
        p[i] = a * cs[static_cast<size_t>(i)] - b * sn[static_cast<size_t>(i)];
        p[i + half] = b * cs[static_cast<size_t>(i)] + a * sn[static_cast<size_t>(i)];
      }
    }
  }
}

void CausalAttention(const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, int64_t tokens, int64_t heads, int64_t kv_heads,
                     int64_t head_dim, std::vector<float>* out, int threads) {
  out->resize(static_cast<size_t>(tokens * heads * head_dim));  // every element written below
  const int64_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  using Strided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
  // Work items: (head, block of kQueryBlock queries). A block's queries see keys [0, i1) only,
  // so the scores above the causal diagonal are computed for at most one block per row (about
  // half the products and exponentials of the full square). Items are independent: results do
  // not depend on the thread count.
  const int64_t blocks = (tokens + kQueryBlock - 1) / kQueryBlock;
  ParallelFor(
      heads * blocks,
      [&](int64_t item) {
        const int64_t h = item / blocks, b = item % blocks;
        const int64_t kh = h / group;
        const int64_t i0 = b * kQueryBlock, i1 = std::min(tokens, i0 + kQueryBlock);
        const int64_t m = i1 - i0;
        Strided Q(q.data() + i0 * heads * head_dim + h * head_dim, m, head_dim,
                  Eigen::OuterStride<>(heads * head_dim));
        Strided K(k.data() + kh * head_dim, i1, head_dim,
                  Eigen::OuterStride<>(kv_heads * head_dim));
        Strided V(v.data() + kh * head_dim, i1, head_dim,
                  Eigen::OuterStride<>(kv_heads * head_dim));
        thread_local std::vector<float> sbuf;
        sbuf.resize(static_cast<size_t>(m * i1 + 16));
        float* sp = sbuf.data() + (16 - reinterpret_cast<uintptr_t>(sbuf.data()) / 4 % 16) % 16;
        MapRow s(sp, m, i1);
        s.noalias() = Q * K.transpose();
        for (int64_t r = 0; r < m; ++r) {
          const int64_t n = i0 + r + 1;  // keys 0..i0 + r
          SoftmaxScaled(sp + r * i1, n, scale);
          std::fill(sp + r * i1 + n, sp + (r + 1) * i1, 0.0f);
        }
        Eigen::Map<RowMat, 0, Eigen::OuterStride<>> O(
            out->data() + i0 * heads * head_dim + h * head_dim, m, head_dim,
            Eigen::OuterStride<>(heads * head_dim));
        O.noalias() = s * V;
      },
      threads);
}

void CachedAttention(const std::vector<float>& q, const float* k_all, const float* v_all,
                     int64_t tokens, int64_t pos0, int64_t heads, int64_t kv_heads,
                     int64_t head_dim, std::vector<float>* out, int threads) {
  out->assign(static_cast<size_t>(tokens * heads * head_dim), 0.0f);
  const int64_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t total = pos0 + tokens;
  const int t = tokens * total * heads * head_dim < (int64_t{1} << 16) ? 1 : threads;
  ParallelFor(
      heads,
      [&](int64_t h) {
        const int64_t kh = h / group;
        std::vector<float> s(static_cast<size_t>(total));
        for (int64_t i = 0; i < tokens; ++i) {
          const float* qi = q.data() + (i * heads + h) * head_dim;
          const int64_t n = pos0 + i + 1;
          float mx = -INFINITY;
          for (int64_t j = 0; j < n; ++j) {
            const float* kj = k_all + (j * kv_heads + kh) * head_dim;
            float d = 0.0f;
            for (int64_t c = 0; c < head_dim; ++c) d += qi[c] * kj[c];
            s[static_cast<size_t>(j)] = d * scale;
            mx = std::max(mx, s[static_cast<size_t>(j)]);
          }
          float sum = 0.0f;
          for (int64_t j = 0; j < n; ++j) {
            s[static_cast<size_t>(j)] = std::exp(s[static_cast<size_t>(j)] - mx);
            sum += s[static_cast<size_t>(j)];
          }
          const float inv = 1.0f / sum;
          float* o = out->data() + (i * heads + h) * head_dim;
          for (int64_t j = 0; j < n; ++j) {
            const float p = s[static_cast<size_t>(j)] * inv;
            const float* vj = v_all + (j * kv_heads + kh) * head_dim;
            for (int64_t c = 0; c < head_dim; ++c) o[c] += p * vj[c];
          }
        }
      },
      t);
}

void SwiGluForward(const Linear& gate, const Linear& up, const Linear& down, const float* x,
                   int64_t rows, std::vector<float>* y, int threads, std::vector<float>* act) {
  std::vector<float> g, u;
  LinearForward(gate, x, rows, &g, threads);
  LinearForward(up, x, rows, &u, threads);
  SiluMul(g.data(), u.data(), static_cast<int64_t>(g.size()));
  LinearForward(down, g.data(), rows, y, threads);
  if (act) *act = std::move(g);
}

}  // namespace moeq::engine
