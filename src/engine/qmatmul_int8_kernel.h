// The generic int8-activation kernel (the contract of qmatmul.h, "int8 activations"), written in
// plain C++ and included in the portable and AVX2 translation units (the compiler vectorises the
// integer dot products for each; integer sums are exact, so how does not change the bits). The
// AVX-512 VNNI kernel (qmatmul_vnni.cpp) computes the same sequence.
//
// Included inside an anonymous namespace after qmatmul_kernel.h (it uses LoadScale).
// Requires: <cmath>, <cstdint>, qmatmul.h.

/// Codes [0, in) of row `o` as bytes.
template <int kBits>
inline void UnpackRowBytes(const PackedMatrix& w, int64_t o, uint8_t* dst) {
  const uint8_t* p = w.codes + o * (w.in * kBits / 8);
  if constexpr (kBits == 8) {
    for (int64_t i = 0; i < w.in; ++i) dst[i] = p[i];
  } else if constexpr (kBits == 4) {
    for (int64_t i = 0; i < w.in / 2; ++i) {
      dst[2 * i] = p[i] & 0x0f;
      dst[2 * i + 1] = p[i] >> 4;
    }
  } else {
    for (int64_t i = 0; i < w.in; ++i) {
      const int64_t bit = i * kBits;
      const uint32_t two =
          static_cast<uint32_t>(p[bit >> 3]) | (static_cast<uint32_t>(p[(bit >> 3) + 1]) << 8);
      dst[i] = static_cast<uint8_t>((two >> (bit & 7)) & ((1u << kBits) - 1u));
    }
  }
}

/// The exact integer dot product of one block.
inline int32_t Int8BlockDot(const uint8_t* q, const int8_t* x) {
  int32_t s = 0;
  for (int i = 0; i < kInt8Block; ++i) s += static_cast<int32_t>(q[i]) * static_cast<int32_t>(x[i]);
  return s;
}

template <int kBits, int kGroup, PackedScale S>
void Int8GenericKernel(const PackedGemmArgs& a) {
  const PackedMatrix& w = *a.w;
  const Int8Rows& xq = *a.xq;
  const int64_t ng = w.in / kGroup;
  constexpr int64_t kBlocks = kGroup / kInt8Block;
  const int64_t nb = xq.blocks();
  // work: the row's codes as bytes.
  auto* codes = reinterpret_cast<uint8_t*>(a.work);
  for (int64_t o = a.o0; o < a.o1; ++o) {
    UnpackRowBytes<kBits>(w, o, codes);
    for (int64_t t = 0; t < a.rows; ++t) {
      const int8_t* x = xq.q + t * xq.in;
      const float* d = xq.d + t * nb;
      const float* xs = xq.sum + t * nb;
      float f = 0.0f;
      for (int64_t g = 0; g < ng; ++g) {
        const float sc = LoadScale<S>(w.scales, o * ng + g);
        for (int64_t b = 0; b < kBlocks; ++b) {
          const int64_t k0 = g * kGroup + b * kInt8Block;
          const int32_t dot = Int8BlockDot(codes + k0, x + k0);
          const float sd = sc * d[g * kBlocks + b];
          f = std::fma(static_cast<float>(dot), sd, f);
        }
        f = std::fma(LoadScale<S>(w.biases, o * ng + g), Int8GroupSum(xs + g * kBlocks, kBlocks),
                     f);
      }
      a.y[t * a.y_stride + o] = f;
    }
  }
}

/// The generic int8-activation kernels.
struct Int8GenericKernels {
  template <int kBits, int kGroup, PackedScale S>
  static void Run(const PackedGemmArgs& a) {
    Int8GenericKernel<kBits, kGroup, S>(a);
  }
};
