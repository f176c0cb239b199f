// Data-aware encoders of the GGUF block layouts: weighted block search and GPTQ in the block
// layout. The maths is described in include/moeq/quant/gguf_encoders.h; the block layouts in
// docs/formats.md §3.2. Blocks are packed here and decoded by the formats module's ggml
// decoders (DequantizeGgmlRow), which the unit tests use to check the packing exactly.
#include "moeq/quant/gguf_encoders.h"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "encoders_internal.h"
#include "moeq/base/half.h"
#include "moeq/base/parallel.h"
#include "moeq/formats/ggml_pack.h"

// ŵ = dl·q + off is evaluated exactly as ggml's decoders do (a product, then a sum): no fma.
#pragma GCC optimize("fp-contract=off")

namespace moeq::quant {
namespace {

/// Rows per work item: fixed (never depends on the thread count).
constexpr int64_t kEncodeRows = 32;

enum class Layout : uint8_t { kLegacySym, kLegacyAsym, kKAsym, kKSym };

struct Spec {
  GgmlType type;
  Layout layout;
  int block;     // elements per block
  int sub;       // elements per sub-block
  int qlo, qhi;  // code range
  int slo, shi;  // integer sub-block scale range (K-quants); mins in [0, shi]
  int nsub() const { return block / sub; }
};

bool SpecOf(GgmlType t, Spec* s) {
  using L = Layout;
  switch (t) {
    case GgmlType::kQ8_0:
      *s = {t, L::kLegacySym, 32, 32, -127, 127, 0, 0};
      return true;
    case GgmlType::kQ4_0:
      *s = {t, L::kLegacySym, 32, 32, -8, 7, 0, 0};
      return true;
    case GgmlType::kQ5_0:
      *s = {t, L::kLegacySym, 32, 32, -16, 15, 0, 0};
      return true;
    case GgmlType::kQ4_1:
      *s = {t, L::kLegacyAsym, 32, 32, 0, 15, 0, 0};
      return true;
    case GgmlType::kQ5_1:
      *s = {t, L::kLegacyAsym, 32, 32, 0, 31, 0, 0};
      return true;
    case GgmlType::kQ2_K:
      *s = {t, L::kKAsym, 256, 16, 0, 3, 0, 15};
      return true;
    case GgmlType::kQ4_K:
      *s = {t, L::kKAsym, 256, 32, 0, 15, 0, 63};
      return true;
    case GgmlType::kQ5_K:
      *s = {t, L::kKAsym, 256, 32, 0, 31, 0, 63};
      return true;
    case GgmlType::kQ3_K:
      *s = {t, L::kKSym, 256, 16, -4, 3, -32, 31};
      return true;
    case GgmlType::kQ6_K:
      *s = {t, L::kKSym, 256, 16, -32, 31, -128, 127};
      return true;
    default:
      return false;
  }
}

/// Stored parameters of one block (legacy: d and, asymmetric, m in dmin).
struct Params {
  float d = 0, dmin = 0;
  std::array<int, 16> ls{}, lm{};
};

inline float RoundF16(float v) { return F16ToF32(F32ToF16(v)); }
inline int ClampI(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/// Step and offset of sub-block j as ggml's decoders compute them.
inline void Effective(const Spec& s, const Params& p, int j, float* dl, float* off) {
  switch (s.layout) {
    case Layout::kLegacySym:
      *dl = p.d;
      *off = 0.0f;
      return;
    case Layout::kLegacyAsym:
      *dl = p.d;
      *off = p.dmin;
      return;
    case Layout::kKAsym:
      *dl = p.d * static_cast<float>(p.ls[static_cast<size_t>(j)]);
      *off = -(p.dmin * static_cast<float>(p.lm[static_cast<size_t>(j)]));
      return;
    case Layout::kKSym:
      *dl = p.d * static_cast<float>(p.ls[static_cast<size_t>(j)]);
      *off = 0.0f;
      return;
  }
}

/// Round-to-nearest code of x for step dl and offset off.
inline int CodeOf(float x, float dl, float off, int qlo, int qhi) {
  if (!(dl != 0.0f)) return ClampI(0, qlo, qhi);
  float t = (x - off) / dl;
  t = std::min(std::max(t, static_cast<float>(qlo) - 1.0f), static_cast<float>(qhi) + 1.0f);
  return ClampI(static_cast<int>(std::lround(t)), qlo, qhi);
}

/// Σ h (x − ŵ)² of n elements with RTN codes for (dl, off); codes to q when not null.
inline double SubError(const float* x, const double* h, int n, float dl, float off, int qlo,
                       int qhi, int* q) {
  double e = 0;
  for (int i = 0; i < n; ++i) {
    const int c = CodeOf(x[i], dl, off, qlo, qhi);
    if (q) q[i] = c;
    const float y = dl * static_cast<float>(c) + off;
    const double d = static_cast<double>(x[i]) - y;
    e += h[i] * d * d;
  }
  return e;
}

/// One continuous candidate of a sub-block: x ≈ a·q + b.
struct Fit {
  float a = 0, b = 0;
};

/// Step 1, asymmetric: candidates for x ≈ a q + b, q in [0, qmax]. Each of 21 inverse scales
/// (qmax + 0.1 k levels over [min, max], k = −10…10) gives RTN codes, refit by weighted least
/// squares; `nonpos_offset` keeps b ≤ 0 (K-quant mins are non-negative). Appends every refit and
/// the plain min/max candidate to `out`; returns the best by continuous error.
Fit FitAsym(const float* x, const double* h, int n, int qmax, bool nonpos_offset,
            std::vector<Fit>* out) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  if (nonpos_offset && mn > 0) mn = 0;
  Fit best{mx > mn ? (mx - mn) / static_cast<float>(qmax) : 0.0f, mn};
  if (out) out->push_back(best);
  if (!(mx > mn)) return best;
  double best_err = 0;
  for (int i = 0; i < n; ++i) {
    const int c = CodeOf(x[i], best.a, best.b, 0, qmax);
    const double d = static_cast<double>(x[i]) - (best.a * static_cast<float>(c) + best.b);
    best_err += h[i] * d * d;
  }
  std::array<int, 256> q{};
  for (int k = -10; k <= 10; ++k) {
    const double levels = qmax + 0.1 * k;
    const double is = levels / (static_cast<double>(mx) - mn);
    double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; ++i) {
      const int l = ClampI(static_cast<int>(std::lround(is * (x[i] - mn))), 0, qmax);
      q[static_cast<size_t>(i)] = l;
      sw += h[i];
      sq += h[i] * l;
      sqq += h[i] * l * l;
      sx += h[i] * x[i];
      sqx += h[i] * l * x[i];
    }
    const double det = sw * sqq - sq * sq;
    double a, b;
    if (det > 1e-12 * sw * sqq && det > 0) {
      a = (sw * sqx - sq * sx) / det;
      b = (sqq * sx - sq * sqx) / det;
    } else {
      b = mn;
      a = sqq > 0 ? (sqx - b * sq) / sqq : 0;
    }
    if (nonpos_offset && b > 0) {
      b = 0;
      a = sqq > 0 ? sqx / sqq : 0;
    }
    if (!(a > 0) || !std::isfinite(a) || !std::isfinite(b)) continue;
    const Fit f{static_cast<float>(a), static_cast<float>(b)};
    if (out) out->push_back(f);
    double e = 0;
    for (int i = 0; i < n; ++i) {
      const double d = static_cast<double>(x[i]) - (a * q[static_cast<size_t>(i)] + b);
      e += h[i] * d * d;
    }
    if (e < best_err) {
      best_err = e;
      best = f;
    }
  }
  return best;
}

/// Step 1, symmetric: x ≈ a q, q in [qlo, qhi] (qlo = −qhi − 1 or −qhi). The element of largest
/// magnitude maps to qlo·(1 + 0.1k/|qlo|), k = −10…10; each candidate refit by weighted least
/// squares. Appends candidates to `out`, returns the best by continuous error.
Fit FitSym(const float* x, const double* h, int n, int qlo, int qhi, std::vector<Fit>* out) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  Fit best{amax > 0 ? max / static_cast<float>(qlo) : 0.0f, 0.0f};
  if (out) out->push_back(best);
  if (!(amax > 0)) return best;
  double best_err = SubError(x, h, n, best.a, 0.0f, qlo, qhi, nullptr);
  for (int k = -10; k <= 10; ++k) {
    const double is = (static_cast<double>(qlo) - 0.1 * k) / max;
    double sqx = 0, sqq = 0;
    for (int i = 0; i < n; ++i) {
      const int l = ClampI(static_cast<int>(std::lround(is * x[i])), qlo, qhi);
      sqx += h[i] * l * x[i];
      sqq += h[i] * l * l;
    }
    if (!(sqq > 0)) continue;
    const float a = static_cast<float>(sqx / sqq);
    if (!(a != 0.0f) || !std::isfinite(a)) continue;
    if (out) out->push_back(Fit{a, 0.0f});
    const double e = SubError(x, h, n, a, 0.0f, qlo, qhi, nullptr);
    if (e < best_err) {
      best_err = e;
      best = Fit{a, 0.0f};
    }
  }
  return best;
}

/// Steps 1–2 of the weighted search: the block's stored parameters.
Params SearchParams(const Spec& s, const float* x, const double* h_in) {
  std::array<double, 256> hu;
  const double* h = h_in;
  double hs = 0;
  for (int i = 0; i < s.block; ++i) hs += h_in[i];
  if (!(hs > 0)) {
    hu.fill(1.0);
    h = hu.data();
  }
  Params p;
  if (s.layout == Layout::kLegacySym || s.layout == Layout::kLegacyAsym) {
    std::vector<Fit> cands;
    if (s.layout == Layout::kLegacySym) {
      FitSym(x, h, s.block, s.qlo, s.qhi, &cands);
    } else {
      FitAsym(x, h, s.block, s.qhi, false, &cands);
      // ggml's plain rule: m = fp16(min), d = fp16((max − m) / qmax).
      float mn = x[0], mx = x[0];
      for (int i = 1; i < s.block; ++i) {
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
      }
      const float m = RoundF16(mn);
      cands.push_back(Fit{(mx - m) / static_cast<float>(s.qhi), m});
    }
    double best = INFINITY;
    for (const Fit& f : cands) {
      const float d = RoundF16(f.a), m = s.layout == Layout::kLegacyAsym ? RoundF16(f.b) : 0.0f;
      if (!std::isfinite(d) || !std::isfinite(m)) continue;
      const double e = SubError(x, h, s.block, d, m, s.qlo, s.qhi, nullptr);
      if (e < best) {
        best = e;
        p.d = d;
        p.dmin = m;
      }
    }
    return p;
  }
  const int ns = s.nsub();
  std::array<Fit, 16> fits;
  for (int j = 0; j < ns; ++j) {
    const float* xs = x + j * s.sub;
    const double* hs_ = h + j * s.sub;
    fits[static_cast<size_t>(j)] = s.layout == Layout::kKAsym
                                       ? FitAsym(xs, hs_, s.sub, s.qhi, true, nullptr)
                                       : FitSym(xs, hs_, s.sub, s.qlo, s.qhi, nullptr);
  }
  double best_total = INFINITY;
  if (s.layout == Layout::kKAsym) {
    float max_s = 0, max_m = 0;
    for (int j = 0; j < ns; ++j) {
      max_s = std::max(max_s, fits[static_cast<size_t>(j)].a);
      max_m = std::max(max_m, -fits[static_cast<size_t>(j)].b);
    }
    static constexpr float kF[] = {0.95f, 1.0f, 1.05f};
    for (float fd : kF) {
      for (float fm : kF) {
        Params c;
        c.d = RoundF16(max_s / static_cast<float>(s.shi) * fd);
        c.dmin = RoundF16(max_m / static_cast<float>(s.shi) * fm);
        if (!std::isfinite(c.d) || !std::isfinite(c.dmin)) continue;
        double total = 0;
        for (int j = 0; j < ns; ++j) {
          const Fit& f = fits[static_cast<size_t>(j)];
          const int rs = c.d > 0 ? ClampI(static_cast<int>(std::lround(f.a / c.d)), 0, s.shi) : 0;
          const int rm =
              c.dmin > 0 ? ClampI(static_cast<int>(std::lround(-f.b / c.dmin)), 0, s.shi) : 0;
          double best = INFINITY;
          for (int ds = -1; ds <= 1; ++ds) {
            const int ls = rs + ds;
            if (ls < 0 || ls > s.shi || (c.d == 0 && ls != 0)) continue;
            for (int dm = -1; dm <= 1; ++dm) {
              const int lm = rm + dm;
              if (lm < 0 || lm > s.shi || (c.dmin == 0 && lm != 0)) continue;
              const float dl = c.d * static_cast<float>(ls);
              const float off = -(c.dmin * static_cast<float>(lm));
              const double e =
                  SubError(x + j * s.sub, h + j * s.sub, s.sub, dl, off, s.qlo, s.qhi, nullptr);
              if (e < best) {
                best = e;
                c.ls[static_cast<size_t>(j)] = ls;
                c.lm[static_cast<size_t>(j)] = lm;
              }
            }
          }
          total += best;
        }
        if (total < best_total) {
          best_total = total;
          p = c;
        }
      }
    }
    return p;
  }
  // Symmetric K-quants: d maps the sub-block scale of largest magnitude to slo.
  float amax = 0, max = 0;
  for (int j = 0; j < ns; ++j) {
    const float a = fits[static_cast<size_t>(j)].a;
    if (std::fabs(a) > amax) {
      amax = std::fabs(a);
      max = a;
    }
  }
  static constexpr float kF[] = {0.90f, 0.95f, 1.0f, 1.05f, 1.10f};
  for (float fd : kF) {
    Params c;
    c.d = amax > 0 ? RoundF16(max / static_cast<float>(s.slo) * fd) : 0.0f;
    if (!std::isfinite(c.d)) continue;
    double total = 0;
    for (int j = 0; j < ns; ++j) {
      const float a = fits[static_cast<size_t>(j)].a;
      const int r = c.d != 0 ? ClampI(static_cast<int>(std::lround(a / c.d)), s.slo, s.shi) : 0;
      double best = INFINITY;
      for (int ds = -1; ds <= 1; ++ds) {
        const int ls = r + ds;
        if (ls < s.slo || ls > s.shi || (c.d == 0 && ls != 0)) continue;
        const float dl = c.d * static_cast<float>(ls);
        const double e =
            SubError(x + j * s.sub, h + j * s.sub, s.sub, dl, 0.0f, s.qlo, s.qhi, nullptr);
        if (e < best) {
          best = e;
          c.ls[static_cast<size_t>(j)] = ls;
        }
      }
      total += best;
    }
    if (total < best_total) {
      best_total = total;
      p = c;
    }
  }
  return p;
}

// ---------------------------------------------------------------- packing (docs/formats.md §3.2)

using ggml::PutF16;

/// Writes one block of type s.type from its parameters and codes q[block] (in [qlo, qhi])
/// through the formats module's packer (moeq/formats/ggml_pack.h).
void Pack(const Spec& s, const Params& p, const int* q, uint8_t* b) {
  // The stored (unsigned) codes: q shifted by the layout's offset.
  std::array<uint8_t, 256> u{};
  auto stored = [&](int offset) {
    for (int j = 0; j < s.block; ++j)
      u[static_cast<size_t>(j)] = static_cast<uint8_t>(q[j] + offset);
  };
  switch (s.type) {
    case GgmlType::kQ8_0:
      PutF16(b, p.d);
      for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q[j]));
      return;
    case GgmlType::kQ4_0:
      PutF16(b, p.d);
      stored(8);
      ggml::PackNibbles32(u.data(), b + 2);
      return;
    case GgmlType::kQ5_0:
      PutF16(b, p.d);
      stored(16);
      ggml::PackHighBits32(u.data(), b + 2);
      ggml::PackNibbles32(u.data(), b + 6);
      return;
    case GgmlType::kQ4_1:
      PutF16(b, p.d);
      PutF16(b + 2, p.dmin);
      stored(0);
      ggml::PackNibbles32(u.data(), b + 4);
      return;
    case GgmlType::kQ5_1:
      PutF16(b, p.d);
      PutF16(b + 2, p.dmin);
      stored(0);
      ggml::PackHighBits32(u.data(), b + 4);
      ggml::PackNibbles32(u.data(), b + 8);
      return;
    case GgmlType::kQ2_K: {
      std::memset(b, 0, 84);
      for (int j = 0; j < 16; ++j)
        b[j] = static_cast<uint8_t>(p.ls[static_cast<size_t>(j)] |
                                    (p.lm[static_cast<size_t>(j)] << 4));
      for (int e = 0; e < 256; ++e) {
        const int hh = e / 128, r = e % 128, jj = r / 32, l = r % 32;
        b[16 + 32 * hh + l] |= static_cast<uint8_t>(q[e] << (2 * jj));
      }
      PutF16(b + 80, p.d);
      PutF16(b + 82, p.dmin);
      return;
    }
    case GgmlType::kQ3_K: {
      std::memset(b, 0, 110);
      uint8_t* hmask = b;
      uint8_t* qs = b + 32;
      uint8_t* sc = b + 96;
      for (int k = 0; k < 16; ++k) {
        const int v = p.ls[static_cast<size_t>(k)] + 32;
        if (k < 8) {
          sc[k] |= static_cast<uint8_t>(v & 15);
        } else {
          sc[k - 8] |= static_cast<uint8_t>((v & 15) << 4);
        }
        sc[8 + k % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (k / 4)));
      }
      PutF16(b + 108, p.d);
      for (int e = 0; e < 256; ++e) {
        const int st = q[e] + 4;
        const int hh = e / 128, r = e % 128, jj = r / 32, l = r % 32;
        qs[32 * hh + l] |= static_cast<uint8_t>((st & 3) << (2 * jj));
        if (st & 4) hmask[l] |= static_cast<uint8_t>(1u << (4 * hh + jj));
      }
      return;
    }
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K: {
      PutF16(b, p.d);
      PutF16(b + 2, p.dmin);
      std::array<uint8_t, 8> ls{}, lm{};
      for (int j = 0; j < 8; ++j) {
        ls[static_cast<size_t>(j)] = static_cast<uint8_t>(p.ls[static_cast<size_t>(j)]);
        lm[static_cast<size_t>(j)] = static_cast<uint8_t>(p.lm[static_cast<size_t>(j)]);
      }
      ggml::PackScaleMinK4(ls.data(), lm.data(), b + 4);
      stored(0);
      if (s.type == GgmlType::kQ4_K) {
        ggml::PackQ4KCodes(u.data(), b + 16);
      } else {
        ggml::PackQ5KCodes(u.data(), b + 16, b + 48);
      }
      return;
    }
    case GgmlType::kQ6_K: {
      std::memset(b, 0, 210);
      for (int k = 0; k < 16; ++k)
        b[192 + k] = static_cast<uint8_t>(static_cast<int8_t>(p.ls[static_cast<size_t>(k)]));
      PutF16(b + 208, p.d);
      stored(32);
      ggml::PackQ6KCodes(u.data(), b, b + 128);
      return;
    }
    default:
      return;
  }
}

/// RTN codes of a block for stored parameters p.
void Codes(const Spec& s, const Params& p, const float* x, int* q) {
  for (int j = 0; j < s.nsub(); ++j) {
    float dl = 0.0f, off = 0.0f;
    Effective(s, p, j, &dl, &off);
    for (int i = 0; i < s.sub; ++i)
      q[j * s.sub + i] = CodeOf(x[j * s.sub + i], dl, off, s.qlo, s.qhi);
  }
}

double BlockErrorDecoded(const Spec& s, const float* x, const double* h, const uint8_t* b) {
  std::array<float, 256> y{};
  (void)DequantizeGgmlRow(s.type, reinterpret_cast<const std::byte*>(b), s.block, y.data());
  double e = 0;
  for (int i = 0; i < s.block; ++i) {
    const double d = static_cast<double>(x[i]) - y[static_cast<size_t>(i)];
    e += h[i] * d * d;
  }
  return e;
}

/// GPTQ over `n` rows in the block layout; writes n rows of encoded bytes.
void GptqRows(const Spec& s, const float* w, int64_t n, int64_t cols, const Eigen::MatrixXf& u,
              const std::vector<double>& h, const EncoderOptions& o, uint8_t* out,
              uint64_t row_bytes, uint64_t type_size) {
  const int64_t nb = cols / s.block;
  Eigen::MatrixXf wb(n, cols);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < cols; ++c) wb(r, c) = w[r * cols + c];
  std::vector<Params> params(static_cast<size_t>(n * nb));
  std::vector<int> codes(static_cast<size_t>(n * cols));
  const int64_t bs = (std::max<int64_t>(o.gptq_block, s.block) + s.block - 1) / s.block * s.block;
  Eigen::MatrixXf err(n, bs);
  std::vector<float> xb(static_cast<size_t>(s.block));
  for (int64_t c0 = 0; c0 < cols; c0 += bs) {
    const int64_t c1 = std::min(cols, c0 + bs);
    for (int64_t i = c0; i < c1; ++i) {
      const int64_t bi = i / s.block;
      if (i % s.block == 0) {
        for (int64_t r = 0; r < n; ++r) {
          for (int k = 0; k < s.block; ++k) xb[static_cast<size_t>(k)] = wb(r, i + k);
          params[static_cast<size_t>(r * nb + bi)] = SearchParams(s, xb.data(), h.data() + i);
        }
      }
      const int j = static_cast<int>((i % s.block) / s.sub);
      const float dinv = 1.0f / u(i, i);
      for (int64_t r = 0; r < n; ++r) {
        float dl = 0.0f, off = 0.0f;
        Effective(s, params[static_cast<size_t>(r * nb + bi)], j, &dl, &off);
        const float wv = wb(r, i);
        const int q = CodeOf(wv, dl, off, s.qlo, s.qhi);
        codes[static_cast<size_t>(r * cols + i)] = q;
        err(r, i - c0) = (wv - (dl * static_cast<float>(q) + off)) * dinv;
      }
      const int64_t rest = c1 - i - 1;
      if (rest > 0)
        wb.middleCols(i + 1, rest).noalias() -= err.col(i - c0) * u.row(i).segment(i + 1, rest);
    }
    if (c1 < cols)
      wb.rightCols(cols - c1).noalias() -=
          err.leftCols(c1 - c0) * u.block(c0, c1, c1 - c0, cols - c1);
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t bi = 0; bi < nb; ++bi)
      Pack(s, params[static_cast<size_t>(r * nb + bi)], codes.data() + r * cols + bi * s.block,
           out + static_cast<uint64_t>(r) * row_bytes + static_cast<uint64_t>(bi) * type_size);
}

}  // namespace

bool GgmlEncoderSupported(GgmlType type) {
  Spec s;
  return SpecOf(type, &s);
}

Status SearchGgmlBlock(GgmlType type, const float* x, const double* h, std::byte* out) {
  Spec s;
  if (!SpecOf(type, &s))
    return Status::Unsupported("ggml type " + GgmlTypeName(type) + " has no data-aware encoder");
  const Params p = SearchParams(s, x, h);
  std::array<int, 256> q{};
  Codes(s, p, x, q.data());
  Pack(s, p, q.data(), reinterpret_cast<uint8_t*>(out));
  return Status::Ok();
}

Result<double> GgmlBlockError(GgmlType type, const float* x, const double* h,
                              const std::byte* block) {
  Spec s;
  if (!SpecOf(type, &s))
    return Status::Unsupported("ggml type " + GgmlTypeName(type) + " has no data-aware encoder");
  return BlockErrorDecoded(s, x, h, reinterpret_cast<const uint8_t*>(block));
}

Result<std::vector<std::byte>> EncodeGgml(std::span<const float> w, int64_t rows, int64_t cols,
                                          GgmlType type, const EncoderOptions& options,
                                          const InputStats* stats, int threads) {
  MOEQ_ASSIGN_OR_RETURN(const uint64_t row_bytes, GgmlRowBytes(type, cols));
  if (rows < 0 || static_cast<int64_t>(w.size()) != rows * cols) {
    return Status::InvalidArgument("EncodeGgml: [" + std::to_string(rows) + ", " +
                                   std::to_string(cols) + "] needs " + std::to_string(rows * cols) +
                                   " floats, got " + std::to_string(w.size()));
  }
  if (stats != nullptr &&
      ((stats->has_diag() && stats->cols() != cols) ||
       (stats->has_gram() && static_cast<int64_t>(stats->gram.size()) != cols * cols))) {
    return Status::InvalidArgument("EncodeGgml: input statistics for " +
                                   std::to_string(stats->cols()) + " inputs, the weight has " +
                                   std::to_string(cols) + " columns");
  }
  std::vector<std::byte> out(static_cast<size_t>(row_bytes * static_cast<uint64_t>(rows)));
  Spec s;
  EncoderKind kind = EffectiveEncoder(options.kind, stats);
  if (!SpecOf(type, &s)) kind = EncoderKind::kRtn;
  const int64_t nchunks = (rows + kEncodeRows - 1) / kEncodeRows;
  std::vector<Status> errors(static_cast<size_t>(nchunks));
  if (kind == EncoderKind::kRtn) {
    ParallelFor(
        nchunks,
        [&](int64_t ci) {
          for (int64_t r = ci * kEncodeRows; r < std::min(rows, (ci + 1) * kEncodeRows); ++r) {
            Status st = QuantizeGgmlRow(type, w.data() + r * cols, cols,
                                        out.data() + static_cast<uint64_t>(r) * row_bytes);
            if (!st.ok()) {
              errors[static_cast<size_t>(ci)] = st;
              return;
            }
          }
        },
        threads);
    for (const Status& st : errors) MOEQ_RETURN_IF_ERROR(st);
    return out;
  }
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) {
      return Status::InvalidArgument("row " + std::to_string(static_cast<int64_t>(i) / cols) +
                                     ", column " + std::to_string(static_cast<int64_t>(i) % cols) +
                                     ": weight is not finite");
    }
  }
  // Importance per input channel: the diagonal (or the Gram matrix's diagonal).
  std::vector<double> h(static_cast<size_t>(cols), 0.0);
  for (int64_t c = 0; c < cols; ++c) {
    const double v = stats->has_diag() ? stats->diag[static_cast<size_t>(c)]
                                       : stats->gram[static_cast<size_t>(c * cols + c)];
    h[static_cast<size_t>(c)] = std::isfinite(v) && v > 0 ? v : 0.0;
  }
  const uint64_t ts = static_cast<uint64_t>(FindGgmlType(type)->type_size);
  const int64_t nb = cols / s.block;
  if (kind == EncoderKind::kWeighted) {
    ParallelFor(
        nchunks,
        [&](int64_t ci) {
          std::vector<uint8_t> rtn(ts);
          std::array<int, 256> q{};
          for (int64_t r = ci * kEncodeRows; r < std::min(rows, (ci + 1) * kEncodeRows); ++r) {
            for (int64_t bi = 0; bi < nb; ++bi) {
              const float* x = w.data() + r * cols + bi * s.block;
              const double* hb = h.data() + bi * s.block;
              uint8_t* dst = reinterpret_cast<uint8_t*>(out.data()) +
                             static_cast<uint64_t>(r) * row_bytes + static_cast<uint64_t>(bi) * ts;
              const Params p = SearchParams(s, x, hb);
              Codes(s, p, x, q.data());
              Pack(s, p, q.data(), dst);
              // The rtn block, kept when it is better on the weighted objective.
              Status st =
                  QuantizeGgmlRow(type, x, s.block, reinterpret_cast<std::byte*>(rtn.data()));
              if (!st.ok()) {
                errors[static_cast<size_t>(ci)] = st;
                return;
              }
              if (BlockErrorDecoded(s, x, hb, rtn.data()) < BlockErrorDecoded(s, x, hb, dst))
                std::memcpy(dst, rtn.data(), ts);
            }
          }
        },
        threads);
    for (const Status& st : errors) MOEQ_RETURN_IF_ERROR(st);
    return out;
  }
  EncoderOptions o = options;
  o.gptq_act_order = false;
  MOEQ_ASSIGN_OR_RETURN(internal::GptqFactor f, internal::FactorHessian(*stats, cols, o));
  ParallelFor(
      nchunks,
      [&](int64_t ci) {
        const int64_t r0 = ci * kEncodeRows, n = std::min(kEncodeRows, rows - r0);
        GptqRows(s, w.data() + r0 * cols, n, cols, f.u, h, o,
                 reinterpret_cast<uint8_t*>(out.data()) + static_cast<uint64_t>(r0) * row_bytes,
                 row_bytes, ts);
      },
      threads);
  return out;
}

}  // namespace moeq::quant
