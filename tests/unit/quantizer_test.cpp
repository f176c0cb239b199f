// MLX affine quantization: hand-checked reference values, bit packing, an independent scalar
// reference on random data, kernel-set equality, error statistics and their properties,
// determinism across thread counts, tensor-view entry points and error messages.
#include "moeq/quant/quantizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "moeq/base/half.h"
#include "quant/affine_internal.h"

namespace moeq::quant {
namespace {

std::vector<float> Gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

uint32_t Bits(float f) { return F32ToBits(f); }

// ---------------------------------------------------------------------------------------------
// Hand-checked reference values.
//
// Expected words, scales, biases and dequantized values were derived independently of this
// code base with a ~40-line Python re-implementation of formats.md §2.2–2.3 in which every
// float32 operation is emulated by rounding the double result through struct.pack('<f')
// (exact for + − × ÷ of float32 operands), rint is Python's round() (half to even), bf16 is
// (u + 0x7fff + ((u >> 16) & 1)) >> 16 on the float32 bits, f16 is struct.pack('<e') (RNE),
// and packing is sum(q_k << (k * bits)) split into 32-bit little-endian words. Case A is also
// worked by hand below.
// ---------------------------------------------------------------------------------------------

struct RefCase {
  std::vector<float> w;
  int bits;
  int group;
  DType scale_dtype;
  std::vector<uint32_t> words;
  std::vector<uint32_t> scales;  // bit patterns
  std::vector<uint32_t> biases;
  std::vector<uint32_t> deq_first4;  // float32 bit patterns of the first 4 dequantized values
};

void ExpectReference(const RefCase& c) {
  const auto cols = static_cast<int64_t>(c.w.size());
  auto q = QuantizeAffine(c.w, 1, cols, c.bits, c.group, c.scale_dtype, 1);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->packed, c.words);
  ASSERT_EQ(q->num_groups(), static_cast<int64_t>(c.scales.size()));
  for (size_t g = 0; g < c.scales.size(); ++g) {
    EXPECT_EQ(q->ScaleBits(static_cast<int64_t>(g)), c.scales[g]) << "group " << g;
    EXPECT_EQ(q->BiasBits(static_cast<int64_t>(g)), c.biases[g]) << "group " << g;
  }
  auto d = Dequantize(*q, 1);
  ASSERT_TRUE(d.ok());
  for (size_t i = 0; i < c.deq_first4.size(); ++i) EXPECT_EQ(Bits((*d)[i]), c.deq_first4[i]) << i;
}

// Case A: 4 bits, g32, bf16 scales, |max| >= |min| (negative-scale branch).
// w_i = (i - 10) / 8: min -1.25, max 2.625. |min| <= |max| → scale = -(3.875 / 15) = -0.258333,
// edge = max = 2.625, q0 = rint(2.625 / -0.258333) = rint(-10.16) = -10 → snapped
// scale = 2.625 / -10 = -0.2625 (bf16 0xbe86 = -0.26171875), bias = 2.625 (bf16 0x4028).
// q_i = rint((w_i - 2.625) / -0.2625): w_0 = -1.25 → 14.76 → 15; w_31 = 2.625 → 0.
// Codes 15,14,14,13,... pack 8 per word, first code in the low nibble: 0xbccddeef, ...
// Dequant of q = 15: bf16(15 * -0.26171875 = -3.92578125) = -3.921875; + 2.625 = -1.296875.
TEST(QuantizerReference, FourBitMaxEdgeBf16) {
  RefCase c;
  for (int i = 0; i < 32; ++i) c.w.push_back(static_cast<float>((i - 10) / 8.0));
  c.bits = 4;
  c.group = 32;
  c.scale_dtype = DType::kBF16;
  c.words = {0xbccddeefu, 0x8899aaabu, 0x44556677u, 0x00112233u};
  c.scales = {0xbe86u};
  c.biases = {0x4028u};
  c.deq_first4 = {0xbfa60000u, 0xbf840000u, 0xbf840000u, 0xbf480000u};  // -1.296875, -1.03125, ..
  ExpectReference(c);
}

// Case B: 3 bits, g32, bf16, |min| > |max| (positive scale, bias = min), codes straddle words.
// w_i = 0.5 - 0.09375 i: min -2.40625, max 0.5.
TEST(QuantizerReference, ThreeBitMinEdgeBf16) {
  RefCase c;
  for (int i = 0; i < 32; ++i) c.w.push_back(static_cast<float>(0.5 - 0.09375 * i));
  c.bits = 3;
  c.group = 32;
  c.scale_dtype = DType::kBF16;
  c.words = {0x6ddb6fffu, 0x36dc924bu, 0x00124a49u};
  c.scales = {0x3ecdu};
  c.biases = {0xc01au};
  c.deq_first4 = {0x3ec80000u, 0x3ec80000u, 0x3ec80000u, 0x3ec80000u};
  ExpectReference(c);
}

// Case C: 2 bits, exact ties. Pattern {-3, -2.25, -0.75, 0, 0.75, 1.5, -1.5, 0.375} repeated:
// |min| = 3 > 1.5 → scale = 4.5 / 3 = 1.5, q0 = rint(-3 / 1.5) = -2 → scale 1.5, bias -3.
// (w + 3) / 1.5 = 0, 0.5, 1.5, 2, 2.5, 3, 1, 2.25 → half-even codes 0, 0, 2, 2, 2, 3, 1, 2
// (round-half-away-from-zero would give 0, 1, 2, 2, 3, 3, 1, 2).
TEST(QuantizerReference, TwoBitTiesRoundHalfEven) {
  RefCase c;
  const float pattern[8] = {-3.0f, -2.25f, -0.75f, 0.0f, 0.75f, 1.5f, -1.5f, 0.375f};
  for (int i = 0; i < 32; ++i) c.w.push_back(pattern[i % 8]);
  c.bits = 2;
  c.group = 32;
  c.scale_dtype = DType::kBF16;
  c.words = {0x9ea09ea0u, 0x9ea09ea0u};
  c.scales = {0x3fc0u};  // 1.5
  c.biases = {0xc040u};  // -3
  c.deq_first4 = {Bits(-3.0f), Bits(-3.0f), Bits(0.0f), Bits(0.0f)};
  ExpectReference(c);
}

// Case D: 8 bits, a constant group (0.7f). range 0 → scale = -eps = -1e-7, edge = 0.7,
// q0 = rint(0.7 / -1e-7) = -7000000 → scale = 0.7 / -7e6 (f32 0xb3d6bf95), bias = 0.7; all
// codes rint(0 / scale) = 0. Dequant = bias (bf16 0x3f33 = 0.69921875).
TEST(QuantizerReference, EightBitConstantGroup) {
  RefCase c;
  c.w.assign(32, 0.7f);
  c.bits = 8;
  c.group = 32;
  c.scale_dtype = DType::kBF16;
  c.words.assign(8, 0u);
  c.scales = {0xb3d7u};
  c.biases = {0x3f33u};
  c.deq_first4.assign(4, 0x3f330000u);
  ExpectReference(c);

  c.scale_dtype = DType::kF32;
  c.scales = {0xb3d6bf95u};
  c.biases = {0x3f333333u};  // 0.7f itself: exact reconstruction
  c.deq_first4.assign(4, 0x3f333333u);
  ExpectReference(c);
}

// Case E: q0 == 0. w_i = (i - 16) * 2^-30: range/15 < eps → scale = eps, |min| > |max| → +eps;
// q0 = rint(-1.49e-8 / 1e-7) = rint(-0.149) = 0 → bias = 0, scale stays 1e-7 (bf16 0x33d7);
// every code rint(w / 1e-7) = 0.
TEST(QuantizerReference, FourBitZeroQ0KeepsEpsScaleAndZeroBias) {
  RefCase c;
  for (int i = 0; i < 32; ++i) c.w.push_back(static_cast<float>((i - 16) * std::ldexp(1.0, -30)));
  c.bits = 4;
  c.group = 32;
  c.scale_dtype = DType::kBF16;
  c.words.assign(4, 0u);
  c.scales = {0x33d7u};
  c.biases = {0x0u};
  c.deq_first4.assign(4, 0u);
  ExpectReference(c);
}

// Case F: 8 bits, f16 scales. w_i = ((37 i) mod 29 - 11) / 7.
TEST(QuantizerReference, EightBitF16Scales) {
  RefCase c;
  for (int i = 0; i < 32; ++i) c.w.push_back(static_cast<float>(((i * 37) % 29 - 11) / 7.0));
  c.bits = 8;
  c.group = 32;
  c.scale_dtype = DType::kF16;
  c.words = {0x246db6ffu, 0x09529be4u, 0xf63780c9u, 0xdb1b64adu,
             0xbf004992u, 0xa4ed2e77u, 0x89d2125bu, 0x6db6ff40u};
  c.scales = {0xa403u};
  c.biases = {0x40dbu};
  c.deq_first4 = {0xbfc8c000u, 0xbed90000u, 0x3f384000u, 0x3fee8000u};
  ExpectReference(c);
}

// Case G: 5 bits, f32 scales (5-bit codes straddle every word). w_i = ((13 i) mod 31 - 9) / 5.
TEST(QuantizerReference, FiveBitF32Scales) {
  RefCase c;
  for (int i = 0; i < 32; ++i) c.w.push_back(static_cast<float>(((i * 13) % 31 - 9) / 5.0));
  c.bits = 5;
  c.group = 32;
  c.scale_dtype = DType::kF32;
  c.words = {0xf89b925fu, 0xe664d40bu, 0x3b68b0e3u, 0x1d560b30u, 0xfb747a8au};
  c.scales = {0xbe437dacu};
  c.biases = {0x40866666u};
  c.deq_first4 = {0xbfdbed64u, 0x3f437da8u, 0x405bed61u, 0xbe437dc0u};
  ExpectReference(c);
}

// Case H: 6 bits, f32 scales. w_i = ((7 i) mod 23 - 15) / 3.
TEST(QuantizerReference, SixBitF32Scales) {
  RefCase c;
  for (int i = 0; i < 32; ++i) c.w.push_back(static_cast<float>(((i * 7) % 23 - 15) / 3.0));
  c.bits = 6;
  c.group = 32;
  c.scale_dtype = DType::kF32;
  c.words = {0x8ef28500u, 0x3c5d2768u, 0x951feb5cu, 0x86d202f9u, 0xca1402e6u, 0x749da23bu};
  c.scales = {0x3dee23b9u};
  c.biases = {0xc0a00000u};
  c.deq_first4 = {0xc0a00000u, 0xc02b29acu, 0xbeb29ac0u, 0x3ffd05f4u};
  ExpectReference(c);
}

// Case I: 3 bits, g64, two groups in one row (one per branch of the sign rule).
// Group 0: w_i = ((11 i) mod 17 - 8) / 4; group 1: w_i = ((5 i) mod 13 - 2) / 2.
TEST(QuantizerReference, ThreeBitTwoGroupsG64) {
  RefCase c;
  for (int i = 0; i < 64; ++i) c.w.push_back(static_cast<float>(((i * 11) % 17 - 8) / 4.0));
  for (int i = 0; i < 64; ++i) c.w.push_back(static_cast<float>(((i * 5) % 13 - 2) / 2.0));
  c.bits = 3;
  c.group = 64;
  c.scale_dtype = DType::kBF16;
  c.words = {0xcd622116u, 0x08b4599au, 0xccd66b11u, 0x588845a2u, 0x2d1666b3u, 0x359ac442u,
             0x67543c67u, 0xaa1e33aau, 0x0f19d533u, 0x8cea99d5u, 0x754cea87u, 0xa67543c6u};
  c.scales = {0xbf2bu, 0xbf55u};
  c.biases = {0x4000u, 0x40a0u};
  c.deq_first4 = {0xc0000000u, 0x3f2a0000u, 0xbf2c0000u, 0x40000000u};
  ExpectReference(c);
}

// ---------------------------------------------------------------------------------------------
// Bit packing.
// ---------------------------------------------------------------------------------------------

TEST(QuantPacking, RoundTripsEveryBitWidth) {
  std::mt19937 rng(3);
  for (int bits : kAffineBits) {
    for (size_t n : {size_t{32}, size_t{96}, size_t{256}}) {
      std::vector<uint8_t> codes(n);
      for (auto& c : codes) c = static_cast<uint8_t>(rng() & ((1u << bits) - 1u));
      std::vector<uint32_t> words(n * bits / 32);
      ASSERT_TRUE(PackBits(codes, bits, words).ok());
      std::vector<uint8_t> back(n);
      ASSERT_TRUE(UnpackBits(words, bits, back).ok());
      EXPECT_EQ(back, codes) << bits << " bits, " << n << " codes";
    }
  }
}

TEST(QuantPacking, LittleEndianBitStreamMatchesMlxByteLayout) {
  // Codes k = 0, 1, 2, ... (mod 2^bits); read them back from the bytes of the words with the
  // per-byte formulas of MLX's extract_bits (formats.md §2.3), derived by hand from the
  // little-endian bit stream.
  for (int bits : {3, 5, 6}) {
    const size_t n = 64;
    std::vector<uint8_t> codes(n);
    for (size_t k = 0; k < n; ++k)
      codes[k] = static_cast<uint8_t>((k * 7 + 3) & ((1u << bits) - 1u));
    std::vector<uint32_t> words(n * bits / 32);
    ASSERT_TRUE(PackBits(codes, bits, words).ok());
    std::vector<uint8_t> bytes(words.size() * 4);
    std::memcpy(bytes.data(), words.data(), bytes.size());  // little-endian host
    std::vector<uint8_t> got;
    const uint8_t* b = bytes.data();
    if (bits == 3) {
      for (size_t p = 0; p < n / 8; ++p, b += 3) {
        got.push_back(b[0] & 7);
        got.push_back((b[0] >> 3) & 7);
        got.push_back(static_cast<uint8_t>((b[0] >> 6) | ((b[1] & 1) << 2)));
        got.push_back((b[1] >> 1) & 7);
        got.push_back((b[1] >> 4) & 7);
        got.push_back(static_cast<uint8_t>((b[1] >> 7) | ((b[2] & 3) << 1)));
        got.push_back((b[2] >> 2) & 7);
        got.push_back(b[2] >> 5);
      }
    } else if (bits == 5) {
      for (size_t p = 0; p < n / 8; ++p, b += 5) {
        got.push_back(b[0] & 31);
        got.push_back(static_cast<uint8_t>((b[0] >> 5) | ((b[1] & 3) << 3)));
        got.push_back((b[1] >> 2) & 31);
        got.push_back(static_cast<uint8_t>((b[1] >> 7) | ((b[2] & 15) << 1)));
        got.push_back(static_cast<uint8_t>((b[2] >> 4) | ((b[3] & 1) << 4)));
        got.push_back((b[3] >> 1) & 31);
        got.push_back(static_cast<uint8_t>((b[3] >> 6) | ((b[4] & 7) << 2)));
        got.push_back(b[4] >> 3);
      }
    } else {
      for (size_t p = 0; p < n / 4; ++p, b += 3) {
        got.push_back(b[0] & 63);
        got.push_back(static_cast<uint8_t>((b[0] >> 6) | ((b[1] & 15) << 2)));
        got.push_back(static_cast<uint8_t>((b[1] >> 4) | ((b[2] & 3) << 4)));
        got.push_back(b[2] >> 2);
      }
    }
    EXPECT_EQ(got, codes) << bits << " bits";
  }
  // 4 bits: 8 codes per word, first code in the 4 least significant bits.
  const uint8_t c4[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  uint32_t w4 = 0;
  ASSERT_TRUE(PackBits(c4, 4, std::span<uint32_t>(&w4, 1)).ok());
  EXPECT_EQ(w4, 0x87654321u);
}

TEST(QuantPacking, RejectsBadSizesAndCodes) {
  std::vector<uint8_t> codes(32, 1);
  std::vector<uint32_t> words(3);
  EXPECT_FALSE(PackBits(codes, 4, words).ok());  // needs 4 words
  EXPECT_FALSE(PackBits(codes, 7, std::span<uint32_t>(words.data(), 0)).ok());
  codes[5] = 8;
  EXPECT_FALSE(PackBits(codes, 3, words).ok());  // 8 does not fit in 3 bits
}

// ---------------------------------------------------------------------------------------------
// An independent scalar reference (a direct transliteration of formats.md §2.2), compared with
// the library on random data for every format and scale dtype.
// ---------------------------------------------------------------------------------------------

// No fma contraction here either (the build may use -march=native): MLX multiplies and adds
// in separate steps.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

struct RefQuantized {
  std::vector<uint8_t> codes;
  std::vector<uint32_t> scale_bits, bias_bits;
  std::vector<float> deq;
};

float RoundTo(DType dt, float x, uint32_t* bits_out = nullptr) {
  if (dt == DType::kF32) {
    if (bits_out) *bits_out = F32ToBits(x);
    return x;
  }
  const uint16_t h = dt == DType::kBF16 ? F32ToBf16(x) : F32ToF16(x);
  if (bits_out) *bits_out = h;
  return dt == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
}

RefQuantized ReferenceQuantize(const std::vector<float>& w, int bits, int group, DType dt) {
  RefQuantized r;
  const float n_bins = static_cast<float>((1 << bits) - 1);
  const float eps = 1e-7f;
  for (size_t g0 = 0; g0 < w.size(); g0 += static_cast<size_t>(group)) {
    const auto first = w.begin() + static_cast<std::ptrdiff_t>(g0);
    const float w_min = *std::min_element(first, first + group);
    const float w_max = *std::max_element(first, first + group);
    const bool mask = std::fabs(w_min) > std::fabs(w_max);
    float scale = std::max((w_max - w_min) / n_bins, eps);
    scale = mask ? scale : -scale;
    const float edge = mask ? w_min : w_max;
    const float q0 = std::nearbyint(edge / scale);
    float bias = 0;
    if (q0 != 0) {
      scale = edge / q0;
      bias = edge;
    }
    uint32_t sb, bb;
    const float s_st = RoundTo(dt, scale, &sb), b_st = RoundTo(dt, bias, &bb);
    r.scale_bits.push_back(sb);
    r.bias_bits.push_back(bb);
    for (int i = 0; i < group; ++i) {
      float q = std::nearbyint((first[i] - bias) / scale);
      q = std::min(std::max(q, 0.0f), n_bins);
      r.codes.push_back(static_cast<uint8_t>(q));
      const float prod = RoundTo(dt, q * s_st);
      r.deq.push_back(RoundTo(dt, prod + b_st));
    }
  }
  return r;
}

#pragma GCC pop_options

TEST(QuantizerReference, MatchesScalarReferenceForEveryFormatAndDtype) {
  const int64_t rows = 6, cols = 384;
  std::vector<float> w = Gaussian(static_cast<size_t>(rows * cols), 11);
  // Spice: an outlier, a constant group, a tiny group, and exact bf16 values.
  w[5] = 9.5f;
  std::fill(w.begin() + 128, w.begin() + 256, -0.25f);
  for (int i = 0; i < 128; ++i)
    w[static_cast<size_t>(384 + i)] = static_cast<float>(i - 64) * 1e-9f;
  for (size_t i = 768; i < 1152; ++i) w[i] = Bf16ToF32(F32ToBf16(w[i]));
  for (const auto& fmt : AllFormats()) {
    if (!fmt.is_affine()) continue;
    for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
      SCOPED_TRACE(std::string(fmt.name) + " " + std::string(DTypeName(dt)));
      auto q = QuantizeAffine(w, rows, cols, fmt.bits, fmt.group_size, dt, 2);
      ASSERT_TRUE(q.ok()) << q.status().ToString();
      const RefQuantized ref = ReferenceQuantize(w, fmt.bits, fmt.group_size, dt);
      std::vector<uint32_t> ref_words(q->packed.size());
      ASSERT_TRUE(PackBits(ref.codes, fmt.bits, ref_words).ok());
      EXPECT_EQ(q->packed, ref_words);
      for (int64_t g = 0; g < q->num_groups(); ++g) {
        ASSERT_EQ(q->ScaleBits(g), ref.scale_bits[static_cast<size_t>(g)]) << "group " << g;
        ASSERT_EQ(q->BiasBits(g), ref.bias_bits[static_cast<size_t>(g)]) << "group " << g;
      }
      auto d = Dequantize(*q, 2);
      ASSERT_TRUE(d.ok());
      for (size_t i = 0; i < d->size(); ++i) ASSERT_EQ(Bits((*d)[i]), Bits(ref.deq[i])) << i;

      // The fused measurement sees the same reconstruction.
      auto m = MeasureFormatError(w, rows, cols, dt, fmt, 2);
      ASSERT_TRUE(m.ok());
      const ErrorStats direct = CompareTensors(w, ref.deq);
      EXPECT_EQ(m->max_abs_error, direct.max_abs_error);
      EXPECT_NEAR(m->error_sq_sum, direct.error_sq_sum, 1e-12 * direct.error_sq_sum);
      EXPECT_NEAR(m->weight_sq_sum, direct.weight_sq_sum, 1e-12 * direct.weight_sq_sum);
      EXPECT_EQ(m->count, rows * cols);
      EXPECT_EQ(m->storage_bytes, q->nbytes());
    }
  }
}

TEST(QuantizerKernels, PortableAndAvx2AreBitIdentical) {
  const internal::KernelSet* avx2 = internal::Avx2Kernels();
  if (avx2 == nullptr) GTEST_SKIP() << "no AVX2 on this CPU/build";
  const internal::KernelSet& port = internal::PortableKernels();
  const int64_t rows = 5, cols = 640;
  std::vector<float> w = Gaussian(static_cast<size_t>(rows * cols), 5);
  for (int bits : kAffineBits) {
    for (int group : kAffineGroupSizes) {
      for (auto kind :
           {internal::ScaleKind::kBF16, internal::ScaleKind::kF16, internal::ScaleKind::kF32}) {
        const size_t ng = static_cast<size_t>(rows * cols / group) * internal::ScaleSize(kind);
        std::vector<uint32_t> p1(static_cast<size_t>(rows * cols * bits / 32)), p2(p1.size());
        std::vector<std::byte> s1(ng), s2(ng), b1(ng), b2(ng);
        internal::ErrorAccum e1, e2;
        internal::QuantizeRowsArgs a;
        a.w = w.data();
        a.rows = rows;
        a.cols = cols;
        a.bits = bits;
        a.group_size = group;
        a.scale_kind = kind;
        a.packed = p1.data();
        a.scales = s1.data();
        a.biases = b1.data();
        a.error = &e1;
        ASSERT_EQ(port.quantize_rows(a), -1);
        a.packed = p2.data();
        a.scales = s2.data();
        a.biases = b2.data();
        a.error = &e2;
        ASSERT_EQ(avx2->quantize_rows(a), -1);
        EXPECT_EQ(p1, p2) << bits << "/" << group;
        EXPECT_EQ(s1, s2);
        EXPECT_EQ(b1, b2);
        EXPECT_EQ(std::memcmp(&e1, &e2, sizeof e1), 0) << bits << "/" << group;

        std::vector<float> d1(static_cast<size_t>(rows * cols)), d2(d1.size());
        internal::DequantizeRowsArgs da;
        da.packed = p1.data();
        da.scales = s1.data();
        da.biases = b1.data();
        da.rows = rows;
        da.cols = cols;
        da.bits = bits;
        da.group_size = group;
        da.scale_kind = kind;
        da.out = d1.data();
        port.dequantize_rows(da);
        da.out = d2.data();
        avx2->dequantize_rows(da);
        EXPECT_EQ(std::memcmp(d1.data(), d2.data(), d1.size() * 4), 0);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Error statistics and their properties.
// ---------------------------------------------------------------------------------------------

TEST(QuantizerError, FallsWithMoreBitsAndSmallerGroupsAndStaysWithinTolerance) {
  const int64_t rows = 256, cols = 1024;
  const std::vector<float> w = Gaussian(static_cast<size_t>(rows * cols), 7);
  for (DType dt : {DType::kBF16, DType::kF32}) {
    double nrmse[6][3];
    for (int bi = 0; bi < 6; ++bi) {
      for (int gi = 0; gi < 3; ++gi) {
        const FormatTraits& f = *FindAffineFormat(kAffineBits[bi], kAffineGroupSizes[gi]);
        auto m = MeasureFormatError(w, rows, cols, dt, f, 0);
        ASSERT_TRUE(m.ok());
        nrmse[bi][gi] = m->Nrmse();
        EXPECT_LE(nrmse[bi][gi], f.nrmse_tolerance) << f.name << " " << DTypeName(dt);
        EXPECT_GT(nrmse[bi][gi], 0.4 * f.nrmse_tolerance) << f.name << ": tolerance too loose";
        EXPECT_NEAR(m->SqnrDb(), -20.0 * std::log10(m->Nrmse()), 1e-9);
      }
    }
    for (int gi = 0; gi < 3; ++gi) {
      for (int bi = 1; bi < 6; ++bi) EXPECT_LT(nrmse[bi][gi], nrmse[bi - 1][gi]);
    }
    for (int bi = 0; bi < 6; ++bi) {
      EXPECT_LT(nrmse[bi][0], nrmse[bi][1]);
      EXPECT_LT(nrmse[bi][1], nrmse[bi][2]);
    }
  }
}

TEST(QuantizerError, StatsEdgeCases) {
  ErrorStats zero;
  EXPECT_EQ(zero.Nrmse(), 0.0);
  EXPECT_EQ(zero.SqnrDb(), kSqnrCapDb);
  EXPECT_EQ(zero.Rmse(), 0.0);
  ErrorStats only_error;
  only_error.error_sq_sum = 1.0;
  only_error.count = 4;
  EXPECT_TRUE(std::isinf(only_error.Nrmse()));
  EXPECT_EQ(only_error.SqnrDb(), -kSqnrCapDb);
  EXPECT_DOUBLE_EQ(only_error.Rmse(), 0.5);
  ErrorStats a;
  a.weight_sq_sum = 100.0;
  a.error_sq_sum = 1.0;
  a.max_abs_error = 0.5;
  a.count = 10;
  a.storage_bytes = 7;
  EXPECT_DOUBLE_EQ(a.Nrmse(), 0.1);
  EXPECT_DOUBLE_EQ(a.SqnrDb(), 20.0);
  ErrorStats b = a;
  b.max_abs_error = 0.75;
  a.Merge(b);
  EXPECT_DOUBLE_EQ(a.weight_sq_sum, 200.0);
  EXPECT_EQ(a.max_abs_error, 0.75);
  EXPECT_EQ(a.count, 20);
  EXPECT_EQ(a.storage_bytes, 14u);

  // All-zero weights quantize exactly.
  std::vector<float> zeros(64 * 4, 0.0f);
  auto m = MeasureFormatError(zeros, 4, 64, DType::kBF16, *FindFormat("q2g32"), 1);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->error_sq_sum, 0.0);
  EXPECT_EQ(m->Nrmse(), 0.0);
  EXPECT_EQ(m->SqnrDb(), kSqnrCapDb);
}

TEST(QuantizerError, StorageBytesMatchBuffersAndBpw) {
  const int64_t rows = 64, cols = 768;
  const std::vector<float> w = Gaussian(static_cast<size_t>(rows * cols), 2);
  for (const auto& f : AllFormats()) {
    if (!f.is_affine()) continue;
    for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
      auto q = QuantizeAffine(w, rows, cols, f.bits, f.group_size, dt, 1);
      ASSERT_TRUE(q.ok());
      EXPECT_EQ(q->packed.size(), static_cast<size_t>(rows * f.PackedWordsPerRow(cols)));
      EXPECT_EQ(q->nbytes(), *f.StorageBytes(rows, cols, dt)) << f.name;
      EXPECT_DOUBLE_EQ(static_cast<double>(q->nbytes()) * 8.0 / static_cast<double>(rows * cols),
                       f.BitsPerWeight(dt));
    }
  }
  auto q = QuantizeAffine(w, rows, cols, 4, 64, DType::kBF16, 1);
  ASSERT_TRUE(q.ok());
  EXPECT_DOUBLE_EQ(static_cast<double>(q->nbytes()) * 8.0 / static_cast<double>(rows * cols), 4.5);
  EXPECT_EQ(q->PackedShape(), (std::vector<int64_t>{64, 96}));
  EXPECT_EQ(q->ScalesShape(), (std::vector<int64_t>{64, 12}));
}

TEST(QuantizerThreads, OutputsAreByteIdenticalForOneAndTwoThreads) {
  const int64_t rows = 512, cols = 768;  // 25 row blocks
  const std::vector<float> w = Gaussian(static_cast<size_t>(rows * cols), 9);
  for (const char* name : {"q3g64", "q4g64", "q5g32", "q8g128"}) {
    const FormatTraits& f = *FindFormat(name);
    auto q1 = QuantizeAffine(w, rows, cols, f.bits, f.group_size, DType::kBF16, 1);
    auto q2 = QuantizeAffine(w, rows, cols, f.bits, f.group_size, DType::kBF16, 2);
    ASSERT_TRUE(q1.ok() && q2.ok());
    EXPECT_EQ(q1->packed, q2->packed) << name;
    EXPECT_EQ(q1->scales, q2->scales) << name;
    EXPECT_EQ(q1->biases, q2->biases) << name;
    auto m1 = MeasureFormatError(w, rows, cols, DType::kBF16, f, 1);
    auto m2 = MeasureFormatError(w, rows, cols, DType::kBF16, f, 2);
    ASSERT_TRUE(m1.ok() && m2.ok());
    EXPECT_EQ(std::memcmp(&m1->weight_sq_sum, &m2->weight_sq_sum, sizeof(double)), 0) << name;
    EXPECT_EQ(std::memcmp(&m1->error_sq_sum, &m2->error_sq_sum, sizeof(double)), 0) << name;
    EXPECT_EQ(m1->max_abs_error, m2->max_abs_error);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor views (bf16 / f16 / fused 3-D experts) and float formats.
// ---------------------------------------------------------------------------------------------

struct OwnedView {
  TensorInfo info;
  std::vector<uint16_t> data;
  TensorView view() const {
    return TensorView{&info, std::as_bytes(std::span<const uint16_t>(data))};
  }
};

OwnedView MakeView(DType dt, std::vector<int64_t> shape, uint32_t seed) {
  OwnedView v;
  v.info = TensorInfo{"model.layers.0.mlp.experts.gate_up_proj", dt, std::move(shape)};
  const std::vector<float> f = Gaussian(static_cast<size_t>(v.info.numel()), seed);
  for (float x : f)
    v.data.push_back(dt == DType::kBF16 ? F32ToBf16(x * 0.05f) : F32ToF16(x * 0.05f));
  return v;
}

TEST(QuantizerView, Bf16FusedExpertsMatchTheFloatPath) {
  const OwnedView v = MakeView(DType::kBF16, {3, 40, 128}, 4);
  auto floats = ToF32(v.view());
  ASSERT_TRUE(floats.ok());
  const FormatTraits& f = *FindFormat("q4g64");
  auto qt = QuantizeTensor(v.view(), f, 2);
  ASSERT_TRUE(qt.ok()) << qt.status().ToString();
  EXPECT_EQ(qt->shape, (std::vector<int64_t>{3, 40, 128}));
  EXPECT_EQ(qt->scale_dtype, DType::kBF16);
  EXPECT_EQ(qt->PackedShape(), (std::vector<int64_t>{3, 40, 16}));
  EXPECT_EQ(qt->ScalesShape(), (std::vector<int64_t>{3, 40, 2}));
  auto qa = QuantizeAffine(*floats, 120, 128, 4, 64, DType::kBF16, 1);
  ASSERT_TRUE(qa.ok());
  EXPECT_EQ(qt->packed, qa->packed);
  EXPECT_EQ(qt->scales, qa->scales);
  EXPECT_EQ(qt->biases, qa->biases);

  auto mv = MeasureFormatError(v.view(), f, 2);
  auto mf = MeasureFormatError(*floats, 120, 128, DType::kBF16, f, 1);
  ASSERT_TRUE(mv.ok() && mf.ok());
  EXPECT_EQ(mv->error_sq_sum, mf->error_sq_sum);
  EXPECT_EQ(mv->storage_bytes, qt->nbytes());

  // Several formats in one pass equal one call per format.
  const FormatTraits* formats[] = {FindFormat("q2g32"), FindFormat("q8g128"), FindFormat("bf16"),
                                   FindFormat("q4g64")};
  auto many = MeasureFormatErrors(v.view(), formats, 2);
  ASSERT_TRUE(many.ok());
  for (size_t i = 0; i < 4; ++i) {
    auto one = MeasureFormatError(v.view(), *formats[i], 1);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ((*many)[i].error_sq_sum, one->error_sq_sum) << formats[i]->name;
    EXPECT_EQ((*many)[i].weight_sq_sum, one->weight_sq_sum);
    EXPECT_EQ((*many)[i].storage_bytes, one->storage_bytes);
  }
  // A bf16 tensor kept as bf16 has no error.
  EXPECT_EQ((*many)[2].error_sq_sum, 0.0);
  EXPECT_EQ((*many)[2].SqnrDb(), kSqnrCapDb);
  EXPECT_EQ((*many)[2].storage_bytes, 3u * 40u * 128u * 2u);
}

TEST(QuantizerView, F16ViewGetsF16Scales) {
  const OwnedView v = MakeView(DType::kF16, {16, 64}, 8);
  auto qt = QuantizeTensor(v.view(), *FindFormat("q8g32"), 1);
  ASSERT_TRUE(qt.ok());
  EXPECT_EQ(qt->scale_dtype, DType::kF16);
  auto m = MeasureFormatError(v.view(), *FindFormat("q8g32"), 1);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->storage_bytes, 16u * 64u + 2u * 16u * 2u * 2u);
  EXPECT_LT(m->Nrmse(), FindFormat("q8g32")->nrmse_tolerance);
}

TEST(QuantizerView, FloatFormatsMeasureNarrowing) {
  const std::vector<float> w = Gaussian(4096, 12);
  for (const char* name : {"bf16", "f16", "f32"}) {
    const FormatTraits& f = *FindFormat(name);
    auto m = MeasureFormatError(w, 64, 64, DType::kF32, f, 1);
    ASSERT_TRUE(m.ok());
    EXPECT_LE(m->Nrmse(), f.nrmse_tolerance) << name;
    EXPECT_EQ(m->storage_bytes, 4096u * (f.bits / 8u));
  }
  EXPECT_GT(MeasureFormatError(w, 64, 64, DType::kF32, *FindFormat("bf16"), 1)->Nrmse(), 0.0);
  EXPECT_EQ(MeasureFormatError(w, 64, 64, DType::kF32, *FindFormat("f32"), 1)->Nrmse(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Error messages.
// ---------------------------------------------------------------------------------------------

TEST(QuantizerErrors, NameShapeGroupAndBits) {
  std::vector<float> w(400, 1.0f);
  auto bad_cols = QuantizeAffine(w, 4, 100, 4, 64, DType::kBF16);
  ASSERT_FALSE(bad_cols.ok());
  EXPECT_EQ(bad_cols.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_cols.status().message().find("[4, 100]"), std::string::npos)
      << bad_cols.status().message();
  EXPECT_NE(bad_cols.status().message().find("group size 64"), std::string::npos);

  std::vector<float> w2(4 * 64, 1.0f);
  auto bad_bits = QuantizeAffine(w2, 4, 64, 7, 64, DType::kBF16);
  ASSERT_FALSE(bad_bits.ok());
  EXPECT_NE(bad_bits.status().message().find("bits 7"), std::string::npos)
      << bad_bits.status().message();
  EXPECT_NE(bad_bits.status().message().find("[4, 64]"), std::string::npos);

  EXPECT_FALSE(QuantizeAffine(w2, 4, 64, 4, 48, DType::kBF16).ok());
  EXPECT_FALSE(QuantizeAffine(w2, 4, 64, 4, 64, DType::kI32).ok());
  EXPECT_FALSE(QuantizeAffine(w2, 5, 64, 4, 64, DType::kBF16).ok());  // size mismatch
  auto m = MeasureFormatError(w, 4, 100, DType::kBF16, *FindFormat("q4g64"));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("[4, 100]"), std::string::npos) << m.status().message();

  OwnedView v = MakeView(DType::kBF16, {8, 100}, 1);
  auto mv = MeasureFormatError(v.view(), *FindFormat("q4g32"));
  ASSERT_FALSE(mv.ok());
  EXPECT_NE(mv.status().message().find(v.info.name), std::string::npos) << mv.status().message();
  EXPECT_NE(mv.status().message().find("[8, 100]"), std::string::npos);
  OwnedView v1 = MakeView(DType::kBF16, {128}, 1);
  EXPECT_FALSE(QuantizeTensor(v1.view(), *FindFormat("q4g32")).ok());
  EXPECT_TRUE(MeasureFormatError(v1.view(), *FindFormat("bf16")).ok());
}

TEST(QuantizerErrors, NonFiniteWeightsAreNamed) {
  std::vector<float> w = Gaussian(8 * 64, 1);
  w[3 * 64 + 5] = std::numeric_limits<float>::quiet_NaN();
  auto q = QuantizeAffine(w, 8, 64, 4, 32, DType::kBF16, 2);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("row 3, column 5"), std::string::npos)
      << q.status().message();
  EXPECT_NE(q.status().message().find("NaN"), std::string::npos);
  w[3 * 64 + 5] = std::numeric_limits<float>::infinity();
  auto m = MeasureFormatError(w, 8, 64, DType::kBF16, *FindFormat("q4g32"), 1);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("Inf"), std::string::npos);
  auto mf = MeasureFormatError(w, 8, 64, DType::kF32, *FindFormat("bf16"), 1);
  ASSERT_FALSE(mf.ok());
  EXPECT_NE(mf.status().message().find("row 3, column 5"), std::string::npos);
}

}  // namespace
}  // namespace moeq::quant
