// ggml block codecs: the type table, encoders and decoders of F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (layouts: docs/formats.md §3.2).
//
// Decoders follow ggml's dequantization formulas exactly (float32 arithmetic in the same order).
// Encoders are moeq's own: round-to-nearest codes with per-(sub-)block scales chosen by a short
// search over candidate scales, each refined by least squares; super-block scales of the
// K-quants are fp16, sub-block scales are quantized against them and codes are recomputed with
// the quantized scales.
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "moeq/base/half.h"
#include "moeq/formats/ggml_pack.h"
#include "moeq/formats/gguf.h"

namespace moeq {
namespace {

constexpr int64_t kQK = 32;    // legacy block
constexpr int64_t kQKK = 256;  // K-quant super-block

constexpr GgmlTypeTraits kTypes[] = {
    {GgmlType::kF32, "f32", 1, 4, false},      {GgmlType::kF16, "f16", 1, 2, false},
    {GgmlType::kQ4_0, "q4_0", 32, 18, true},   {GgmlType::kQ4_1, "q4_1", 32, 20, true},
    {GgmlType::kQ5_0, "q5_0", 32, 22, true},   {GgmlType::kQ5_1, "q5_1", 32, 24, true},
    {GgmlType::kQ8_0, "q8_0", 32, 34, true},   {GgmlType::kQ2_K, "q2_K", 256, 84, true},
    {GgmlType::kQ3_K, "q3_K", 256, 110, true}, {GgmlType::kQ4_K, "q4_K", 256, 144, true},
    {GgmlType::kQ5_K, "q5_K", 256, 176, true}, {GgmlType::kQ6_K, "q6_K", 256, 210, true},
    {GgmlType::kBF16, "bf16", 1, 2, false},
};

inline uint8_t* U8(std::byte* p) { return reinterpret_cast<uint8_t*>(p); }
inline const uint8_t* U8(const std::byte* p) { return reinterpret_cast<const uint8_t*>(p); }

using ggml::GetScaleMinK4;
using ggml::PutF16;
inline float GetF16(const uint8_t* p) {
  return F16ToF32(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}
/// fp16 rounding of a float (what the decoder will see).
inline float RoundF16(float v) { return F16ToF32(F32ToF16(v)); }

/// Round half away from zero to int: std::lround (halves away from zero) without the libm call,
/// which dominated the K-quant scale searches: v - trunc(v) is exact in float, so the result equals
/// lround for every |v| < 2^31. Saturates outside the int range (NaN gives 0) instead of
/// overflowing.
inline int RoundInt(float v) {
  float t = std::trunc(v);
  if (std::fabs(v - t) >= 0.5f) t += std::copysign(1.0f, v);
  if (!(std::fabs(t) < 2147483520.0f)) return std::isnan(t) ? 0 : (t > 0 ? INT32_MAX : INT32_MIN);
  return static_cast<int>(t);
}
inline int Clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// --- scale search ----------------------------------------------------------------------------

/// Asymmetric fit x ≈ scale*q - m with q in [0, nmax], m >= 0 (so the minimum is <= 0, as the
/// K-quant decoders need a non-negative min). Tries candidate inverse scales around
/// nmax/(max-min), refines each by weighted least squares, keeps the best. Writes q.
void FitAsymmetric(const float* x, const float* w, int n, int nmax, int nstep, float* scale,
                   float* m, uint8_t* q) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  if (mn > 0) mn = 0;
  if (mx <= mn) {
    for (int i = 0; i < n; ++i) q[i] = 0;
    *scale = 0;
    *m = -mn;
    return;
  }
  std::array<uint8_t, 32> cand{};
  float best_err = INFINITY, best_scale = (mx - mn) / nmax, best_min = mn;
  for (int s = 0; s <= nstep; ++s) {
    // s = 0: the plain min/max scale; s >= 1: nmax - 0.6 + 0.1 s levels over the range.
    const float levels = s == 0 ? static_cast<float>(nmax)
                                : static_cast<float>(nmax) - 0.6f + 0.1f * static_cast<float>(s);
    const float is = levels / (mx - mn);
    float sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; ++i) {
      const int l = Clamp(RoundInt(is * (x[i] - mn)), 0, nmax);
      cand[static_cast<size_t>(i)] = static_cast<uint8_t>(l);
      sw += w[i];
      sq += w[i] * l;
      sqq += w[i] * l * l;
      sx += w[i] * x[i];
      sqx += w[i] * l * x[i];
    }
    // Least squares for x ≈ a*q + b.
    const float det = sw * sqq - sq * sq;
    float a, b;
    if (det > 1e-6f * sw * sqq) {
      a = (sw * sqx - sq * sx) / det;
      b = (sqq * sx - sq * sqx) / det;
    } else {  // all codes (nearly) equal: keep the minimum, fit the scale
      b = mn;
      a = sqq > 0 ? (sqx - b * sq) / sqq : 0;
    }
    if (b > 0) {  // the minimum must stay <= 0
      b = 0;
      a = sqq > 0 ? sqx / sqq : 0;
    }
    if (a < 0) continue;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float d = a * cand[static_cast<size_t>(i)] + b - x[i];
      err += w[i] * d * d;
    }
    if (err < best_err) {
      best_err = err;
      best_scale = a;
      best_min = b;
      std::memcpy(q, cand.data(), static_cast<size_t>(n));
    }
  }
  if (!std::isfinite(best_err)) {
    best_scale = (mx - mn) / nmax;
    best_min = mn;
    for (int i = 0; i < n; ++i)
      q[i] = static_cast<uint8_t>(Clamp(RoundInt((x[i] - mn) / best_scale), 0, nmax));
  }
  *scale = best_scale;
  *m = -best_min;
}

/// Symmetric fit x ≈ scale*q with q in [-nmax, nmax-1]. The scale maps the element of largest
/// magnitude to -nmax (as ggml does); 17 candidates around it (s = -8..8) are refined by least
/// squares and the one of least weighted error wins (the first on ties).
///
/// The arithmetic of one candidate is spelled out with explicit fused multiply-adds, so the
/// AVX-512 path (16 candidates per vector, each candidate's sums still taken in element order)
/// and the scalar path give the same bits: iscale = -(fma(s, 0.1, nmax)) / max;
/// sqx = fma(w*l, x, sqx), sqq = fma(w*l, l, sqq); d = fma(l, scale, -x), err = fma(w*d, d, err).
float SymmetricCandidateError(const float* x, const float* w, int n, int nmax, float max, int s,
                              float* scale_out) {
  const float lo = static_cast<float>(-nmax), hi = static_cast<float>(nmax - 1);
  auto q = [&](float v) {
    const int r = RoundInt(v);
    return std::isnan(v) ? 0.0f : std::min(std::max(static_cast<float>(r), lo), hi);
  };
  const float iscale = -std::fma(static_cast<float>(s), 0.1f, static_cast<float>(nmax)) / max;
  float sqx = 0, sqq = 0;
  for (int i = 0; i < n; ++i) {
    const float l = q(iscale * x[i]);
    const float wl = l * w[i];
    sqx = std::fma(wl, x[i], sqx);
    sqq = std::fma(wl, l, sqq);
  }
  if (!(sqq > 0)) return INFINITY;
  const float scale = sqx / sqq;
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float l = q(x[i] / scale);
    const float d = std::fma(l, scale, -x[i]);
    err = std::fma(d * w[i], d, err);
  }
  *scale_out = scale;
  return std::isnan(err) ? INFINITY : err;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/// Candidates s = -8..7 of SymmetricCandidateError at once, one per lane.
void SymmetricCandidateErrors16(const float* x, const float* w, int n, int nmax, float max,
                                float* err_out, float* scale_out) {
  const __m512 lo = _mm512_set1_ps(static_cast<float>(-nmax));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(nmax - 1));
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 big = _mm512_set1_ps(2147483520.0f);
  // RoundInt (halves away from zero, saturating), then the clamp; NaN gives 0.
  auto q = [&](__m512 v) {
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
    const __mmask16 up = _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ);
    t = _mm512_mask_add_ps(t, up, t, _mm512_or_ps(one, _mm512_and_ps(sign, v)));
    // |t| >= 2^31 saturates to the int range, which the clamp turns into lo or hi anyway.
    t = _mm512_min_ps(_mm512_max_ps(t, _mm512_sub_ps(_mm512_setzero_ps(), big)), big);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(t, nan, _mm512_setzero_ps());
  };
  const __m512 svec = _mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8);
  const __m512 iscale = _mm512_div_ps(
      _mm512_sub_ps(_mm512_setzero_ps(), _mm512_fmadd_ps(svec, _mm512_set1_ps(0.1f),
                                                         _mm512_set1_ps(static_cast<float>(nmax)))),
      _mm512_set1_ps(max));
  __m512 sqx = _mm512_setzero_ps(), sqq = _mm512_setzero_ps();
  for (int i = 0; i < n; ++i) {
    const __m512 xv = _mm512_set1_ps(x[i]);
    const __m512 l = q(_mm512_mul_ps(iscale, xv));
    const __m512 wl = _mm512_mul_ps(l, _mm512_set1_ps(w[i]));
    sqx = _mm512_fmadd_ps(wl, xv, sqx);
    sqq = _mm512_fmadd_ps(wl, l, sqq);
  }
  const __m512 scale = _mm512_div_ps(sqx, sqq);
  __m512 err = _mm512_setzero_ps();
  for (int i = 0; i < n; ++i) {
    const __m512 xv = _mm512_set1_ps(x[i]);
    const __m512 l = q(_mm512_div_ps(xv, scale));
    const __m512 d = _mm512_fmsub_ps(l, scale, xv);
    err = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(w[i])), d, err);
  }
  const __mmask16 ok = _mm512_cmp_ps_mask(sqq, _mm512_setzero_ps(), _CMP_GT_OQ) &
                       _mm512_cmp_ps_mask(err, err, _CMP_ORD_Q);
  _mm512_storeu_ps(err_out, _mm512_mask_mov_ps(_mm512_set1_ps(INFINITY), ok, err));
  _mm512_storeu_ps(scale_out, scale);
}
#endif

float FitSymmetric(const float* x, const float* w, int n, int nmax) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0;
  float errs[17], scales[17];
  int s0 = -8;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  SymmetricCandidateErrors16(x, w, n, nmax, max, errs, scales);
  s0 = 8;
#endif
  for (int s = s0; s <= 8; ++s)
    errs[s + 8] = SymmetricCandidateError(x, w, n, nmax, max, s, &scales[s + 8]);
  float best_err = INFINITY, best = max / -static_cast<float>(nmax);
  for (int k = 0; k < 17; ++k) {
    if (errs[k] < best_err) {
      best_err = errs[k];
      best = scales[k];
    }
  }
  return best;
}

/// Importance weights of a sub-block: w = rms + |x| (emphasises large weights, never zero).
void Weights(const float* x, int n, float* w) {
  float s2 = 0;
  for (int i = 0; i < n; ++i) s2 += x[i] * x[i];
  const float rms = std::sqrt(s2 / static_cast<float>(n));
  for (int i = 0; i < n; ++i) w[i] = rms + std::fabs(x[i]) + 1e-30f;
}

// --- legacy 32-element blocks ----------------------------------------------------------------

void EncodeQ8_0(const float* x, uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = RoundF16(amax / 127.0f);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  PutF16(b, d);
  for (int j = 0; j < kQK; ++j) {
    b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(Clamp(RoundInt(x[j] * id), -127, 127)));
  }
}
void DecodeQ8_0(const uint8_t* b, float* y) {
  const float d = GetF16(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

/// Symmetric 4/5-bit: d = max/-half, q = round(x/d) + half in [0, 2*half-1].
void EncodeSym(const float* x, int half, uint8_t* q, float* dout) {
  float amax = 0, max = 0;
  for (int j = 0; j < kQK; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = RoundF16(max / -static_cast<float>(half));
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j)
    q[j] = static_cast<uint8_t>(Clamp(RoundInt(x[j] * id) + half, 0, 2 * half - 1));
  *dout = d;
}

/// Asymmetric 4/5-bit: x ≈ q*d + m with q in [0, nmax].
void EncodeAsym(const float* x, int nmax, uint8_t* q, float* dout, float* mout) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < kQK; ++j) {
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
  const float m = RoundF16(mn);
  const float d = RoundF16((mx - m) / static_cast<float>(nmax));
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j)
    q[j] = static_cast<uint8_t>(Clamp(RoundInt((x[j] - m) * id), 0, nmax));
  *dout = d;
  *mout = m;
}

uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void EncodeQ4_0(const float* x, uint8_t* b) {
  uint8_t q[kQK];
  float d;
  EncodeSym(x, 8, q, &d);
  PutF16(b, d);
  ggml::PackNibbles32(q, b + 2);
}
void DecodeQ4_0(const uint8_t* b, float* y) {
  const float d = GetF16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}
void EncodeQ4_1(const float* x, uint8_t* b) {
  uint8_t q[kQK];
  float d, m;
  EncodeAsym(x, 15, q, &d, &m);
  PutF16(b, d);
  PutF16(b + 2, m);
  ggml::PackNibbles32(q, b + 4);
}
void DecodeQ4_1(const uint8_t* b, float* y) {
  const float d = GetF16(b), m = GetF16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}
void EncodeQ5_0(const float* x, uint8_t* b) {
  uint8_t q[kQK];
  float d;
  EncodeSym(x, 16, q, &d);
  PutF16(b, d);
  ggml::PackHighBits32(q, b + 2);
  ggml::PackNibbles32(q, b + 6);
}
void DecodeQ5_0(const uint8_t* b, float* y) {
  const float d = GetF16(b);
  const uint32_t qh = GetU32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>(((qs[j] & 0x0F) | h0) - 16) * d;
    y[j + 16] = static_cast<float>(((qs[j] >> 4) | h1) - 16) * d;
  }
}
void EncodeQ5_1(const float* x, uint8_t* b) {
  uint8_t q[kQK];
  float d, m;
  EncodeAsym(x, 31, q, &d, &m);
  PutF16(b, d);
  PutF16(b + 2, m);
  ggml::PackHighBits32(q, b + 4);
  ggml::PackNibbles32(q, b + 8);
}
void DecodeQ5_1(const uint8_t* b, float* y) {
  const float d = GetF16(b), m = GetF16(b + 2);
  const uint32_t qh = GetU32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>((qs[j] & 0x0F) | h0) * d + m;
    y[j + 16] = static_cast<float>((qs[j] >> 4) | h1) * d + m;
  }
}

// --- K-quants ----------------------------------------------------------------------------------

/// Sub-block (scale, min) pairs of an asymmetric K-quant, quantized to `bits`-bit integers
/// against fp16 super-block d and dmin. Returns d, dmin; writes the integer scales and mins.
void QuantizeScaleMins(const float* scales, const float* mins, int nsub, int levels, float* d,
                       float* dmin, uint8_t* ls, uint8_t* lm) {
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < nsub; ++j) {
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  *d = RoundF16(max_scale / static_cast<float>(levels));
  *dmin = RoundF16(max_min / static_cast<float>(levels));
  for (int j = 0; j < nsub; ++j) {
    ls[j] = static_cast<uint8_t>(*d > 0 ? Clamp(RoundInt(scales[j] / *d), 0, levels) : 0);
    lm[j] = static_cast<uint8_t>(*dmin > 0 ? Clamp(RoundInt(mins[j] / *dmin), 0, levels) : 0);
  }
}

/// Codes of an asymmetric sub-block for the quantized scale dl and min ml: q = round((x+ml)/dl).
void RecodeAsym(const float* x, int n, float dl, float ml, int nmax, uint8_t* q) {
  for (int i = 0; i < n; ++i) {
    q[i] = static_cast<uint8_t>(dl > 0 ? Clamp(RoundInt((x[i] + ml) / dl), 0, nmax) : 0);
  }
}

void EncodeQ2_K(const float* x, uint8_t* b) {
  float scales[16], mins[16], w[16];
  uint8_t q[kQKK];
  for (int j = 0; j < 16; ++j) {
    for (int i = 0; i < 16; ++i) w[i] = std::fabs(x[16 * j + i]) + 1e-30f;
    FitAsymmetric(x + 16 * j, w, 16, 3, 15, &scales[j], &mins[j], q + 16 * j);
  }
  float d, dmin;
  uint8_t ls[16], lm[16];
  QuantizeScaleMins(scales, mins, 16, 15, &d, &dmin, ls, lm);
  for (int j = 0; j < 16; ++j) {
    b[j] = static_cast<uint8_t>(ls[j] | (lm[j] << 4));
    RecodeAsym(x + 16 * j, 16, d * ls[j], dmin * lm[j], 3, q + 16 * j);
  }
  uint8_t* qs = b + 16;
  std::memset(qs, 0, 64);
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, r = e % 128, jj = r / 32, l = r % 32;
    qs[32 * h + l] |= static_cast<uint8_t>(q[e] << (2 * jj));
  }
  PutF16(b + 80, d);
  PutF16(b + 82, dmin);
}
void DecodeQ2_K(const uint8_t* b, float* y) {
  const float d = GetF16(b + 80), min = GetF16(b + 82);
  const uint8_t* q = b + 16;
  int is = 0;
  for (int n = 0; n < kQKK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      uint8_t sc = b[is++];
      float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l] >> shift) & 3) - ml;
      sc = b[is++];
      dl = d * static_cast<float>(sc & 0xF);
      ml = min * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16] >> shift) & 3) - ml;
      shift += 2;
    }
    q += 32;
  }
}

/// 6-bit value k (0..15) of Q3_K's packed scales.
int Q3Scale(const uint8_t* scales, int k) {
  const int low = k < 8 ? (scales[k] & 15) : (scales[k - 8] >> 4);
  const int high = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
  return low | (high << 4);
}

void EncodeQ3_K(const float* x, uint8_t* b) {
  float scales[16], w[16];
  for (int j = 0; j < 16; ++j) {
    Weights(x + 16 * j, 16, w);
    scales[j] = FitSymmetric(x + 16 * j, w, 16, 4);
  }
  float amax = 0, max = 0;
  for (int j = 0; j < 16; ++j) {
    if (std::fabs(scales[j]) > amax) {
      amax = std::fabs(scales[j]);
      max = scales[j];
    }
  }
  std::memset(b, 0, 110);
  uint8_t* hmask = b;
  uint8_t* qs = b + 32;
  uint8_t* sc = b + 96;
  const float d = amax > 0 ? RoundF16(max / -32.0f) : 0.0f;
  int ls[16];
  for (int k = 0; k < 16; ++k) {
    ls[k] = d != 0 ? Clamp(RoundInt(scales[k] / d), -32, 31) : 0;
    const int v = ls[k] + 32;
    if (k < 8) {
      sc[k] |= static_cast<uint8_t>(v & 15);
    } else {
      sc[k - 8] |= static_cast<uint8_t>((v & 15) << 4);
    }
    sc[8 + k % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (k / 4)));
  }
  PutF16(b + 108, d);
  for (int e = 0; e < kQKK; ++e) {
    const float dl = d * static_cast<float>(ls[e / 16]);
    const int q = dl != 0 ? Clamp(RoundInt(x[e] / dl), -4, 3) : 0;
    const int stored = q + 4;  // 0..7: low 2 bits in qs, bit 2 in hmask
    const int h = e / 128, r = e % 128, jj = r / 32, l = r % 32;
    qs[32 * h + l] |= static_cast<uint8_t>((stored & 3) << (2 * jj));
    if (stored & 4) hmask[l] |= static_cast<uint8_t>(1u << (4 * h + jj));
  }
}
void DecodeQ3_K(const uint8_t* b, float* y) {
  const float d_all = GetF16(b + 108);
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  int8_t scales[16];
  for (int k = 0; k < 16; ++k) scales[k] = static_cast<int8_t>(Q3Scale(b + 96, k) - 32);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < kQKK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      float dl = d_all * static_cast<float>(scales[is++]);
      for (int l = 0; l < 16; ++l) {
        *y++ = dl *
               static_cast<float>(static_cast<int8_t>((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      }
      dl = d_all * static_cast<float>(scales[is++]);
      for (int l = 0; l < 16; ++l) {
        *y++ = dl * static_cast<float>(static_cast<int8_t>((q[l + 16] >> shift) & 3) -
                                       ((hm[l + 16] & m) ? 0 : 4));
      }
      shift += 2;
      m = static_cast<uint8_t>(m << 1);
    }
    q += 32;
  }
}

/// Shared part of Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins.
void EncodeK4K5(const float* x, int nmax, uint8_t* b, uint8_t* q) {
  float scales[8], mins[8], w[32];
  for (int j = 0; j < 8; ++j) {
    Weights(x + 32 * j, 32, w);
    FitAsymmetric(x + 32 * j, w, 32, nmax, 20, &scales[j], &mins[j], q + 32 * j);
  }
  float d, dmin;
  uint8_t ls[8], lm[8];
  QuantizeScaleMins(scales, mins, 8, 63, &d, &dmin, ls, lm);
  PutF16(b, d);
  PutF16(b + 2, dmin);
  ggml::PackScaleMinK4(ls, lm, b + 4);
  for (int j = 0; j < 8; ++j) RecodeAsym(x + 32 * j, 32, d * ls[j], dmin * lm[j], nmax, q + 32 * j);
}

void EncodeQ4_K(const float* x, uint8_t* b) {
  uint8_t q[kQKK];
  EncodeK4K5(x, 15, b, q);
  ggml::PackQ4KCodes(q, b + 16);
}
void DecodeQ4_K(const uint8_t* b, float* y) {
  const float d = GetF16(b), min = GetF16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  uint8_t sc, m;
  for (int j = 0; j < kQKK; j += 64) {
    GetScaleMinK4(is + 0, scales, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    GetScaleMinK4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

void EncodeQ5_K(const float* x, uint8_t* b) {
  uint8_t q[kQKK];
  EncodeK4K5(x, 31, b, q);
  ggml::PackQ5KCodes(q, b + 16, b + 48);
}
void DecodeQ5_K(const uint8_t* b, float* y) {
  const float d = GetF16(b), min = GetF16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0;
  uint8_t sc, m;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < kQKK; j += 64) {
    GetScaleMinK4(is + 0, scales, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    GetScaleMinK4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l)
      *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}

void EncodeQ6_K(const float* x, uint8_t* b) {
  float scales[16], w[16];
  for (int j = 0; j < 16; ++j) {
    Weights(x + 16 * j, 16, w);
    scales[j] = FitSymmetric(x + 16 * j, w, 16, 32);
  }
  float amax = 0, max = 0;
  for (int j = 0; j < 16; ++j) {
    if (std::fabs(scales[j]) > amax) {
      amax = std::fabs(scales[j]);
      max = scales[j];
    }
  }
  std::memset(b, 0, 210);
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  const float d = amax > 0 ? RoundF16(max / -128.0f) : 0.0f;
  for (int k = 0; k < 16; ++k)
    sc[k] = static_cast<int8_t>(d != 0 ? Clamp(RoundInt(scales[k] / d), -128, 127) : 0);
  PutF16(b + 208, d);
  uint8_t q[kQKK];
  for (int e = 0; e < kQKK; ++e) {
    const float dl = d * static_cast<float>(sc[e / 16]);
    q[e] = static_cast<uint8_t>((dl != 0 ? Clamp(RoundInt(x[e] / dl), -32, 31) : 0) + 32);  // 0..63
  }
  ggml::PackQ6KCodes(q, b, b + 128);
}
void DecodeQ6_K(const uint8_t* b, float* y) {
  const float d = GetF16(b + 208);
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int n = 0; n < kQKK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int8_t q1 = static_cast<int8_t>(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      const int8_t q2 = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      const int8_t q3 = static_cast<int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      const int8_t q4 = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

using BlockEncoder = void (*)(const float*, uint8_t*);
using BlockDecoder = void (*)(const uint8_t*, float*);

struct BlockCodec {
  BlockEncoder encode;
  BlockDecoder decode;
};

const BlockCodec* CodecOf(GgmlType t) {
  static const BlockCodec q4_0{EncodeQ4_0, DecodeQ4_0}, q4_1{EncodeQ4_1, DecodeQ4_1},
      q5_0{EncodeQ5_0, DecodeQ5_0}, q5_1{EncodeQ5_1, DecodeQ5_1}, q8_0{EncodeQ8_0, DecodeQ8_0},
      q2_k{EncodeQ2_K, DecodeQ2_K}, q3_k{EncodeQ3_K, DecodeQ3_K}, q4_k{EncodeQ4_K, DecodeQ4_K},
      q5_k{EncodeQ5_K, DecodeQ5_K}, q6_k{EncodeQ6_K, DecodeQ6_K};
  switch (t) {
    case GgmlType::kQ4_0:
      return &q4_0;
    case GgmlType::kQ4_1:
      return &q4_1;
    case GgmlType::kQ5_0:
      return &q5_0;
    case GgmlType::kQ5_1:
      return &q5_1;
    case GgmlType::kQ8_0:
      return &q8_0;
    case GgmlType::kQ2_K:
      return &q2_k;
    case GgmlType::kQ3_K:
      return &q3_k;
    case GgmlType::kQ4_K:
      return &q4_k;
    case GgmlType::kQ5_K:
      return &q5_k;
    case GgmlType::kQ6_K:
      return &q6_k;
    default:
      return nullptr;
  }
}

}  // namespace

std::span<const GgmlTypeTraits> AllGgmlTypes() { return kTypes; }

const GgmlTypeTraits* FindGgmlType(GgmlType type) {
  return FindGgmlTypeById(static_cast<int32_t>(type));
}

const GgmlTypeTraits* FindGgmlTypeById(int32_t id) {
  for (const auto& t : kTypes) {
    if (static_cast<int32_t>(t.type) == id) return &t;
  }
  return nullptr;
}

const GgmlTypeTraits* FindGgmlTypeByName(std::string_view name) {
  for (const auto& t : kTypes) {
    if (t.name.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < name.size() && eq; ++i) {
      eq = std::tolower(static_cast<unsigned char>(name[i])) ==
           std::tolower(static_cast<unsigned char>(t.name[i]));
    }
    if (eq) return &t;
  }
  return nullptr;
}

std::string GgmlTypeName(GgmlType type) {
  const GgmlTypeTraits* t = FindGgmlType(type);
  return t ? std::string(t->name) : "type" + std::to_string(static_cast<int32_t>(type));
}

Result<uint64_t> GgmlRowBytes(GgmlType type, int64_t n) {
  const GgmlTypeTraits* t = FindGgmlType(type);
  if (!t) return Status::Unsupported("ggml type " + GgmlTypeName(type) + " is not supported");
  if (n < 0 || n % t->block_size != 0) {
    return Status::InvalidArgument("row of " + std::to_string(n) +
                                   " elements is not a multiple of " + std::string(t->name) +
                                   "'s block size " + std::to_string(t->block_size));
  }
  return static_cast<uint64_t>(n / t->block_size) * static_cast<uint64_t>(t->type_size);
}

Status QuantizeGgmlRow(GgmlType type, const float* x, int64_t n, std::byte* out) {
  MOEQ_ASSIGN_OR_RETURN(const uint64_t bytes, GgmlRowBytes(type, n));
  (void)bytes;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * 4);
      return Status::Ok();
    case GgmlType::kF16:
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = type == GgmlType::kF16 ? F32ToF16(x[i]) : F32ToBf16(x[i]);
        U8(out)[2 * i] = static_cast<uint8_t>(h & 0xff);
        U8(out)[2 * i + 1] = static_cast<uint8_t>(h >> 8);
      }
      return Status::Ok();
    default:
      break;
  }
  const BlockCodec* codec = CodecOf(type);
  const GgmlTypeTraits* t = FindGgmlType(type);
  if (!codec || !t)
    return Status::Unsupported("ggml type " + GgmlTypeName(type) + " has no encoder");
  for (int64_t i = 0; i < n / t->block_size; ++i) {
    codec->encode(x + i * t->block_size, U8(out) + i * t->type_size);
  }
  return Status::Ok();
}

Status DequantizeGgmlRow(GgmlType type, const std::byte* data, int64_t n, float* out) {
  MOEQ_ASSIGN_OR_RETURN(const uint64_t bytes, GgmlRowBytes(type, n));
  (void)bytes;
  const uint8_t* p = U8(data);
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(out, data, static_cast<size_t>(n) * 4);
      return Status::Ok();
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i)
        out[i] = F16ToF32(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      return Status::Ok();
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i)
        out[i] = Bf16ToF32(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      return Status::Ok();
    default:
      break;
  }
  const BlockCodec* codec = CodecOf(type);
  const GgmlTypeTraits* t = FindGgmlType(type);
  if (!codec || !t)
    return Status::Unsupported("ggml type " + GgmlTypeName(type) + " has no decoder");
  for (int64_t i = 0; i < n / t->block_size; ++i) {
    codec->decode(p + i * t->type_size, out + i * t->block_size);
  }
  return Status::Ok();
}

}  // namespace moeq
