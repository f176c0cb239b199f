// The packed affine kernels for AVX-512 (F, BW, VL, DQ; x86-64), chosen at run time
// (qmatmul.cpp) when the CPU has them. Compiled with `#pragma GCC target`, so they exist even
// when the library is not built with -march=native (MOEQ_NATIVE=OFF).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "engine/qmatmul.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 reports false "may be used uninitialized" warnings inside its own intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

namespace moeq::engine {
namespace {

// Byte shuffle and shift placing code i of a 16-code step (bits [i*b, i*b+b), within the
// step's first 2*b <= 16 bytes) in 32-bit lane i. The 16 bytes are broadcast to all four
// 128-bit lanes, so indices are relative to the step start. Untouched bytes are zeroed.
struct Avx512Table {
  alignas(64) uint8_t shuffle[64];
  alignas(64) uint32_t shift[16];
};

constexpr Avx512Table MakeAvx512Table(int bits) {
  Avx512Table t{};
  for (int i = 0; i < 16; ++i) {
    const int p = i * bits, first = p / 8, last = (p + bits - 1) / 8;
    for (int j = 0; j < 4; ++j) {
      const int byte = first + j;
      t.shuffle[4 * i + j] = static_cast<uint8_t>(byte <= last ? byte : 0x80);
    }
    t.shift[i] = static_cast<uint32_t>(p % 8);
  }
  return t;
}

template <int kBits>
inline constexpr Avx512Table kAvx512Table = MakeAvx512Table(kBits);

struct V {
  static constexpr int kWidth = 16;
  static constexpr int kRowBlock = 4;
  static constexpr int kTokenBlock = 6;
  using T = __m512;
  static T Zero() { return _mm512_setzero_ps(); }
  static T Set1(float f) { return _mm512_set1_ps(f); }
  static T Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T Fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  // Keeps `v` in a register: GCC would otherwise fold its load into every FMA that uses it.
  static void KeepInRegister(T& v) { asm("" : "+v"(v)); }
  // The lane sums of 16 vectors, a transposing tree: the sum of vector a is
  // ((s0 + s2) + (s1 + s3)) with s_i = (a_i + a_{i+8}) + (a_{i+4} + a_{i+12}); the shuffles only
  // move lanes, so a sum depends on its own vector alone. ReducePartial: 4 vectors -> their s
  // (quarter k = the s of vector k).
  static T ReducePartial(const T* v) {
    const __m512 h0 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x44),
                                    _mm512_shuffle_f32x4(v[0], v[1], 0xEE));
    const __m512 h1 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x44),
                                    _mm512_shuffle_f32x4(v[2], v[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(h0, h1, 0x88), _mm512_shuffle_f32x4(h0, h1, 0xDD));
  }
  // p[m] = ReducePartial of vectors 4m..4m+3.
  static void ReduceFinish(const T* p, int n, float* y) {
    const __m512 u0 = _mm512_add_ps(_mm512_shuffle_ps(p[0], p[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_ps(p[0], p[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 u1 = _mm512_add_ps(_mm512_shuffle_ps(p[2], p[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_ps(p[2], p[3], _MM_SHUFFLE(3, 2, 3, 2)));
    // r: lane 4k + j holds the sum of vector 4j + k.
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512 out = _mm512_permutexvar_ps(idx, r);
    if (n == 16) {
      _mm512_storeu_ps(y, out);
    } else {
      _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << n) - 1u), out);
    }
  }
  // 16 codes starting at byte p as 32-bit integers.
  template <int kBits>
  static __m512i UnpackInt(const uint8_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kBits == 8) {
      return _mm512_cvtepu8_epi32(raw);
    } else {
      const Avx512Table& tb = kAvx512Table<kBits>;
      const __m512i mask = _mm512_set1_epi32((1 << kBits) - 1);
      __m512i v = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(raw), _mm512_load_si512(tb.shuffle));
      v = _mm512_srlv_epi32(v, _mm512_load_si512(tb.shift));
      return _mm512_and_si512(v, mask);
    }
  }
  template <int kBits>
  static T Unpack(const uint8_t* p) {
    return _mm512_cvtepi32_ps(UnpackInt<kBits>(p));
  }
};

#include "engine/qmatmul_kernel.h"
// After the float kernel body, whose LoadScale it uses:
#include "engine/qmatmul_int8_kernel.h"

// ---- int8 activations on AVX-512 VNNI ---------------------------------------------------------
// A panel of 16 weight rows holds, per 4 consecutive inputs (a "step"), one 64-byte vector whose
// 32-bit lane r is the 4 codes of row r; vpdpbusd multiplies it by 4 quantized inputs of a token
// broadcast to every lane, adding 16 rows x 4 products into 16 exact int32 sums. After each
// 32-input block the sums are scaled into float accumulators (qmatmul.h's sequence). Two panels
// (32 rows) by up to kInt8Tokens tokens are one register block.
#pragma GCC push_options
#pragma GCC target("avx512vnni")

constexpr int kInt8Tokens = 4;
constexpr int64_t kPrefetchRows = 12;

// Codes [k0, k0 + 64) of a row (`row` = the row's first byte) as 64 bytes, or with `half`
// codes [k0, k0 + 32) in the low 32 bytes and zeros above.
template <int kBits>
inline __m512i RowBytes64(const uint8_t* row, int64_t k0, bool half) {
  if constexpr (kBits == 8) {
    return _mm512_maskz_loadu_epi8(half ? __mmask64{0xffffffffu} : ~__mmask64{0}, row + k0);
  } else if constexpr (kBits == 4) {
    // Word i = stream byte i: code 2i in its low nibble, 2i + 1 in its high one.
    const __m512i v = half ? _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k0 / 2))))
                           : _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                                 reinterpret_cast<const __m256i*>(row + k0 / 2)));
    return _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi16(0x000f)),
                           _mm512_and_si512(_mm512_slli_epi16(v, 4), _mm512_set1_epi16(0x0f00)));
  } else {
    __m512i r = _mm512_setzero_si512();
    const __m128i q0 = _mm512_cvtepi32_epi8(V::UnpackInt<kBits>(row + k0 * kBits / 8));
    const __m128i q1 = _mm512_cvtepi32_epi8(V::UnpackInt<kBits>(row + (k0 + 16) * kBits / 8));
    r = _mm512_inserti32x4(r, q0, 0);
    r = _mm512_inserti32x4(r, q1, 1);
    if (!half) {
      const __m128i q2 = _mm512_cvtepi32_epi8(V::UnpackInt<kBits>(row + (k0 + 32) * kBits / 8));
      const __m128i q3 = _mm512_cvtepi32_epi8(V::UnpackInt<kBits>(row + (k0 + 48) * kBits / 8));
      r = _mm512_inserti32x4(r, q2, 2);
      r = _mm512_inserti32x4(r, q3, 3);
    }
    return r;
  }
}

// In place: r[i] lane j -> r[j] lane i (32-bit lanes).
__attribute__((always_inline)) inline void Transpose16(__m512i* r) {
  __m512i b[16], c[16];
  for (int i = 0; i < 16; i += 2) {
    b[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    b[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // c[4R + m], 128-bit lane L = column 4L + m of rows 4R..4R+3.
  for (int R = 0; R < 4; ++R) {
    c[4 * R + 0] = _mm512_unpacklo_epi64(b[4 * R], b[4 * R + 2]);
    c[4 * R + 1] = _mm512_unpackhi_epi64(b[4 * R], b[4 * R + 2]);
    c[4 * R + 2] = _mm512_unpacklo_epi64(b[4 * R + 1], b[4 * R + 3]);
    c[4 * R + 3] = _mm512_unpackhi_epi64(b[4 * R + 1], b[4 * R + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512i e0 = _mm512_shuffle_i32x4(c[m], c[4 + m], 0x44);
    const __m512i e1 = _mm512_shuffle_i32x4(c[m], c[4 + m], 0xEE);
    const __m512i e2 = _mm512_shuffle_i32x4(c[8 + m], c[12 + m], 0x44);
    const __m512i e3 = _mm512_shuffle_i32x4(c[8 + m], c[12 + m], 0xEE);
    r[m] = _mm512_shuffle_i32x4(e0, e2, 0x88);
    r[4 + m] = _mm512_shuffle_i32x4(e0, e2, 0xDD);
    r[8 + m] = _mm512_shuffle_i32x4(e1, e3, 0x88);
    r[12 + m] = _mm512_shuffle_i32x4(e1, e3, 0xDD);
  }
}

// Element (r[i] * ng + g) of a scale or bias array for the 16 rows r[i], as one vector.
template <PackedScale S>
__attribute__((always_inline)) inline __m512 Gather16Scales(const void* base, const int64_t* r,
                                                            int64_t ng, int64_t g) {
  return _mm512_setr_ps(LoadScale<S>(base, r[0] * ng + g), LoadScale<S>(base, r[1] * ng + g),
                        LoadScale<S>(base, r[2] * ng + g), LoadScale<S>(base, r[3] * ng + g),
                        LoadScale<S>(base, r[4] * ng + g), LoadScale<S>(base, r[5] * ng + g),
                        LoadScale<S>(base, r[6] * ng + g), LoadScale<S>(base, r[7] * ng + g),
                        LoadScale<S>(base, r[8] * ng + g), LoadScale<S>(base, r[9] * ng + g),
                        LoadScale<S>(base, r[10] * ng + g), LoadScale<S>(base, r[11] * ng + g),
                        LoadScale<S>(base, r[12] * ng + g), LoadScale<S>(base, r[13] * ng + g),
                        LoadScale<S>(base, r[14] * ng + g), LoadScale<S>(base, r[15] * ng + g));
}

// Rows [o, o + n) of W (n <= 16, the others zero) as an int8 panel (above): the step of inputs
// 4s..4s+3 at panel[16 s], scales and biases of group g at sc/bi[16 g]. The codes are first
// unpacked row by row into `rows` (16 * in bytes; each weight row is read from memory in one
// sequential sweep, which decode, reading every weight once per token, needs), then transposed
// 16 x 16 32-bit lanes at a time.
template <int kBits, PackedScale S>
void BuildInt8Panel(const PackedMatrix& w, int64_t o, int n, uint32_t* panel, float* sc, float* bi,
                    uint8_t* rows) {
  const int64_t rb = w.in * kBits / 8, ng = w.in / w.group;
  for (int i = 0; i < n; ++i) {
    const uint8_t* src = w.codes + (o + i) * rb;
    uint8_t* dst = rows + i * w.in;
    for (int64_t k0 = 0; k0 < w.in; k0 += 64) {
      // Rows are read in one sweep at a time; a software prefetch kPrefetchRows rows ahead keeps
      // several cache lines in flight (hardware prefetchers stop at page boundaries), which
      // decode, bound by reading each weight once per token, needs. A prefetch never faults.
      _mm_prefetch(reinterpret_cast<const char*>(src + kPrefetchRows * rb + k0 * kBits / 8),
                   _MM_HINT_T0);
      if (w.in - k0 < 64) {
        _mm512_mask_storeu_epi8(dst + k0, __mmask64{0xffffffffu}, RowBytes64<kBits>(src, k0, true));
      } else {
        _mm512_storeu_si512(dst + k0, RowBytes64<kBits>(src, k0, false));
      }
    }
  }
  for (int64_t k0 = 0; k0 < w.in; k0 += 64) {
    const bool half = w.in - k0 < 64;
    const __mmask64 m = half ? __mmask64{0xffffffffu} : ~__mmask64{0};
    __m512i r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      r[i] = i < n ? _mm512_maskz_loadu_epi8(m, rows + i * w.in + k0) : _mm512_setzero_si512();
    Transpose16(r);
    const int steps = half ? 8 : 16;
#pragma GCC unroll 16
    for (int st = 0; st < steps; ++st) _mm512_store_si512(panel + (k0 / 4 + st) * 16, r[st]);
  }
  // Rows past n repeat the last one: their lanes meet zero codes and are never stored.
  int64_t ri[16];
  for (int i = 0; i < 16; ++i) ri[i] = o + (i < n ? i : n - 1);
  for (int64_t g = 0; g < ng; ++g) {
    _mm512_store_ps(sc + g * 16, Gather16Scales<S>(w.scales, ri, ng, g));
    _mm512_store_ps(bi + g * 16, Gather16Scales<S>(w.biases, ri, ng, g));
  }
}

// kP panels (16 rows each) against kNT tokens starting at t0; outputs y[(t0 + j) * ys + o + i]
// for i < n.
template <int kGroup, int kP, int kNT>
void Int8VnniBlock(const uint32_t* const* panel, const float* const* sc, const float* const* bi,
                   int64_t in, const Int8Rows& xq, int64_t t0, float* y, int64_t ys, int64_t o,
                   int n) {
  constexpr int kBlocks = static_cast<int>(kGroup / kInt8Block);
  const int64_t ng = in / kGroup, nb = xq.blocks();
  const int8_t* xr[kNT];
  const float* dr[kNT];
  const float* sr[kNT];
  for (int j = 0; j < kNT; ++j) {
    xr[j] = xq.q + (t0 + j) * xq.in;
    dr[j] = xq.d + (t0 + j) * nb;
    sr[j] = xq.sum + (t0 + j) * nb;
  }
  __m512 f[kP][kNT];
#pragma GCC unroll 8
  for (int p = 0; p < kP; ++p) {
#pragma GCC unroll 8
    for (int j = 0; j < kNT; ++j) f[p][j] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < ng; ++g) {
    __m512 s[kP];
#pragma GCC unroll 8
    for (int p = 0; p < kP; ++p) s[p] = _mm512_load_ps(sc[p] + g * 16);
    for (int b = 0; b < kBlocks; ++b) {
      const int64_t k0 = g * kGroup + b * kInt8Block;
      __m512i acc[kP][kNT];
#pragma GCC unroll 8
      for (int p = 0; p < kP; ++p) {
#pragma GCC unroll 8
        for (int j = 0; j < kNT; ++j) acc[p][j] = _mm512_setzero_si512();
      }
#pragma GCC unroll 8
      for (int st = 0; st < static_cast<int>(kInt8Block / 4); ++st) {
        __m512i wv[kP];
#pragma GCC unroll 8
        for (int p = 0; p < kP; ++p) wv[p] = _mm512_load_si512(panel[p] + (k0 / 4 + st) * 16);
#pragma GCC unroll 8
        for (int j = 0; j < kNT; ++j) {
          int32_t x4;
          std::memcpy(&x4, xr[j] + k0 + 4 * st, 4);
          const __m512i xb = _mm512_set1_epi32(x4);
#pragma GCC unroll 8
          for (int p = 0; p < kP; ++p) acc[p][j] = _mm512_dpbusd_epi32(acc[p][j], wv[p], xb);
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < kNT; ++j) {
        const __m512 d = _mm512_set1_ps(dr[j][g * kBlocks + b]);
#pragma GCC unroll 8
        for (int p = 0; p < kP; ++p)
          f[p][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[p][j]), _mm512_mul_ps(s[p], d), f[p][j]);
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < kNT; ++j) {
      const __m512 xs = _mm512_set1_ps(Int8GroupSum(sr[j] + g * kBlocks, kBlocks));
#pragma GCC unroll 8
      for (int p = 0; p < kP; ++p)
        f[p][j] = _mm512_fmadd_ps(_mm512_load_ps(bi[p] + g * 16), xs, f[p][j]);
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < kP; ++p) {
    const int np = n - 16 * p;
    const __mmask16 m = np >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << np) - 1u);
#pragma GCC unroll 8
    for (int j = 0; j < kNT; ++j) _mm512_mask_storeu_ps(y + (t0 + j) * ys + o + 16 * p, m, f[p][j]);
  }
}

template <int kGroup, int kP, int kNT>
void Int8VnniTokens(int nt, const uint32_t* const* panel, const float* const* sc,
                    const float* const* bi, int64_t in, const Int8Rows& xq, int64_t t0, float* y,
                    int64_t ys, int64_t o, int n) {
  if (nt == kNT) {
    Int8VnniBlock<kGroup, kP, kNT>(panel, sc, bi, in, xq, t0, y, ys, o, n);
  } else if constexpr (kNT > 1) {
    Int8VnniTokens<kGroup, kP, kNT - 1>(nt, panel, sc, bi, in, xq, t0, y, ys, o, n);
  }
}

// p[i] (16 rows' partial sums: lanes 0-7 of one 32-input block, lanes 8-15 of the next) ->
// *a = the 16 rows' sums of the first block, *b = of the second (exact integer adds).
__attribute__((always_inline)) inline void ReducePairs16(const __m512i* p, __m512i* a, __m512i* b) {
  __m512i q[8], r[4];
  for (int j = 0; j < 8; ++j) {
    q[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * j], p[2 * j + 1]),
                            _mm512_unpackhi_epi32(p[2 * j], p[2 * j + 1]));
  }
  // r[k], 128-bit lane L: rows 4k..4k+3 summed over their lane L.
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(q[2 * k], q[2 * k + 1]),
                            _mm512_unpackhi_epi64(q[2 * k], q[2 * k + 1]));
  }
  // [first block rows 0-3, second 0-3, first 4-7, second 4-7], then rows 8-15.
  const __m512i u01 = _mm512_add_epi32(_mm512_shuffle_i32x4(r[0], r[1], 0x88),
                                       _mm512_shuffle_i32x4(r[0], r[1], 0xDD));
  const __m512i u23 = _mm512_add_epi32(_mm512_shuffle_i32x4(r[2], r[3], 0x88),
                                       _mm512_shuffle_i32x4(r[2], r[3], 0xDD));
  *a = _mm512_shuffle_i32x4(u01, u23, 0x88);
  *b = _mm512_shuffle_i32x4(u01, u23, 0xDD);
}

// Direct kernel (one token; decode): rows [o, o + n) (n <= 16) for token t, without a panel.
// Each row's codes are unpacked in registers and multiplied with 64 quantized inputs at once;
// the lanes' partial sums of 16 rows are reduced to per-block sums together (ReducePairs16),
// then the same float sequence as the panel kernel runs in 16 lanes.
template <int kBits, int kGroup, PackedScale S>
void Int8VnniDirect16(const PackedMatrix& w, int64_t o, int n, const Int8Rows& xq, int64_t t,
                      float* y) {
  constexpr int64_t kBlocks = kGroup / kInt8Block;
  const int64_t rb = w.in * kBits / 8, ng = w.in / kGroup, nb = xq.blocks();
  const int8_t* x = xq.q + t * xq.in;
  const float* d = xq.d + t * nb;
  const float* xs = xq.sum + t * nb;
  const uint8_t* row[16];
  int64_t ri[16];
  for (int i = 0; i < 16; ++i) {
    ri[i] = o + (i < n ? i : n - 1);  // rows past n repeat the last one (not stored)
    row[i] = w.codes + ri[i] * rb;
  }
  // The 16 rows' scale and bias of the current group, built in registers (16 scalar stores
  // read back as one vector would stall on store forwarding for every group).
  __m512 sc = _mm512_setzero_ps(), bi = _mm512_setzero_ps();
  int64_t loaded = -1;
  __m512 f = _mm512_setzero_ps();
  for (int64_t k0 = 0; k0 < w.in; k0 += 64) {
    const bool half = w.in - k0 < 64;
    const __m512i xv =
        _mm512_maskz_loadu_epi8(half ? __mmask64{0xffffffffu} : ~__mmask64{0}, x + k0);
    __m512i p[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(row[i] + 16 * rb + k0 * kBits / 8), _MM_HINT_T0);
      p[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), RowBytes64<kBits>(row[i], k0, half), xv);
    }
    __m512i sums[2];
    ReducePairs16(p, &sums[0], &sums[1]);
    for (int h = 0; h < (half ? 1 : 2); ++h) {
      const int64_t b = k0 / kInt8Block + h, g = b / kBlocks;
      if (g != loaded) {
        sc = Gather16Scales<S>(w.scales, ri, ng, g);
        bi = Gather16Scales<S>(w.biases, ri, ng, g);
        loaded = g;
      }
      f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[h]), _mm512_mul_ps(sc, _mm512_set1_ps(d[b])), f);
      if ((b + 1) % kBlocks == 0)
        f = _mm512_fmadd_ps(bi, _mm512_set1_ps(Int8GroupSum(xs + g * kBlocks, kBlocks)), f);
    }
  }
  _mm512_mask_storeu_ps(y + o, static_cast<__mmask16>((1u << n) - 1u), f);
}

template <int kBits, int kGroup, PackedScale S>
void Int8VnniKernel(const PackedGemmArgs& a) {
  const PackedMatrix& w = *a.w;
  const int64_t ng = w.in / kGroup;
  // work (PackedWorkFloats): two panels of w.in * 16 bytes, scales and biases of both, the
  // unpacked rows (w.in * 16 bytes).
  float* base = a.work + ((64 - reinterpret_cast<uintptr_t>(a.work) % 64) % 64) / sizeof(float);
  uint32_t* panels[2] = {reinterpret_cast<uint32_t*>(base),
                         reinterpret_cast<uint32_t*>(base) + w.in * 4};
  float* sc[2] = {base + 8 * w.in, base + 8 * w.in + 16 * ng};
  float* bi[2] = {sc[1] + 16 * ng, sc[1] + 32 * ng};
  auto* rows = reinterpret_cast<uint8_t*>(bi[1] + 16 * ng);
  if (a.rows == 1) {
    for (int64_t o = a.o0; o < a.o1; o += 16) {
      const int n = static_cast<int>(a.o1 - o < 16 ? a.o1 - o : 16);
      Int8VnniDirect16<kBits, kGroup, S>(w, o, n, *a.xq, 0, a.y);
    }
    return;
  }
  const uint32_t* cp[2] = {panels[0], panels[1]};
  const float* csc[2] = {sc[0], sc[1]};
  const float* cbi[2] = {bi[0], bi[1]};
  for (int64_t o = a.o0; o < a.o1; o += 32) {
    const int n = static_cast<int>(a.o1 - o < 32 ? a.o1 - o : 32);
    BuildInt8Panel<kBits, S>(w, o, n < 16 ? n : 16, panels[0], sc[0], bi[0], rows);
    if (n > 16) BuildInt8Panel<kBits, S>(w, o + 16, n - 16, panels[1], sc[1], bi[1], rows);
    for (int64_t t = 0; t < a.rows; t += kInt8Tokens) {
      const int nt = static_cast<int>(a.rows - t < kInt8Tokens ? a.rows - t : kInt8Tokens);
      if (n > 16) {
        Int8VnniTokens<kGroup, 2, kInt8Tokens>(nt, cp, csc, cbi, w.in, *a.xq, t, a.y, a.y_stride, o,
                                               n);
      } else {
        Int8VnniTokens<kGroup, 1, kInt8Tokens>(nt, cp, csc, cbi, w.in, *a.xq, t, a.y, a.y_stride, o,
                                               n);
      }
    }
  }
}

struct Int8VnniKernels {
  template <int kBits, int kGroup, PackedScale S>
  static void Run(const PackedGemmArgs& a) {
    Int8VnniKernel<kBits, kGroup, S>(a);
  }
};

PackedGemmFn PickInt8Vnni(int bits, int group, PackedScale s) {
  return PickKernelOf<Int8VnniKernels>(bits, group, s);
}

#pragma GCC pop_options

}  // namespace

// Int8RowsBuffer::Quantize's rows on AVX-512: the same operations as the scalar code (qmatmul.cpp)
// element by element — the block sum in the same order, exact max, x * (127 / amax) rounded to
// nearest-even by vcvtps2dq (the default rounding mode, as std::nearbyint), clamp — so the same
// bits.
void QuantizeInt8RowsAvx512(const float* x, int64_t rows, int64_t x_stride, int64_t in, int8_t* q,
                            float* d, float* sum) {
  const int64_t nb = in / kInt8Block;
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * x_stride + b * kInt8Block;
      int8_t* qb = q + t * in + b * kInt8Block;
      const __m512 a = _mm512_loadu_ps(v), c = _mm512_loadu_ps(v + 16);
      const __m512 lane = _mm512_add_ps(a, c);
      const __m256 h8 =
          _mm256_add_ps(_mm512_castps512_ps256(lane), _mm512_extractf32x8_ps(lane, 1));
      const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
      const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
      sum[t * nb + b] = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
      // NaN (quiet or signalling) or infinity anywhere: the scalar path's non-finite block.
      const bool bad = (_mm512_fpclass_ps_mask(a, 0x99) | _mm512_fpclass_ps_mask(c, 0x99)) != 0;
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
      if (bad || amax == 0.0f) {
        d[t * nb + b] = bad ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
        std::memset(qb, 0, kInt8Block);
        continue;
      }
      d[t * nb + b] = amax / 127.0f;
      const __m512 inv = _mm512_set1_ps(127.0f / amax);
      const __m512i qa =
          _mm512_min_epi32(hi, _mm512_max_epi32(lo, _mm512_cvtps_epi32(_mm512_mul_ps(a, inv))));
      const __m512i qc =
          _mm512_min_epi32(hi, _mm512_max_epi32(lo, _mm512_cvtps_epi32(_mm512_mul_ps(c, inv))));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb), _mm512_cvtepi32_epi8(qa));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16), _mm512_cvtepi32_epi8(qc));
    }
  }
}

namespace {}  // namespace

PackedGemmFn Avx512PackedGemm(int bits, int group, PackedScale scale, bool int8_act) {
  if (!int8_act) return PickKernel(bits, group, scale);
  if (DetectCpuFeatures().avx512vnni) return PickInt8Vnni(bits, group, scale);
  return PickKernelOf<Int8GenericKernels>(bits, group, scale);
}
bool Avx512PackedSupported() { return CpuSupports(Isa::kAvx512); }

}  // namespace moeq::engine

#pragma GCC pop_options

#else

namespace moeq::engine {
PackedGemmFn Avx512PackedGemm(int, int, PackedScale, bool) { return nullptr; }
void QuantizeInt8RowsAvx512(const float*, int64_t, int64_t, int64_t, int8_t*, float*, float*) {}
bool Avx512PackedSupported() { return false; }
}  // namespace moeq::engine

#endif
