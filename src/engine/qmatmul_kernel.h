// The packed affine kernel body, written once over a vector-traits class `V` and instantiated
// per instruction set (qmatmul.cpp: portable; qmatmul_avx2.cpp; qmatmul_avx512.cpp).
//
// Included inside an anonymous namespace of each ISA's translation unit, after that TU has
// defined its traits struct `V` (see below) and, for SIMD ISAs, opened a `#pragma GCC target`
// region. Everything here therefore has internal linkage: no out-of-line copy compiled for one
// ISA can be picked by the linker for another. No std:: templates are used for the same reason
// (buffers come from the caller: PackedGemmArgs::work).
//
// V provides:
//   kWidth                       lanes (8 or 16; every group size is a multiple)
//   kRowBlock, kTokenBlock       register block of the panel kernel (rows x tokens)
//   T                            the float vector type
//   Zero(), Set1(float), Load(const float*), Store(float*, T), Fma(a, b, c) = a*b + c
//   Unpack<kBits>(const uint8_t* p)   kWidth codes starting at byte p (code 0 at bit 0) as
//                                     floats; kWidth * kBits / 8 bytes are consumed and up to
//                                     kPackedPadBytes more may be read.
//   ReducePartial(const T* v)     the first levels of the lane-sum tree of kRowBlock vectors,
//                                 packed in one vector (the shuffles only move lanes: a partial
//                                 sum never mixes lanes of two vectors)
//   ReduceFinish(const T* p, int n, float* y)   from kWidth / kRowBlock ReducePartial results
//                                 (of vectors 0..kWidth-1), y[k] = the lane sum of vector k for
//                                 k < n, by one fixed tree per ISA.
//
// Per output element y[t, o] the sequence is fixed: lane l accumulates, for k = 0, 1, ... in
// order, acc_l = Fma(w, x[t, k*W + l], acc_l) with w = Fma(q[o, k*W + l], scale[o, g], bias[o, g])
// (g the group of input k*W + l, W = kWidth), starting from zero; y = the ISA's fixed tree over the
// lanes (ReducePartial, then ReduceFinish). Two kernels compute exactly that sequence:
//   * direct (few input rows: decode, experts with few tokens): codes are unpacked and
//     dequantized in registers, kRowBlock rows at a time, for one input row;
//   * panel (prefill): the dequantized weights of kWidth rows are written once to a float32
//     panel (exactly the `w` above) and a kRowBlock x kTokenBlock register-blocked FMA kernel
//     runs every input row against it, so unpacking is paid once per weight, not once per token.
// The result of an element therefore does not depend on the kernel, the blocking, the output tile,
// the number of input rows processed together or the thread count.

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

/// Input rows from which the panel kernel is used (below: the direct kernel). Either gives the
/// same bits; this only picks the faster.
inline constexpr int64_t kPanelMinRows = 4;

/// Direct kernel: rows [o, o + kR) of W for input row `x`; acc vectors to out[0..kR).
template <int kBits, int kGroup, PackedScale S, int kR>
inline void DirectBlock(const PackedMatrix& w, int64_t o, const float* x, typename V::T* out) {
  using Vec = typename V::T;
  const int64_t ng = w.in / kGroup;
  const int64_t row_bytes = w.in * kBits / 8;
  constexpr int64_t kGroupBytes = kGroup * kBits / 8;
  constexpr int64_t kStepBytes = V::kWidth * kBits / 8;
  constexpr int kSteps = kGroup / V::kWidth;
  const uint8_t* rc[kR];
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) rc[r] = w.codes + (o + r) * row_bytes;
  Vec acc[kR];
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) acc[r] = V::Zero();
  for (int64_t g = 0; g < ng; ++g) {
    Vec sv[kR], bv[kR];
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) {
      const int64_t gi = (o + r) * ng + g;
      sv[r] = V::Set1(LoadScale<S>(w.scales, gi));
      bv[r] = V::Set1(LoadScale<S>(w.biases, gi));
    }
#pragma GCC unroll 16
    for (int s = 0; s < kSteps; ++s) {
      const Vec xv = V::Load(x + g * kGroup + s * V::kWidth);
#pragma GCC unroll 16
      for (int r = 0; r < kR; ++r) {
        const Vec q = V::template Unpack<kBits>(rc[r] + g * kGroupBytes + s * kStepBytes);
        acc[r] = V::Fma(V::Fma(q, sv[r], bv[r]), xv, acc[r]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) out[r] = acc[r];
}

/// Rows [o, o + n) of W dequantized to float32 into panel[r * in + i] (the `w` of the sequence
/// above); rows n..kWidth-1 of the panel are zeroed.
template <int kBits, int kGroup, PackedScale S>
inline void DequantPanel(const PackedMatrix& w, int64_t o, int n, float* panel) {
  using Vec = typename V::T;
  const int64_t ng = w.in / kGroup;
  const int64_t row_bytes = w.in * kBits / 8;
  constexpr int64_t kGroupBytes = kGroup * kBits / 8;
  constexpr int64_t kStepBytes = V::kWidth * kBits / 8;
  constexpr int kSteps = kGroup / V::kWidth;
  for (int r = 0; r < n; ++r) {
    const uint8_t* rc = w.codes + (o + r) * row_bytes;
    float* dst = panel + r * w.in;
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t gi = (o + r) * ng + g;
      const Vec sv = V::Set1(LoadScale<S>(w.scales, gi));
      const Vec bv = V::Set1(LoadScale<S>(w.biases, gi));
#pragma GCC unroll 16
      for (int s = 0; s < kSteps; ++s) {
        const Vec q = V::template Unpack<kBits>(rc + g * kGroupBytes + s * kStepBytes);
        V::Store(dst + g * kGroup + s * V::kWidth, V::Fma(q, sv, bv));
      }
    }
  }
  for (int r = n; r < V::kWidth; ++r) {
    float* dst = panel + r * w.in;
    for (int64_t i = 0; i < w.in; i += V::kWidth) V::Store(dst + i, V::Zero());
  }
}

/// Panel kernel: panel rows [r0, r0 + kRowBlock) against input rows xr[0..kT); the partial lane
/// sums (ReducePartial) of input row j go to out[j * (kWidth / kRowBlock) + r0 / kRowBlock].
template <int kT>
inline void PanelBlock(const float* panel, int64_t in, int r0, const float* const* xr,
                       typename V::T* out) {
  using Vec = typename V::T;
  constexpr int kR = V::kRowBlock;
  const float* pr[kR];
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) pr[r] = panel + (r0 + r) * in;
  Vec acc[kR][kT];
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kT; ++j) acc[r][j] = V::Zero();
  }
  for (int64_t i = 0; i < in; i += V::kWidth) {
    Vec wv[kR];
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) wv[r] = V::Load(pr[r] + i);
#pragma GCC unroll 16
    for (int j = 0; j < kT; ++j) {
      Vec xv = V::Load(xr[j] + i);
      V::KeepInRegister(xv);  // one load per input vector, not one per FMA
#pragma GCC unroll 16
      for (int r = 0; r < kR; ++r) acc[r][j] = V::Fma(wv[r], xv, acc[r][j]);
    }
  }
  constexpr int kParts = V::kWidth / kR;
#pragma GCC unroll 16
  for (int j = 0; j < kT; ++j) {
    Vec col[kR];
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) col[r] = acc[r][j];
    out[j * kParts + r0 / kR] = V::ReducePartial(col);
  }
}

/// PanelBlock for nt input rows (1 <= nt <= kT): one instantiation per row count.
template <int kT>
inline void PanelDispatch(int nt, const float* panel, int64_t in, int r0, const float* const* xr,
                          typename V::T* out) {
  if (nt == kT) {
    PanelBlock<kT>(panel, in, r0, xr, out);
  } else if constexpr (kT > 1) {
    PanelDispatch<kT - 1>(nt, panel, in, r0, xr, out);
  }
}

template <int kBits, int kGroup, PackedScale S>
void PackedKernel(const PackedGemmArgs& a) {
  using Vec = typename V::T;
  constexpr int W = V::kWidth;
  constexpr int kR = V::kRowBlock;
  constexpr int kParts = W / kR;
  static_assert(V::kTokenBlock <= kPackedMaxTokenBlock && W <= kPackedMaxWidth && W % kR == 0,
                "block sizes");
  const PackedMatrix& w = *a.w;
  // work (PackedWorkFloats): kTokenBlock * W vectors (partial sums), then the panel (W rows of
  // w.in floats), from the first 64-byte boundary.
  float* base = a.work + ((64 - reinterpret_cast<uintptr_t>(a.work) % 64) % 64) / sizeof(float);
  Vec* accbuf = reinterpret_cast<Vec*>(base);
  float* panel = base + V::kTokenBlock * W * W;
  const bool use_panel = a.rows >= kPanelMinRows;
  for (int64_t o = a.o0; o < a.o1; o += W) {
    const int n = static_cast<int>(a.o1 - o < W ? a.o1 - o : W);
    if (use_panel) {
      DequantPanel<kBits, kGroup, S>(w, o, n, panel);
      for (int64_t t = 0; t < a.rows; t += V::kTokenBlock) {
        const int nt = static_cast<int>(a.rows - t < V::kTokenBlock ? a.rows - t : V::kTokenBlock);
        const float* xr[V::kTokenBlock];
        for (int j = 0; j < nt; ++j) xr[j] = a.x + (t + j) * a.x_stride;
        for (int r0 = 0; r0 < W; r0 += kR)
          PanelDispatch<V::kTokenBlock>(nt, panel, w.in, r0, xr, accbuf);
        for (int j = 0; j < nt; ++j)
          V::ReduceFinish(accbuf + j * kParts, n, a.y + (t + j) * a.y_stride + o);
      }
      continue;
    }
    for (int64_t t = 0; t < a.rows; ++t) {
      const float* x = a.x + t * a.x_stride;
      for (int r = 0; r < W; r += kR) {
        Vec acc[kR];
        if (r + kR <= n) {
          DirectBlock<kBits, kGroup, S, kR>(w, o + r, x, acc);
        } else {
          for (int k = 0; k < kR; ++k) {
            if (r + k < n) {
              DirectBlock<kBits, kGroup, S, 1>(w, o + r + k, x, acc + k);
            } else {
              acc[k] = V::Zero();
            }
          }
        }
        accbuf[r / kR] = V::ReducePartial(acc);
      }
      V::ReduceFinish(accbuf, n, a.y + t * a.y_stride + o);
    }
  }
}

// Kernel lookup over a kernel family K (a struct with `template <int kBits, int kGroup,
// PackedScale S> static void Run(const PackedGemmArgs&)`): one instantiation per format.
template <class K, int kBits, int kGroup>
PackedGemmFn PickScaleOf(PackedScale s) {
  switch (s) {
    case PackedScale::kBF16:
      return &K::template Run<kBits, kGroup, PackedScale::kBF16>;
    case PackedScale::kF16:
      return &K::template Run<kBits, kGroup, PackedScale::kF16>;
    case PackedScale::kF32:
      return &K::template Run<kBits, kGroup, PackedScale::kF32>;
  }
  return nullptr;
}

template <class K, int kBits>
PackedGemmFn PickGroupOf(int group, PackedScale s) {
  switch (group) {
    case 32:
      return PickScaleOf<K, kBits, 32>(s);
    case 64:
      return PickScaleOf<K, kBits, 64>(s);
    case 128:
      return PickScaleOf<K, kBits, 128>(s);
    default:
      return nullptr;
  }
}

template <class K>
PackedGemmFn PickKernelOf(int bits, int group, PackedScale s) {
  switch (bits) {
    case 2:
      return PickGroupOf<K, 2>(group, s);
    case 3:
      return PickGroupOf<K, 3>(group, s);
    case 4:
      return PickGroupOf<K, 4>(group, s);
    case 5:
      return PickGroupOf<K, 5>(group, s);
    case 6:
      return PickGroupOf<K, 6>(group, s);
    case 8:
      return PickGroupOf<K, 8>(group, s);
    default:
      return nullptr;
  }
}

/// The float32-activation kernels.
struct FloatKernels {
  template <int kBits, int kGroup, PackedScale S>
  static void Run(const PackedGemmArgs& a) {
    PackedKernel<kBits, kGroup, S>(a);
  }
};

inline PackedGemmFn PickKernel(int bits, int group, PackedScale s) {
  return PickKernelOf<FloatKernels>(bits, group, s);
}
