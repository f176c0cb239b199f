// The packed affine kernel body, written once over a vector-traits class `V` and instantiated
// per instruction set (qmatmul.cpp: portable; qmatmul_avx2.cpp; qmatmul_avx512.cpp).
//
// Included inside an anonymous namespace of each ISA's translation unit, after that TU has
// defined its traits struct `V` (see below) and, for SIMD ISAs, opened a `#pragma GCC target`
// region. Everything here therefore has internal linkage: no out-of-line copy compiled for one
// ISA can be picked by the linker for another. No std:: templates are used for the same reason.
//
// V provides:
//   kWidth                       codes per step (8 or 16; every group size is a multiple)
//   T                            the float vector type
//   Zero(), Set1(float), Load(const float*), Fma(a, b, c) = a*b + c, HSum(T)
//   Unpack<kBits>(const uint8_t* p)   kWidth codes starting at byte p (code 0 at bit 0) as
//                                     floats; kWidth * kBits / 8 bytes are consumed and up to
//                                     kPackedPadBytes more may be read.
//
// Per output element y[r, o] the sequence is fixed: for each group g, ga = Σ_steps q·x lane-wise
// (one Fma per step, steps in order), acc = Fma(ga, scale_g, acc); bacc += bias_g * xsum[r, g];
// y = HSum(acc) + bacc. Blocking over rows (kR) and tokens (kT) only shares loads, so the
// result of an element does not depend on the blocking, the tile or the thread count.

// Requires: <cstdint>, <cstring>, qmatmul.h.

template <PackedScale S>
inline float LoadScale(const void* base, int64_t i) {
  if constexpr (S == PackedScale::kF32) {
    float f;
    std::memcpy(&f, static_cast<const char*>(base) + 4 * i, 4);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(base) + 2 * i, 2);
    if constexpr (S == PackedScale::kBF16) {
      const uint32_t u = static_cast<uint32_t>(h) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    } else {
      // IEEE binary16 → binary32, exact (subnormals, inf and NaN included).
      const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
      uint32_t exp = (h >> 10) & 0x1fu;
      uint32_t man = h & 0x3ffu;
      uint32_t u;
      if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
      } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
      } else if (man == 0) {
        u = sign;
      } else {
        exp = 113;
        while ((man & 0x400u) == 0) {
          man <<= 1;
          --exp;
        }
        u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
      }
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
  }
}

/// kR output rows × kT input rows starting at (o, t).
template <int kBits, int kGroup, PackedScale S, int kR, int kT>
inline void PackedBlock(const PackedGemmArgs& a, int64_t o, int64_t t) {
  using Vec = typename V::T;
  const PackedMatrix& w = *a.w;
  const int64_t ng = w.in / kGroup;
  const int64_t row_bytes = w.in * kBits / 8;
  constexpr int64_t kGroupBytes = kGroup * kBits / 8;
  constexpr int64_t kStepBytes = V::kWidth * kBits / 8;
  constexpr int kSteps = kGroup / V::kWidth;
  const uint8_t* rc[kR];
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) rc[r] = w.codes + (o + r) * row_bytes;
  const float* xr[kT];
  const float* xs[kT];
#pragma GCC unroll 16
  for (int j = 0; j < kT; ++j) {
    xr[j] = a.x + (t + j) * a.x_stride;
    xs[j] = a.xsum + (t + j) * ng;
  }
  Vec acc[kR][kT];
  float bacc[kR][kT];
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kT; ++j) {
      acc[r][j] = V::Zero();
      bacc[r][j] = 0.0f;
    }
  }
  for (int64_t g = 0; g < ng; ++g) {
    Vec ga[kR][kT];
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
      for (int j = 0; j < kT; ++j) ga[r][j] = V::Zero();
    }
#pragma GCC unroll 16
    for (int s = 0; s < kSteps; ++s) {
      Vec q[kR];
#pragma GCC unroll 16
      for (int r = 0; r < kR; ++r)
        q[r] = V::template Unpack<kBits>(rc[r] + g * kGroupBytes + s * kStepBytes);
#pragma GCC unroll 16
      for (int j = 0; j < kT; ++j) {
        const Vec xv = V::Load(xr[j] + g * kGroup + s * V::kWidth);
#pragma GCC unroll 16
        for (int r = 0; r < kR; ++r) ga[r][j] = V::Fma(q[r], xv, ga[r][j]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) {
      const int64_t gi = (o + r) * ng + g;
      const Vec sv = V::Set1(LoadScale<S>(w.scales, gi));
      const float b = LoadScale<S>(w.biases, gi);
#pragma GCC unroll 16
      for (int j = 0; j < kT; ++j) {
        acc[r][j] = V::Fma(ga[r][j], sv, acc[r][j]);
        bacc[r][j] += b * xs[j][g];
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kT; ++j)
      a.y[(t + j) * a.y_stride + o + r] = V::HSum(acc[r][j]) + bacc[r][j];
  }
}

template <int kBits, int kGroup, PackedScale S>
void PackedKernel(const PackedGemmArgs& a) {
  constexpr int kR = V::kRowBlock;
  constexpr int kT = V::kTokenBlock;
  int64_t o = a.o0;
  for (; o + kR <= a.o1; o += kR) {
    int64_t t = 0;
    for (; t + kT <= a.rows; t += kT) PackedBlock<kBits, kGroup, S, kR, kT>(a, o, t);
    for (; t < a.rows; ++t) PackedBlock<kBits, kGroup, S, kR, 1>(a, o, t);
  }
  for (; o < a.o1; ++o) {
    int64_t t = 0;
    for (; t + kT <= a.rows; t += kT) PackedBlock<kBits, kGroup, S, 1, kT>(a, o, t);
    for (; t < a.rows; ++t) PackedBlock<kBits, kGroup, S, 1, 1>(a, o, t);
  }
}

template <int kBits, int kGroup>
PackedGemmFn PickScale(PackedScale s) {
  switch (s) {
    case PackedScale::kBF16:
      return &PackedKernel<kBits, kGroup, PackedScale::kBF16>;
    case PackedScale::kF16:
      return &PackedKernel<kBits, kGroup, PackedScale::kF16>;
    case PackedScale::kF32:
      return &PackedKernel<kBits, kGroup, PackedScale::kF32>;
  }
  return nullptr;
}

template <int kBits>
PackedGemmFn PickGroup(int group, PackedScale s) {
  switch (group) {
    case 32:
      return PickScale<kBits, 32>(s);
    case 64:
      return PickScale<kBits, 64>(s);
    case 128:
      return PickScale<kBits, 128>(s);
    default:
      return nullptr;
  }
}

inline PackedGemmFn PickKernel(int bits, int group, PackedScale s) {
  switch (bits) {
    case 2:
      return PickGroup<2>(group, s);
    case 3:
      return PickGroup<3>(group, s);
    case 4:
      return PickGroup<4>(group, s);
    case 5:
      return PickGroup<5>(group, s);
    case 6:
      return PickGroup<6>(group, s);
    case 8:
      return PickGroup<8>(group, s);
    default:
      return nullptr;
  }
}
