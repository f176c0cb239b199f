// The packed affine kernels for AVX2 + FMA (x86-64), chosen at run time (qmatmul.cpp) when the
// CPU has both. Compiled with `#pragma GCC target`, so they exist even when the library is not
// built with -march=native (MOEQ_NATIVE=OFF).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/qmatmul.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 reports false "may be used uninitialized" warnings inside its own intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace moeq::engine {
namespace {

// Byte shuffle and shift that place code i of an 8-code step (bits [i*b, i*b+b)) in the low
// bits of 32-bit lane i. Bytes a code does not touch are zeroed (index 0x80).
struct Avx2Table {
  alignas(32) uint8_t shuffle[32];
  alignas(32) uint32_t shift[8];
};

constexpr Avx2Table MakeAvx2Table(int bits) {
  Avx2Table t{};
  for (int i = 0; i < 8; ++i) {
    const int p = i * bits, first = p / 8, last = (p + bits - 1) / 8;
    for (int j = 0; j < 4; ++j) {
      const int byte = first + j;
      // Lanes 4..7 live in the upper 128-bit half; the step's bytes are broadcast to both.
      t.shuffle[4 * i + j] = static_cast<uint8_t>(byte <= last ? byte : 0x80);
    }
    t.shift[i] = static_cast<uint32_t>(p % 8);
  }
  return t;
}

template <int kBits>
inline constexpr Avx2Table kAvx2Table = MakeAvx2Table(kBits);

struct V {
  static constexpr int kWidth = 8;
  static constexpr int kRowBlock = 2;
  static constexpr int kTokenBlock = 4;
  using T = __m256;
  static T Zero() { return _mm256_setzero_ps(); }
  static T Set1(float f) { return _mm256_set1_ps(f); }
  static T Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T Fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  // Keeps `v` in a register: GCC would otherwise fold its load into every FMA that uses it.
  static void KeepInRegister(T& v) { asm("" : "+x"(v)); }
  // The lane sums of 8 vectors, a transposing tree: the sum of vector a is
  // ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)); the shuffles only move lanes, so a sum
  // depends on its own vector alone. ReducePartial: 2 vectors -> [a_i + a_{i+4} | b_i + b_{i+4}].
  static T ReducePartial(const T* v) {
    return _mm256_add_ps(_mm256_permute2f128_ps(v[0], v[1], 0x20),
                         _mm256_permute2f128_ps(v[0], v[1], 0x31));
  }
  // p[m] = ReducePartial of vectors 2m, 2m+1.
  static void ReduceFinish(const T* p, int n, float* y) {
    const __m256 u0 = _mm256_add_ps(_mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 u1 = _mm256_add_ps(_mm256_shuffle_ps(p[2], p[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm256_shuffle_ps(p[2], p[3], _MM_SHUFFLE(3, 2, 3, 2)));
    // r: lane 4h + j holds the sum of vector 2j + h (j < 4, h < 2).
    const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m256 out = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    if (n == 8) {
      _mm256_storeu_ps(y, out);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, out);
      for (int k = 0; k < n; ++k) y[k] = tmp[k];
    }
  }
  template <int kBits>
  static T Unpack(const uint8_t* p) {
    const __m256i mask = _mm256_set1_epi32((1 << kBits) - 1);
    if constexpr (kBits == 8) {
      return _mm256_cvtepi32_ps(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    } else if constexpr (kBits == 4 || kBits == 2) {
      uint32_t word;
      std::memcpy(&word, p, 4);  // 8 codes = 32 (4-bit) or 16 (2-bit) bits
      const __m256i shifts = _mm256_setr_epi32(0, kBits, 2 * kBits, 3 * kBits, 4 * kBits, 5 * kBits,
                                               6 * kBits, 7 * kBits);
      const __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts);
      return _mm256_cvtepi32_ps(_mm256_and_si256(v, mask));
    } else {
      const Avx2Table& tb = kAvx2Table<kBits>;
      const __m256i raw =
          _mm256_broadcastsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
      __m256i v =
          _mm256_shuffle_epi8(raw, _mm256_load_si256(reinterpret_cast<const __m256i*>(tb.shuffle)));
      v = _mm256_srlv_epi32(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(tb.shift)));
      return _mm256_cvtepi32_ps(_mm256_and_si256(v, mask));
    }
  }
};

#include "engine/qmatmul_kernel.h"
// After the float kernel body, whose LoadScale it uses:
#include "engine/qmatmul_int8_kernel.h"

}  // namespace

PackedGemmFn Avx2PackedGemm(int bits, int group, PackedScale scale, bool int8_act) {
  if (int8_act) return PickKernelOf<Int8GenericKernels>(bits, group, scale);
  return PickKernel(bits, group, scale);
}
bool Avx2PackedSupported() { return CpuSupports(Isa::kAvx2); }

}  // namespace moeq::engine

#pragma GCC pop_options

#else

namespace moeq::engine {
PackedGemmFn Avx2PackedGemm(int, int, PackedScale, bool) { return nullptr; }
bool Avx2PackedSupported() { return false; }
}  // namespace moeq::engine

#endif
