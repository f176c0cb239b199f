// The packed affine kernels for AVX-512 (F, BW, VL, DQ; x86-64), chosen at run time
// (qmatmul.cpp) when the CPU has them. Compiled with `#pragma GCC target`, so they exist even
// when the library is not built with -march=native (MOEQ_NATIVE=OFF).
#include <cstdint>
#include <cstring>

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
  template <int kBits>
  static T Unpack(const uint8_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kBits == 8) {
      return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(raw));
    } else {
      const Avx512Table& tb = kAvx512Table<kBits>;
      const __m512i mask = _mm512_set1_epi32((1 << kBits) - 1);
      __m512i v = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(raw), _mm512_load_si512(tb.shuffle));
      v = _mm512_srlv_epi32(v, _mm512_load_si512(tb.shift));
      return _mm512_cvtepi32_ps(_mm512_and_si512(v, mask));
    }
  }
};

#include "engine/qmatmul_kernel.h"

}  // namespace

PackedGemmFn Avx512PackedGemm(int bits, int group, PackedScale scale) {
  return PickKernel(bits, group, scale);
}
bool Avx512PackedSupported() { return CpuSupports(Isa::kAvx512); }

}  // namespace moeq::engine

#pragma GCC pop_options

#else

namespace moeq::engine {
PackedGemmFn Avx512PackedGemm(int, int, PackedScale) { return nullptr; }
bool Avx512PackedSupported() { return false; }
}  // namespace moeq::engine

#endif
