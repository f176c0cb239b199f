// Data-aware GGUF encoders (include/moeq/quant/gguf_encoders.h): the weighted block search
// against an exhaustive search over its candidate grid, never worse than rtn, GPTQ with H = I
// equal to the block search, GPTQ better than rtn on correlated inputs, determinism.
#include "moeq/quant/gguf_encoders.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "moeq/base/half.h"

namespace moeq::quant {
namespace {

constexpr GgmlType kAll[] = {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ5_0, GgmlType::kQ4_1,
                             GgmlType::kQ5_1, GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kQ4_K,
                             GgmlType::kQ5_K, GgmlType::kQ6_K};

std::vector<float> RandomW(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> t(4.0f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& x : w) x = 0.02f * t(rng);
  return w;
}

/// Skewed importances: a few channels matter much more (as activation outliers do).
std::vector<double> SkewedH(int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<double> ln(0.0, 1.5);
  std::vector<double> h(static_cast<size_t>(cols));
  for (double& x : h) x = ln(rng);
  return h;
}

int64_t BlockSize(GgmlType t) { return FindGgmlType(t)->block_size; }
size_t TypeSize(GgmlType t) { return static_cast<size_t>(FindGgmlType(t)->type_size); }

double Decoded(GgmlType t, const std::vector<std::byte>& b, const float* x, const double* h) {
  auto e = GgmlBlockError(t, x, h, b.data());
  EXPECT_TRUE(e.ok());
  return e.ok() ? *e : INFINITY;
}

// The weighted search of a Q4_0 block equals an exhaustive search over its documented candidate
// grid: d = fp16(a) for a = max/qlo and the 21 least-squares refits of the RTN codes of the
// inverse scales (qlo − 0.1 k)/max, each block built by hand and decoded by ggml's decoder.
TEST(GgufEncoders, Q40SearchEqualsExhaustiveGrid) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const std::vector<float> x = RandomW(32, seed);
    const std::vector<double> h = SkewedH(32, 100 + seed);
    float amax = 0, max = 0;
    for (float v : x)
      if (std::fabs(v) > amax) {
        amax = std::fabs(v);
        max = v;
      }
    std::vector<float> cand = {max / -8.0f};
    for (int k = -10; k <= 10; ++k) {
      const double is = (-8.0 - 0.1 * k) / max;
      double sqx = 0, sqq = 0;
      for (int i = 0; i < 32; ++i) {
        const int l = std::clamp(static_cast<int>(std::lround(is * x[i])), -8, 7);
        sqx += h[i] * l * x[i];
        sqq += h[i] * l * l;
      }
      if (sqq > 0) cand.push_back(static_cast<float>(sqx / sqq));
    }
    double best = INFINITY;
    for (float a : cand) {
      const float d = F16ToF32(F32ToF16(a));
      std::vector<std::byte> b(18);
      const uint16_t hd = F32ToF16(d);
      b[0] = std::byte(hd & 0xff);
      b[1] = std::byte(hd >> 8);
      int u[32];
      for (int i = 0; i < 32; ++i)
        u[i] = (d != 0 ? std::clamp(static_cast<int>(std::lround(x[i] / d)), -8, 7) : 0) + 8;
      for (int j = 0; j < 16; ++j) b[2 + j] = std::byte((u[j] & 15) | (u[j + 16] << 4));
      best = std::min(best, Decoded(GgmlType::kQ4_0, b, x.data(), h.data()));
    }
    std::vector<std::byte> got(18);
    ASSERT_TRUE(SearchGgmlBlock(GgmlType::kQ4_0, x.data(), h.data(), got.data()).ok());
    EXPECT_DOUBLE_EQ(Decoded(GgmlType::kQ4_0, got, x.data(), h.data()), best) << "seed " << seed;
  }
}

// Every type: the block search decodes (with ggml's decoders) to a weighted error no larger than
// the rtn codec's in total, clearly smaller for the low-bit types, and EncodeGgml(weighted) is
// never worse than rtn block by block.
TEST(GgufEncoders, WeightedBeatsRtnOnWeightedObjective) {
  for (GgmlType t : kAll) {
    const int64_t bsz = BlockSize(t), cols = 2 * std::max<int64_t>(bsz, 256), rows = 16;
    const std::vector<float> w = RandomW(rows * cols, 7);
    InputStats st;
    st.diag = SkewedH(cols, 8);
    EncoderOptions o;
    o.kind = EncoderKind::kWeighted;
    auto enc = EncodeGgml(w, rows, cols, t, o, &st, 2);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    double e_search = 0, e_rtn = 0, e_weighted = 0;
    std::vector<std::byte> blk(TypeSize(t)), rtn(TypeSize(t));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; c += bsz) {
        const float* x = w.data() + r * cols + c;
        const double* h = st.diag.data() + c;
        ASSERT_TRUE(SearchGgmlBlock(t, x, h, blk.data()).ok());
        ASSERT_TRUE(QuantizeGgmlRow(t, x, bsz, rtn.data()).ok());
        std::vector<std::byte> mine(
            enc->begin() + static_cast<int64_t>((r * cols + c) / bsz * TypeSize(t)),
            enc->begin() + static_cast<int64_t>(((r * cols + c) / bsz + 1) * TypeSize(t)));
        const double er = Decoded(t, rtn, x, h), ew = Decoded(t, mine, x, h);
        EXPECT_LE(ew, er) << GgmlTypeName(t);
        e_rtn += er;
        e_weighted += ew;
        e_search += Decoded(t, blk, x, h);
      }
    }
    EXPECT_LE(e_search, e_rtn * 1.0001) << GgmlTypeName(t);
    if (t != GgmlType::kQ8_0) {
      EXPECT_LT(e_weighted, 0.97 * e_rtn) << GgmlTypeName(t);
    }
  }
}

// Without statistics every encoder is rtn: bytes equal QuantizeGgmlRow.
TEST(GgufEncoders, NoStatisticsIsRtn) {
  const int64_t rows = 4, cols = 256;
  const std::vector<float> w = RandomW(rows * cols, 3);
  EncoderOptions o;
  o.kind = EncoderKind::kGptq;
  auto enc = EncodeGgml(w, rows, cols, GgmlType::kQ4_K, o, nullptr, 1);
  ASSERT_TRUE(enc.ok());
  std::vector<std::byte> ref(enc->size());
  for (int64_t r = 0; r < rows; ++r)
    ASSERT_TRUE(
        QuantizeGgmlRow(GgmlType::kQ4_K, w.data() + r * cols, cols, ref.data() + r * 144).ok());
  EXPECT_EQ(*enc, ref);
}

// GPTQ with H = I propagates nothing: each block equals the weighted block search with h = 1.
TEST(GgufEncoders, GptqIdentityHessianEqualsBlockSearch) {
  for (GgmlType t :
       {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ3_K, GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    const int64_t rows = 8, cols = 512, bsz = BlockSize(t);
    const std::vector<float> w = RandomW(rows * cols, 11);
    InputStats st;
    st.diag.assign(static_cast<size_t>(cols), 1.0);
    st.gram.assign(static_cast<size_t>(cols * cols), 0.0);
    for (int64_t i = 0; i < cols; ++i) st.gram[static_cast<size_t>(i * cols + i)] = 1.0;
    EncoderOptions o;
    o.kind = EncoderKind::kGptq;
    auto enc = EncodeGgml(w, rows, cols, t, o, &st, 2);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    std::vector<std::byte> ref(enc->size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; c += bsz)
        ASSERT_TRUE(SearchGgmlBlock(t, w.data() + r * cols + c, st.diag.data() + c,
                                    ref.data() + (r * cols + c) / bsz * TypeSize(t))
                        .ok());
    EXPECT_EQ(*enc, ref) << GgmlTypeName(t);
  }
}

/// ‖(W − Ŵ)X‖² for decoded Ŵ.
double OutputError(GgmlType t, const std::vector<float>& w, const std::vector<std::byte>& enc,
                   int64_t rows, int64_t cols, const InputStats& st) {
  std::vector<float> wh(w.size());
  const uint64_t rb = *GgmlRowBytes(t, cols);
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_TRUE(DequantizeGgmlRow(t, enc.data() + r * rb, cols, wh.data() + r * cols).ok());
  auto e = MeasureWeightedError(w, wh, rows, cols, st, 1);
  EXPECT_TRUE(e.ok());
  return e->output_error;
}

// On correlated inputs GPTQ leaves a clearly smaller output error ‖(W−Ŵ)X‖ than rtn and than
// the weighted search; identical for 1 and 3 threads.
TEST(GgufEncoders, GptqReducesOutputErrorOnCorrelatedInputs) {
  const int64_t rows = 48, cols = 256, n = 2048;
  std::mt19937 rng(5);
  std::normal_distribution<double> nd;
  // x = A z with a few strong shared factors: strongly correlated channels.
  std::vector<double> a(static_cast<size_t>(cols * 8));
  for (double& v : a) v = nd(rng);
  InputStats st;
  st.gram.assign(static_cast<size_t>(cols * cols), 0.0);
  std::vector<double> x(static_cast<size_t>(cols));
  for (int64_t s = 0; s < n; ++s) {
    double z[8];
    for (double& v : z) v = nd(rng);
    for (int64_t c = 0; c < cols; ++c) {
      double v = 0.3 * nd(rng);
      for (int k = 0; k < 8; ++k) v += a[static_cast<size_t>(c * 8 + k)] * z[k];
      x[static_cast<size_t>(c)] = v;
    }
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j)
        st.gram[static_cast<size_t>(i * cols + j)] +=
            x[static_cast<size_t>(i)] * x[static_cast<size_t>(j)] / n;
  }
  st.diag.resize(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) st.diag[static_cast<size_t>(i)] = st.gram[i * cols + i];
  const std::vector<float> w = RandomW(rows * cols, 6);
  for (GgmlType t : {GgmlType::kQ4_K, GgmlType::kQ3_K, GgmlType::kQ4_0}) {
    EncoderOptions o;
    auto rtn = EncodeGgml(w, rows, cols, t, o, &st, 1);
    o.kind = EncoderKind::kWeighted;
    auto wtd = EncodeGgml(w, rows, cols, t, o, &st, 1);
    o.kind = EncoderKind::kGptq;
    auto gptq = EncodeGgml(w, rows, cols, t, o, &st, 1);
    auto gptq3 = EncodeGgml(w, rows, cols, t, o, &st, 3);
    ASSERT_TRUE(rtn.ok() && wtd.ok() && gptq.ok() && gptq3.ok());
    EXPECT_EQ(*gptq, *gptq3);
    const double er = OutputError(t, w, *rtn, rows, cols, st);
    const double ew = OutputError(t, w, *wtd, rows, cols, st);
    const double eg = OutputError(t, w, *gptq, rows, cols, st);
    EXPECT_LT(eg, 0.8 * er) << GgmlTypeName(t) << " rtn " << er << " gptq " << eg;
    EXPECT_LT(eg, ew) << GgmlTypeName(t);
  }
}

TEST(GgufEncoders, WeightedDeterministicAcrossThreads) {
  const int64_t rows = 70, cols = 512;
  const std::vector<float> w = RandomW(rows * cols, 9);
  InputStats st;
  st.diag = SkewedH(cols, 10);
  EncoderOptions o;
  o.kind = EncoderKind::kWeighted;
  auto a = EncodeGgml(w, rows, cols, GgmlType::kQ4_K, o, &st, 1);
  auto b = EncodeGgml(w, rows, cols, GgmlType::kQ4_K, o, &st, 4);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

TEST(GgufEncoders, RejectsMismatchedStatistics) {
  const std::vector<float> w = RandomW(256, 1);
  InputStats st;
  st.diag.assign(128, 1.0);
  EncoderOptions o;
  o.kind = EncoderKind::kWeighted;
  EXPECT_FALSE(EncodeGgml(w, 1, 256, GgmlType::kQ4_K, o, &st, 1).ok());
  EXPECT_FALSE(EncodeGgml(w, 1, 200, GgmlType::kQ4_K, o, nullptr, 1).ok());
}

}  // namespace
}  // namespace moeq::quant
