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

#include "moeq/base/cpu_features.h"
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

/// Candidate s of the asymmetric search: s = 0 is the plain min/max scale, s >= 1 puts
/// nmax - 0.6 + 0.1 s levels over the range [mn, mx].
inline float AsymLevels(int nmax, int s) {
  return s == 0 ? static_cast<float>(nmax)
                : std::fma(0.1f, static_cast<float>(s), static_cast<float>(nmax) - 0.6f);
}

/// Code of element x for candidate inverse scale `is`: clamp(round(is (x − mn)), 0, nmax).
inline int AsymCode(float x, float mn, float is, int nmax) {
  return Clamp(RoundInt(is * (x - mn)), 0, nmax);
}

/// Per-candidate sums over the elements, in element order: sq = Σ w·l, sqq = Σ (w·l)·l,
/// sqx = Σ (w·l)·x with l = AsymCode. Scalar reference of AsymSums16.
void AsymSums(const float* x, const float* w, int n, int nmax, float mn, float is, float* sq,
              float* sqq, float* sqx) {
  float a = 0, b = 0, c = 0;
  for (int i = 0; i < n; ++i) {
    const float l = static_cast<float>(AsymCode(x[i], mn, is, nmax));
    const float wl = w[i] * l;
    a += wl;
    b = std::fma(wl, l, b);
    c = std::fma(wl, x[i], c);
  }
  *sq = a;
  *sqq = b;
  *sqx = c;
}

/// Σ w·d·d with d = (a·l + b) − x: the weighted error of a candidate's refit (a, b) on its codes.
float AsymError(const float* x, const float* w, int n, int nmax, float mn, float is, float a,
                float b) {
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float l = static_cast<float>(AsymCode(x[i], mn, is, nmax));
    const float d = std::fma(a, l, b) - x[i];
    err = std::fma(w[i] * d, d, err);
  }
  return err;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/// Whether the scale searches run their AVX-512 form: compiled in, and not lowered by MOEQ_ISA
/// (read once). Both forms give the same bits; MOEQ_ISA=portable runs the scalar reference.
bool UseAvx512() {
  static const bool kUse = SelectIsa() >= Isa::kAvx512;
  return kUse;
}

/// RoundInt (halves away from zero, saturating) of 16 lanes, then clamped to [lo, hi]; NaN gives 0.
inline __m512 RoundClamp16(__m512 v, __m512 lo, __m512 hi) {
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 big = _mm512_set1_ps(2147483520.0f);
  __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ);
  t = _mm512_mask_add_ps(t, up, t, _mm512_or_ps(one, _mm512_and_ps(sign, v)));
  // |t| >= 2^31 saturates to the int range, which the clamp turns into lo or hi anyway.
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_sub_ps(_mm512_setzero_ps(), big)), big);
  t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_mov_ps(t, nan, _mm512_setzero_ps());
}

/// Vectors of 16 and of 8 lanes for the asymmetric search (one candidate per lane): the 8-lane
/// form takes a remainder of at most 8 candidates at half the cost of a 16-lane pass.
struct Lanes16 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V Set1(float v) { return _mm512_set1_ps(v); }
  static V Zero() { return _mm512_setzero_ps(); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V Div(V a, V b) { return _mm512_div_ps(a, b); }
  static V Neg(V a) { return _mm512_xor_ps(a, Set1(-0.0f)); }
  using M = __mmask16;
  static M Gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static V Select(M m, V if_true, V if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
  static V RoundClamp(V v, V lo, V hi) { return RoundClamp16(v, lo, hi); }
  /// Clamp(RoundInt(v), 0, hi) for v >= 0, +inf or NaN (what is·(x − mn) can be): trunc, +1 when
  /// the fraction is >= 0.5; max(NaN, 0) is 0 (vmaxps returns its second operand on NaN) and
  /// min(+inf, hi) is hi, as RoundInt's saturation followed by the clamp.
  static V RoundClampNonNeg(V v, V hi) {
    V t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(v, t), Set1(0.5f), _CMP_GE_OQ);
    t = _mm512_mask_add_ps(t, up, t, Set1(1.0f));
    return _mm512_min_ps(_mm512_max_ps(t, Zero()), hi);
  }
};

struct Lanes8 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V Set1(float v) { return _mm256_set1_ps(v); }
  static V Zero() { return _mm256_setzero_ps(); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V Div(V a, V b) { return _mm256_div_ps(a, b); }
  static V Neg(V a) { return _mm256_xor_ps(a, Set1(-0.0f)); }
  using M = __m256;
  static M Gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static V Select(M m, V if_true, V if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
  /// RoundClamp16 on 8 lanes: RoundInt (halves away from zero, saturating), clamp; NaN gives 0.
  static V RoundClamp(V v, V lo, V hi) {
    const V sign = Set1(-0.0f), big = Set1(2147483520.0f);
    V t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const V frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const V up = _mm256_cmp_ps(frac, Set1(0.5f), _CMP_GE_OQ);
    t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(Set1(1.0f), _mm256_and_ps(sign, v))));
    t = _mm256_min_ps(_mm256_max_ps(t, _mm256_sub_ps(Zero(), big)), big);
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    return _mm256_andnot_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), t);
  }
  static V RoundClampNonNeg(V v, V hi) {
    V t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const V up = _mm256_cmp_ps(_mm256_sub_ps(v, t), Set1(0.5f), _CMP_GE_OQ);
    t = _mm256_add_ps(t, _mm256_and_ps(up, Set1(1.0f)));
    return _mm256_min_ps(_mm256_max_ps(t, Zero()), hi);
  }
};

/// Codes of up to 32 elements × 32 candidates, element-major (codes[32 i + s]), kept from the
/// sums to the error pass.
constexpr int kAsymMaxElems = 32;
using AsymCodes = std::array<float, kAsymMaxElems * 32>;

/// AsymSums for L::kLanes candidates at once (one inverse scale per lane), the same operations in
/// the same order per lane, so every lane equals the scalar result bit for bit. Stores the codes.
template <class L>
void AsymSumsN(const float* x, const float* w, int n, int nmax, float mn, int s0, const float* is,
               float* sq, float* sqq, float* sqx, AsymCodes* codes) {
  using V = typename L::V;
  const V hi = L::Set1(static_cast<float>(nmax)), isv = L::Load(is + s0);
  V a = L::Zero(), b = L::Zero(), c = L::Zero();
  for (int i = 0; i < n; ++i) {
    const V l = L::RoundClampNonNeg(L::Mul(isv, L::Set1(x[i] - mn)), hi);
    L::Store(codes->data() + 32 * i + s0, l);
    const V wl = L::Mul(L::Set1(w[i]), l);
    a = L::Add(a, wl);
    b = L::Fma(wl, l, b);
    c = L::Fma(wl, L::Set1(x[i]), c);
  }
  L::Store(sq + s0, a);
  L::Store(sqq + s0, b);
  L::Store(sqx + s0, c);
}

/// The weighted least-squares refit of FitAsymmetric for L::kLanes candidates from s0: the
/// scalar branches as lane selects, the same operations (products that feed a sum fused, exact
/// negations), so every lane equals the scalar solve bit for bit.
template <class L>
void AsymSolveN(float sw, float sx, float mn, int s0, const float* sq, const float* sqq,
                const float* sqx, float* a, float* b) {
  using V = typename L::V;
  const V vsw = L::Set1(sw), vsx = L::Set1(sx), zero = L::Zero();
  const V q = L::Load(sq + s0), qq = L::Load(sqq + s0), qx = L::Load(sqx + s0);
  const V det = L::Fma(vsw, qq, L::Neg(L::Mul(q, q)));
  const auto fit = L::Gt(det, L::Mul(L::Mul(L::Set1(1e-6f), vsw), qq));
  const auto pos = L::Gt(qq, zero);
  // else: keep the minimum, fit the scale
  const V b_else = L::Set1(mn);
  const V a_else = L::Select(pos, L::Div(L::Fma(L::Neg(b_else), q, qx), qq), zero);
  V as = L::Select(fit, L::Div(L::Fma(vsw, qx, L::Neg(L::Mul(q, vsx))), det), a_else);
  V bs = L::Select(fit, L::Div(L::Fma(qq, vsx, L::Neg(L::Mul(q, qx))), det), b_else);
  // the minimum must stay <= 0
  const auto clip = L::Gt(bs, zero);
  as = L::Select(clip, L::Select(pos, L::Div(qx, qq), zero), as);
  bs = L::Select(clip, zero, bs);
  L::Store(a + s0, as);
  L::Store(b + s0, bs);
}

/// AsymSumsN<Lanes16> on candidates [0, 16) and AsymSumsN<Lanes8> on [16, 24) in one loop over
/// the elements (shared broadcasts, two independent dependency chains): the Q4_K/Q5_K search.
void AsymSums24(const float* x, const float* w, int n, int nmax, float mn, const float* is,
                float* sq, float* sqq, float* sqx, AsymCodes* codes) {
  using A = Lanes16;
  using B = Lanes8;
  const A::V hia = A::Set1(static_cast<float>(nmax)), isa = A::Load(is);
  const B::V hib = B::Set1(static_cast<float>(nmax)), isb = B::Load(is + 16);
  A::V a0 = A::Zero(), a1 = A::Zero(), a2 = A::Zero();
  B::V b0 = B::Zero(), b1 = B::Zero(), b2 = B::Zero();
  for (int i = 0; i < n; ++i) {
    const float xm = x[i] - mn;
    const A::V la = A::RoundClampNonNeg(A::Mul(isa, A::Set1(xm)), hia);
    const B::V lb = B::RoundClampNonNeg(B::Mul(isb, B::Set1(xm)), hib);
    A::Store(codes->data() + 32 * i, la);
    B::Store(codes->data() + 32 * i + 16, lb);
    const A::V wla = A::Mul(A::Set1(w[i]), la);
    const B::V wlb = B::Mul(B::Set1(w[i]), lb);
    a0 = A::Add(a0, wla);
    b0 = B::Add(b0, wlb);
    a1 = A::Fma(wla, la, a1);
    b1 = B::Fma(wlb, lb, b1);
    a2 = A::Fma(wla, A::Set1(x[i]), a2);
    b2 = B::Fma(wlb, B::Set1(x[i]), b2);
  }
  A::Store(sq, a0);
  B::Store(sq + 16, b0);
  A::Store(sqq, a1);
  B::Store(sqq + 16, b1);
  A::Store(sqx, a2);
  B::Store(sqx + 16, b2);
}

/// AsymErrorsN over candidates [0, 24) in one loop, as AsymSums24.
void AsymErrors24(const float* x, const float* w, int n, const float* a, const float* b,
                  const AsymCodes& codes, float* err) {
  using A = Lanes16;
  using B = Lanes8;
  const A::V aa = A::Load(a), ba = A::Load(b);
  const B::V ab = B::Load(a + 16), bb = B::Load(b + 16);
  A::V ea = A::Zero();
  B::V eb = B::Zero();
  for (int i = 0; i < n; ++i) {
    const A::V da = A::Sub(A::Fma(aa, A::Load(codes.data() + 32 * i), ba), A::Set1(x[i]));
    const B::V db = B::Sub(B::Fma(ab, B::Load(codes.data() + 32 * i + 16), bb), B::Set1(x[i]));
    ea = A::Fma(A::Mul(A::Set1(w[i]), da), da, ea);
    eb = B::Fma(B::Mul(B::Set1(w[i]), db), db, eb);
  }
  A::Store(err, ea);
  B::Store(err + 16, eb);
}

/// AsymError for L::kLanes candidates at once on the stored codes, bit for bit as the scalar loop.
template <class L>
void AsymErrorsN(const float* x, const float* w, int n, int s0, const float* a, const float* b,
                 const AsymCodes& codes, float* err) {
  using V = typename L::V;
  const V av = L::Load(a + s0), bv = L::Load(b + s0);
  V e = L::Zero();
  for (int i = 0; i < n; ++i) {
    const V d = L::Sub(L::Fma(av, L::Load(codes.data() + 32 * i + s0), bv), L::Set1(x[i]));
    e = L::Fma(L::Mul(L::Set1(w[i]), d), d, e);
  }
  L::Store(err + s0, e);
}
#endif

/// Asymmetric fit x ≈ scale*q - m with q in [0, nmax], m >= 0 (so the minimum is <= 0, as the
/// K-quant decoders need a non-negative min). Tries nstep + 1 candidate inverse scales around
/// nmax/(max-min) (AsymLevels), refines each by weighted least squares, keeps the best (the
/// first on ties). Writes q. With AVX-512 the candidates run 16 per vector. Every product that
/// feeds a sum is an explicit fused multiply-add (GCC contracts C++ at will otherwise), so the
/// vector and scalar paths, and any compiler, give the same bits
/// (GgufCodecTest.EncodingMatchesRecordedBytes).
void FitAsymmetric(const float* x, const float* w, int n, int nmax, int nstep, float* scale,
                   float* m, uint8_t* q) {
  constexpr int kMaxCandidates = 32;
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
  const int count = std::min(nstep + 1, kMaxCandidates);
  // Lanes past `count` get is = 0 and are never read back.
  alignas(64) std::array<float, kMaxCandidates> is{}, sq{}, sqq{}, sqx{}, a{}, b{}, err{};
  for (int s = 0; s < count; ++s) is[static_cast<size_t>(s)] = AsymLevels(nmax, s) / (mx - mn);
  float sw = 0, sx = 0;
  for (int i = 0; i < n; ++i) {
    sw += w[i];
    sx = std::fma(w[i], x[i], sx);
  }
  int s0 = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  AsymCodes codes;
  const bool vec = UseAvx512() && n <= kAsymMaxElems;
  if (vec && count > 16 && count <= 24) {
    AsymSums24(x, w, n, nmax, mn, is.data(), sq.data(), sqq.data(), sqx.data(), &codes);
    s0 = count;
  } else if (vec) {
    for (; count - s0 > 8; s0 += 16)
      AsymSumsN<Lanes16>(x, w, n, nmax, mn, s0, is.data(), sq.data(), sqq.data(), sqx.data(),
                         &codes);
    if (s0 < count)
      AsymSumsN<Lanes8>(x, w, n, nmax, mn, s0, is.data(), sq.data(), sqq.data(), sqx.data(),
                        &codes);
    s0 = count;
  }
#endif
  for (int s = s0; s < count; ++s) AsymSums(x, w, n, nmax, mn, is[s], &sq[s], &sqq[s], &sqx[s]);
  std::array<bool, kMaxCandidates> usable{};
  s0 = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if (vec) {
    for (; count - s0 > 8; s0 += 16)
      AsymSolveN<Lanes16>(sw, sx, mn, s0, sq.data(), sqq.data(), sqx.data(), a.data(), b.data());
    if (s0 < count)
      AsymSolveN<Lanes8>(sw, sx, mn, s0, sq.data(), sqq.data(), sqx.data(), a.data(), b.data());
    for (int s = 0; s < count; ++s) usable[s] = !(a[s] < 0);
    s0 = count;
  }
#endif
  for (int s = s0; s < count; ++s) {
    // Least squares for x ≈ a*q + b.
    const float det = std::fma(sw, sqq[s], -(sq[s] * sq[s]));
    float as, bs;
    if (det > 1e-6f * sw * sqq[s]) {
      as = std::fma(sw, sqx[s], -(sq[s] * sx)) / det;
      bs = std::fma(sqq[s], sx, -(sq[s] * sqx[s])) / det;
    } else {  // all codes (nearly) equal: keep the minimum, fit the scale
      bs = mn;
      as = sqq[s] > 0 ? std::fma(-bs, sq[s], sqx[s]) / sqq[s] : 0;
    }
    if (bs > 0) {  // the minimum must stay <= 0
      bs = 0;
      as = sqq[s] > 0 ? sqx[s] / sqq[s] : 0;
    }
    a[s] = as;
    b[s] = bs;
    usable[s] = !(as < 0);
  }
  s0 = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if (vec && count > 16 && count <= 24) {
    AsymErrors24(x, w, n, a.data(), b.data(), codes, err.data());
    s0 = count;
  } else if (vec) {
    for (; count - s0 > 8; s0 += 16)
      AsymErrorsN<Lanes16>(x, w, n, s0, a.data(), b.data(), codes, err.data());
    if (s0 < count) AsymErrorsN<Lanes8>(x, w, n, s0, a.data(), b.data(), codes, err.data());
    s0 = count;
  }
#endif
  for (int s = s0; s < count; ++s) err[s] = AsymError(x, w, n, nmax, mn, is[s], a[s], b[s]);
  float best_err = INFINITY, best_scale = (mx - mn) / nmax, best_min = mn;
  int best = -1;
  for (int s = 0; s < count; ++s) {
    if (usable[s] && err[s] < best_err) {
      best_err = err[s];
      best_scale = a[s];
      best_min = b[s];
      best = s;
    }
  }
  if (best >= 0 && std::isfinite(best_err)) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if (vec) {  // the winner's codes, as the sums pass stored them
      for (int i = 0; i < n; ++i)
        q[i] = static_cast<uint8_t>(codes[static_cast<size_t>(32 * i + best)]);
    } else
#endif
    {
      for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(AsymCode(x[i], mn, is[best], nmax));
    }
  } else {
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
/// Candidates s = s_first .. s_first + L::kLanes - 1 of SymmetricCandidateError at once, one per
/// lane, with the scalar operations in the same order (s_first + L::kLanes <= 16). Writes each
/// lane's error (INFINITY where the scalar form returns it) and scale.
template <class L>
void SymmetricCandidatesN(const float* x, const float* w, int n, int nmax, float max, int s_first,
                          float* err_out, float* scale_out) {
  using V = typename L::V;
  static constexpr float kSteps[24] = {-8, -7, -6, -5, -4, -3, -2, -1, 0,  1,  2,  3,
                                       4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15};
  const V lo = L::Set1(static_cast<float>(-nmax)), hi = L::Set1(static_cast<float>(nmax - 1));
  const V iscale = L::Div(L::Sub(L::Zero(), L::Fma(L::Load(kSteps + s_first + 8), L::Set1(0.1f),
                                                   L::Set1(static_cast<float>(nmax)))),
                          L::Set1(max));
  V sqx = L::Zero(), sqq = L::Zero();
  for (int i = 0; i < n; ++i) {
    const V xv = L::Set1(x[i]);
    const V l = L::RoundClamp(L::Mul(iscale, xv), lo, hi);
    const V wl = L::Mul(l, L::Set1(w[i]));
    sqx = L::Fma(wl, xv, sqx);
    sqq = L::Fma(wl, l, sqq);
  }
  const V scale = L::Div(sqx, sqq);
  V err = L::Zero();
  for (int i = 0; i < n; ++i) {
    const V xv = L::Set1(x[i]);
    const V l = L::RoundClamp(L::Div(xv, scale), lo, hi);
    const V d = L::Fma(l, scale, L::Sub(L::Zero(), xv));
    err = L::Fma(L::Mul(d, L::Set1(w[i])), d, err);
  }
  alignas(64) float e[16], q[16];
  L::Store(e, err);
  L::Store(q, sqq);
  L::Store(scale_out, scale);
  for (int k = 0; k < L::kLanes; ++k)
    err_out[k] = (q[k] > 0 && !std::isnan(e[k])) ? e[k] : INFINITY;
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
  // Candidates s = -8..8 at errs[s + 8]; the vector form also fills 9..15, unused.
  float errs[24], scales[24];
  int s0 = -8;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if (UseAvx512()) {
    SymmetricCandidatesN<Lanes16>(x, w, n, nmax, max, -8, errs, scales);
    SymmetricCandidatesN<Lanes8>(x, w, n, nmax, max, 8, errs + 16, scales + 16);
    s0 = 9;
  }
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
  for (int i = 0; i < n; ++i) s2 = std::fma(x[i], x[i], s2);
  const float rms = std::sqrt(s2 / static_cast<float>(n));
  for (int i = 0; i < n; ++i) w[i] = rms + std::fabs(x[i]) + 1e-30f;
}

// --- legacy 32-element blocks ----------------------------------------------------------------

/// Codes Clamp(RoundInt(x[j] * id), lo, hi) + add of a 32-element block as bytes (AVX-512: the
/// same multiply, rounding and clamp, 16 at a time).
void RoundBlock32(const float* x, float id, int lo, int hi, int add, uint8_t* q) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if (UseAvx512()) {
    const __m512 vid = _mm512_set1_ps(id), vlo = _mm512_set1_ps(static_cast<float>(lo)),
                 vhi = _mm512_set1_ps(static_cast<float>(hi));
    const __m512i vadd = _mm512_set1_epi32(add);
    for (int j = 0; j < kQK; j += 16) {
      const __m512 r = RoundClamp16(_mm512_mul_ps(_mm512_loadu_ps(x + j), vid), vlo, vhi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j),
                       _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvttps_epi32(r), vadd)));
    }
    return;
  }
#endif
  for (int j = 0; j < kQK; ++j)
    q[j] = static_cast<uint8_t>(Clamp(RoundInt(x[j] * id), lo, hi) + add);
}

void EncodeQ8_0(const float* x, uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = RoundF16(amax / 127.0f);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  PutF16(b, d);
  RoundBlock32(x, id, -127, 127, 0, b + 2);  // int8 codes as their two's-complement bytes
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
  // Clamp(RoundInt(x * id) + half, 0, 2 half - 1) = Clamp(RoundInt(x * id), -half, half - 1) +
  // half.
  RoundBlock32(x, id, -half, half - 1, half, q);
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
  float xm[kQK];
  for (int j = 0; j < kQK; ++j) xm[j] = x[j] - m;
  RoundBlock32(xm, id, 0, nmax, 0, q);
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
  int i0 = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if (UseAvx512() && dl > 0) {  // the same add, divide, RoundInt and clamp, 16 at a time
    const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(static_cast<float>(nmax));
    const __m512 mv = _mm512_set1_ps(ml), dv = _mm512_set1_ps(dl);
    for (; i0 + 16 <= n; i0 += 16) {
      const __m512 v = _mm512_div_ps(_mm512_add_ps(_mm512_loadu_ps(x + i0), mv), dv);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i0),
                       _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(RoundClamp16(v, lo, hi))));
    }
  }
#endif
  for (int i = i0; i < n; ++i) {
    q[i] = static_cast<uint8_t>(dl > 0 ? Clamp(RoundInt((x[i] + ml) / dl), 0, nmax) : 0);
  }
}

/// Symmetric K-quant codes of a 16-element sub-block: Clamp(RoundInt(x / dl), lo, hi), or 0
/// when dl is 0 (AVX-512 16 at a time, the same division, rounding and clamp).
void RecodeSym16(const float* x, float dl, int lo, int hi, int* q) {
  if (dl == 0) {
    for (int i = 0; i < 16; ++i) q[i] = 0;
    return;
  }
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if (UseAvx512()) {
    const __m512 v = _mm512_div_ps(_mm512_loadu_ps(x), _mm512_set1_ps(dl));
    const __m512 r = RoundClamp16(v, _mm512_set1_ps(static_cast<float>(lo)),
                                  _mm512_set1_ps(static_cast<float>(hi)));
    _mm512_storeu_si512(q, _mm512_cvttps_epi32(r));
    return;
  }
#endif
  for (int i = 0; i < 16; ++i) q[i] = Clamp(RoundInt(x[i] / dl), lo, hi);
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
  int q[kQKK];
  for (int j = 0; j < 16; ++j)
    RecodeSym16(x + 16 * j, d * static_cast<float>(ls[j]), -4, 3, q + 16 * j);
  // Element e = 128 h + 32 jj + l, stored as q + 4 in 0..7: the low 2 bits in qs, bit 2 in
  // hmask. Branch-free, a run of 32 at a time (the compiler vectorises it).
  for (int h = 0; h < 2; ++h) {
    for (int jj = 0; jj < 4; ++jj) {
      const int* qe = q + 128 * h + 32 * jj;
      uint8_t* qh = qs + 32 * h;
      for (int l = 0; l < 32; ++l) {
        const int stored = qe[l] + 4;
        qh[l] = static_cast<uint8_t>(qh[l] | ((stored & 3) << (2 * jj)));
        hmask[l] = static_cast<uint8_t>(hmask[l] | (((stored >> 2) & 1) << (4 * h + jj)));
      }
    }
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
  int qi[kQKK];
  for (int j = 0; j < 16; ++j)
    RecodeSym16(x + 16 * j, d * static_cast<float>(sc[j]), -32, 31, qi + 16 * j);
  uint8_t q[kQKK];
  for (int e = 0; e < kQKK; ++e) q[e] = static_cast<uint8_t>(qi[e] + 32);  // 0..63
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
