// Scalar conversions between float32 and the 16- and 8-bit float formats of checkpoints.
//
// All functions are exact bit manipulations (round-to-nearest-even where a value is narrowed),
// so results are identical on every machine.
#pragma once

#include <cstdint>
#include <cstring>

namespace moeq {

inline float BitsToF32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t F32ToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// bfloat16 bits -> float32 (exact).
inline float Bf16ToF32(uint16_t h) { return BitsToF32(static_cast<uint32_t>(h) << 16); }

/// float32 -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t u = F32ToBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/// IEEE binary16 bits -> float32 (exact, handles subnormals, Inf and NaN).
inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return BitsToF32(sign);
    // Subnormal: value = mant * 2^-24.
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return BitsToF32(sign | 0x7f800000u | (mant << 13));
  return BitsToF32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/// float32 -> IEEE binary16 bits, round to nearest even, overflow to Inf.
inline uint16_t F32ToF16(float f) {
  const uint32_t u = F32ToBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to Inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): value / 2^-24 rounded to nearest even integer.
    if (abs < 0x33000000u) return sign;  // below half of the smallest subnormal
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 113 - e + 13
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
  r = (r + 0xfffu + ((r >> 13) & 1u)) >> 13;
  return static_cast<uint16_t>(sign | r);
}

/// float8 e4m3fn bits -> float32 (as MLX decodes it: no NaN special case).
inline float Fp8E4M3ToF32(uint8_t x) {
  const uint16_t h = static_cast<uint16_t>((x & 0x7fu) << 7);
  float v = F16ToF32(h) * 256.0f;
  return (x & 0x80u) ? -v : v;
}

}  // namespace moeq
