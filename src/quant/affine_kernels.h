// Row kernels of MLX affine quantization: one template over bits and scale dtype.
//
// Included once per instruction set, inside `namespace moeq::quant::internal::MOEQ_QUANT_ISA`
// (affine.cpp: portable; affine_avx2.cpp: AVX2 via `#pragma GCC target`). Deliberately no
// include guard and no std:: templates here: every function below is defined in the ISA's own
// namespace, so AVX2 code can never be merged into the portable build by the linker.
//
// Loops run over fixed chunks of 32 elements and fixed arrays of 8 lanes so the compiler
// vectorises them at -O2 without reassociating anything: every lane is a sequential chain and
// lanes are combined in a fixed order, so any vector width gives the same bits.
//
// Floating-point contraction is switched off for these kernels: with FMA available (e.g. a
// -march=native build) GCC would otherwise fuse q * scale + bias into one fma, which rounds
// once instead of twice and no longer matches MLX's separate multiply and add.
//
// Requires (included by the TU before): <cmath>, <cstdint>, <cstring>, affine_internal.h,
// moeq/half.h.

#ifndef MOEQ_QUANT_ISA
#error "define MOEQ_QUANT_ISA (the kernel namespace) before including affine_kernels.h"
#endif

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

namespace moeq::quant::internal::MOEQ_QUANT_ISA {

/// Elements per packing chunk: 32 codes of b bits fill exactly b uint32 words.
constexpr int kChunk = 32;
/// Independent accumulator lanes.
constexpr int kLanes = 8;

inline float Min(float a, float b) { return b < a ? b : a; }
inline float Max(float a, float b) { return a < b ? b : a; }
inline double MaxD(double a, double b) { return a < b ? b : a; }
inline double AbsD(double a) { return a < 0 ? -a : a; }

inline uint32_t ToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Round half to even for |x| < 2^22 (all codes are clamped to [0, 255] first): adding
/// 1.5·2^23 lands in [2^23, 2^24) where the float spacing is 1, so the addition rounds to an
/// integer under the default rounding mode, exactly as rint/nearbyint.
inline float RoundHalfEven(float x) {
  const float k = 12582912.0f;  // 1.5 * 2^23
  return (x + k) - k;
}

/// Rounds a finite float32 to the nearest bfloat16 (RNE), returned as float32.
inline float RoundToBf16(float x) {
  uint32_t u = ToBits(x);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  return FromBits(u);
}

/// Rounds a float32 to the scale dtype S (RNE), returned as float32.
template <ScaleKind S>
inline float RoundToScale(float x) {
  if constexpr (S == ScaleKind::kF32) {
    return x;
  } else if constexpr (S == ScaleKind::kBF16) {
    return RoundToBf16(x);
  } else {
    return F16ToF32(F32ToF16(x));
  }
}

/// Stores `v` (float32) as one element of dtype S at `p` (little-endian) and returns the stored
/// value as float32.
template <ScaleKind S>
inline float StoreScale(float v, std::byte* p) {
  if constexpr (S == ScaleKind::kF32) {
    std::memcpy(p, &v, 4);
    return v;
  } else if constexpr (S == ScaleKind::kBF16) {
    const uint16_t h = F32ToBf16(v);
    std::memcpy(p, &h, 2);
    return Bf16ToF32(h);
  } else {
    const uint16_t h = F32ToF16(v);
    std::memcpy(p, &h, 2);
    return F16ToF32(h);
  }
}

/// Loads one element of dtype S from `p` as float32.
template <ScaleKind S>
inline float LoadScale(const std::byte* p) {
  if constexpr (S == ScaleKind::kF32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  } else {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return S == ScaleKind::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
  }
}

/// MLX's CPU dequantization of one code: R(R(q * scale) + bias) in the scale dtype.
template <ScaleKind S>
inline float DequantOne(float q, float scale, float bias) {
  const float t = RoundToScale<S>(q * scale);
  return RoundToScale<S>(t + bias);
}

/// Packs 32 codes of B bits into B words (little-endian bit stream).
template <int B>
inline void Pack32(const uint8_t* q, uint32_t* out) {
  if constexpr (8 % B == 0) {
    // 2, 4, 8 bits: whole codes per byte; bytes of a little-endian word are in stream order.
    constexpr int kPerByte = 8 / B;
    uint8_t bytes[4 * B];
    for (int i = 0; i < 4 * B; ++i) {
      uint32_t v = 0;
      for (int j = 0; j < kPerByte; ++j) v |= static_cast<uint32_t>(q[i * kPerByte + j]) << (j * B);
      bytes[i] = static_cast<uint8_t>(v);
    }
    std::memcpy(out, bytes, sizeof bytes);
  } else {
    uint64_t acc = 0;
    int filled = 0, w = 0;
    for (int j = 0; j < kChunk; ++j) {
      acc |= static_cast<uint64_t>(q[j]) << filled;
      filled += B;
      if (filled >= 32) {
        out[w++] = static_cast<uint32_t>(acc);
        acc >>= 32;
        filled -= 32;
      }
    }
  }
}

/// Unpacks B words into 32 codes.
template <int B>
inline void Unpack32(const uint32_t* in, uint8_t* q) {
  constexpr uint32_t kMask = (1u << B) - 1u;
  if constexpr (32 % B == 0) {
    constexpr int kPer = 32 / B;
    for (int w = 0; w < B; ++w) {
      for (int j = 0; j < kPer; ++j)
        q[w * kPer + j] = static_cast<uint8_t>((in[w] >> (j * B)) & kMask);
    }
  } else {
    uint64_t acc = 0;
    int avail = 0, w = 0;
    for (int j = 0; j < kChunk; ++j) {
      if (avail < B) {
        acc |= static_cast<uint64_t>(in[w++]) << avail;
        avail += 32;
      }
      q[j] = static_cast<uint8_t>(acc & kMask);
      acc >>= B;
      avail -= B;
    }
  }
}

/// True when any of the n floats is Inf or NaN (exponent bits all ones).
inline bool AnyNonFinite(const float* w, int64_t n) {
  uint32_t any = 0;
  for (int64_t i = 0; i < n; ++i)
    any |= static_cast<uint32_t>((ToBits(w[i]) & 0x7f800000u) == 0x7f800000u);
  return any != 0;
}

/// Groups whose parameters are computed together: their dependency chains (reductions,
/// three divisions, a rounding) are independent, so the CPU overlaps them.
constexpr int kGroupBatch = 16;

/// Quantizes (kStore: writes codes, scales, biases) and/or measures (kError) a row block.
template <int B, ScaleKind S, bool kStore, bool kError>
int64_t QuantizeRowsT(const QuantizeRowsArgs& a) {
  constexpr float kNBins = static_cast<float>((1 << B) - 1);
  const float eps = static_cast<float>(1e-7);
  const int group = a.group_size;
  const int64_t groups_per_row = a.cols / group;
  const int64_t words_per_row = a.cols * B / 32;
  const size_t scale_size = ScaleSize(S);

  double acc_w[kLanes] = {}, acc_e[kLanes] = {}, acc_m[kLanes] = {};
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* wr = a.w + r * a.cols;
    if (AnyNonFinite(wr, a.cols)) return r;
    for (int64_t g0 = 0; g0 < groups_per_row; g0 += kGroupBatch) {
      const int nb =
          static_cast<int>(groups_per_row - g0 < kGroupBatch ? groups_per_row - g0 : kGroupBatch);

      // Phase 1: min and max of each group (8 lanes, combined in a fixed order).
      float w_min[kGroupBatch], w_max[kGroupBatch];
      for (int k = 0; k < nb; ++k) {
        const float* wg = wr + (g0 + k) * group;
        float mn[kLanes], mx[kLanes];
        for (int l = 0; l < kLanes; ++l) {
          mn[l] = wg[l];
          mx[l] = wg[l];
        }
        for (int i = kLanes; i < group; i += kLanes) {
          for (int l = 0; l < kLanes; ++l) {
            mn[l] = Min(mn[l], wg[i + l]);
            mx[l] = Max(mx[l], wg[i + l]);
          }
        }
        float lo = mn[0], hi = mx[0];
        for (int l = 1; l < kLanes; ++l) {
          lo = Min(lo, mn[l]);
          hi = Max(hi, mx[l]);
        }
        w_min[k] = lo;
        w_max[k] = hi;
      }

      // Phase 2: MLX CPU parameters (docs/formats.md §2.2), float32 throughout.
      float scale[kGroupBatch], bias[kGroupBatch], scale_st[kGroupBatch], bias_st[kGroupBatch];
      for (int k = 0; k < nb; ++k) {
        const float lo = w_min[k], hi = w_max[k];
        const bool mask = (lo < 0 ? -lo : lo) > (hi < 0 ? -hi : hi);
        float s = (hi - lo) / kNBins;
        s = s < eps ? eps : s;
        s = mask ? s : -s;
        const float edge = mask ? lo : hi;
        const float q0 = std::nearbyint(edge / s);
        float b = 0.0f;
        if (q0 != 0.0f) {
          s = edge / q0;
          b = edge;
        }
        scale[k] = s;
        bias[k] = b;
      }
      for (int k = 0; k < nb; ++k) {
        if constexpr (kStore) {
          const int64_t gi = r * groups_per_row + g0 + k;
          scale_st[k] = StoreScale<S>(scale[k], a.scales + gi * scale_size);
          bias_st[k] = StoreScale<S>(bias[k], a.biases + gi * scale_size);
        } else {
          scale_st[k] = RoundToScale<S>(scale[k]);
          bias_st[k] = RoundToScale<S>(bias[k]);
        }
      }

      // Phase 3: codes (q = rint((w - bias) / scale) clamped), packing, dequantization, error.
      for (int k = 0; k < nb; ++k) {
        const float s = scale[k], b = bias[k], s_st = scale_st[k], b_st = bias_st[k];
        const int64_t col0 = (g0 + k) * group;
        for (int c = 0; c < group; c += kChunk) {
          const float* wc = wr + col0 + c;
          float qf[kChunk];
          for (int i = 0; i < kChunk; ++i) {
            // clamp(rint(x), 0, n) == rint(clamp(x, 0, n)) as rint is monotone and fixes 0, n.
            const float x = (wc[i] - b) / s;
            qf[i] = RoundHalfEven(Min(Max(x, 0.0f), kNBins));
          }
          if constexpr (kStore) {
            uint8_t q[kChunk];
            for (int i = 0; i < kChunk; ++i)
              q[i] = static_cast<uint8_t>(static_cast<int32_t>(qf[i]));
            Pack32<B>(q, a.packed + r * words_per_row + (col0 + c) * B / 32);
          }
          if constexpr (kError) {
            for (int i = 0; i < kChunk; i += kLanes) {
              for (int l = 0; l < kLanes; ++l) {
                const double wv = wc[i + l];
                const double e = wv - static_cast<double>(DequantOne<S>(qf[i + l], s_st, b_st));
                acc_w[l] += wv * wv;
                acc_e[l] += e * e;
                acc_m[l] = MaxD(acc_m[l], AbsD(e));
              }
            }
          }
        }
      }
    }
  }
  if constexpr (kError) {
    double sw = 0.0, se = 0.0, sm = 0.0;
    for (int l = 0; l < kLanes; ++l) {
      sw += acc_w[l];
      se += acc_e[l];
      sm = MaxD(sm, acc_m[l]);
    }
    a.error->weight_sq += sw;
    a.error->error_sq += se;
    a.error->max_abs = MaxD(a.error->max_abs, sm);
  }
  return -1;
}

template <int B, ScaleKind S>
void DequantizeRowsT(const DequantizeRowsArgs& a) {
  const int group = a.group_size;
  const int64_t groups_per_row = a.cols / group;
  const int64_t words_per_row = a.cols * B / 32;
  const int chunks = group / kChunk;
  const size_t scale_size = ScaleSize(S);
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t g = 0; g < groups_per_row; ++g) {
      const int64_t gi = r * groups_per_row + g;
      const float scale = LoadScale<S>(a.scales + gi * scale_size);
      const float bias = LoadScale<S>(a.biases + gi * scale_size);
      for (int c = 0; c < chunks; ++c) {
        const int64_t col = g * group + c * kChunk;
        uint8_t q[kChunk];
        Unpack32<B>(a.packed + r * words_per_row + col * B / 32, q);
        float* out = a.out + r * a.cols + col;
        for (int i = 0; i < kChunk; ++i)
          out[i] = DequantOne<S>(static_cast<float>(q[i]), scale, bias);
      }
    }
  }
}

template <int B, ScaleKind S>
int64_t QuantizeRowsMode(const QuantizeRowsArgs& a) {
  if (a.error == nullptr) return QuantizeRowsT<B, S, true, false>(a);
  if (a.packed == nullptr) return QuantizeRowsT<B, S, false, true>(a);
  return QuantizeRowsT<B, S, true, true>(a);
}

template <int B>
int64_t QuantizeRowsScale(const QuantizeRowsArgs& a) {
  switch (a.scale_kind) {
    case ScaleKind::kF32:
      return QuantizeRowsMode<B, ScaleKind::kF32>(a);
    case ScaleKind::kF16:
      return QuantizeRowsMode<B, ScaleKind::kF16>(a);
    case ScaleKind::kBF16:
      break;
  }
  return QuantizeRowsMode<B, ScaleKind::kBF16>(a);
}

template <int B>
void DequantizeRowsScale(const DequantizeRowsArgs& a) {
  switch (a.scale_kind) {
    case ScaleKind::kF32:
      return DequantizeRowsT<B, ScaleKind::kF32>(a);
    case ScaleKind::kF16:
      return DequantizeRowsT<B, ScaleKind::kF16>(a);
    case ScaleKind::kBF16:
      break;
  }
  DequantizeRowsT<B, ScaleKind::kBF16>(a);
}

/// Entry point: dispatches on bits (validated by the caller) and scale dtype.
inline int64_t QuantizeRows(const QuantizeRowsArgs& a) {
  switch (a.bits) {
    case 2:
      return QuantizeRowsScale<2>(a);
    case 3:
      return QuantizeRowsScale<3>(a);
    case 4:
      return QuantizeRowsScale<4>(a);
    case 5:
      return QuantizeRowsScale<5>(a);
    case 6:
      return QuantizeRowsScale<6>(a);
    default:
      return QuantizeRowsScale<8>(a);
  }
}

inline void DequantizeRows(const DequantizeRowsArgs& a) {
  switch (a.bits) {
    case 2:
      return DequantizeRowsScale<2>(a);
    case 3:
      return DequantizeRowsScale<3>(a);
    case 4:
      return DequantizeRowsScale<4>(a);
    case 5:
      return DequantizeRowsScale<5>(a);
    case 6:
      return DequantizeRowsScale<6>(a);
    default:
      return DequantizeRowsScale<8>(a);
  }
}

}  // namespace moeq::quant::internal::MOEQ_QUANT_ISA

#pragma GCC pop_options
