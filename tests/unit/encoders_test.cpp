// Encoders (rtn, weighted, gptq): rtn is QuantizeAffine; weighted with no search reproduces
// RTN byte for byte, never loses to RTN on its objective Σ h (w − ŵ)² and wins on skewed
// importances, and its codes are the brute-force nearest codes for the stored parameters; gptq
// with H = I is RTN byte for byte, matches a direct (OBS-form, unblocked, double precision)
// reference, and leaves less output error ‖(W − Ŵ)X‖ than RTN on correlated inputs;
// MeasureWeightedError equals the direct ‖(W − Ŵ)X‖² / ‖WX‖²; thread-count independence.
#include "moeq/quant/encoders.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "moeq/base/half.h"

namespace moeq::quant {
namespace {

std::vector<float> Gaussian(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

/// X [n, cols] with correlated columns: x = z A, A lower-triangular-ish mixing with decay,
/// and a few loud channels (as real activations have).
std::vector<double> CorrelatedX(int64_t n, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> z(static_cast<size_t>(n * cols)), x(z.size(), 0.0);
  for (auto& v : z) v = dist(rng);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < cols; ++j) {
      double acc = 0;
      for (int64_t k = std::max<int64_t>(0, j - 8); k <= j; ++k)
        acc += z[static_cast<size_t>(t * cols + k)] * std::pow(0.7, static_cast<double>(j - k));
      const double loud = (j % 17 == 3) ? 6.0 : 1.0;
      x[static_cast<size_t>(t * cols + j)] = acc * loud;
    }
  }
  return x;
}

InputStats StatsOf(const std::vector<double>& x, int64_t n, int64_t cols) {
  InputStats s;
  s.count = n;
  s.gram.assign(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j)
        s.gram[static_cast<size_t>(i * cols + j)] += x[static_cast<size_t>(t * cols + i)] *
                                                     x[static_cast<size_t>(t * cols + j)] /
                                                     static_cast<double>(n);
  s.diag.resize(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i)
    s.diag[static_cast<size_t>(i)] = s.gram[static_cast<size_t>(i * cols + i)];
  return s;
}

/// Direct ‖(W − Ŵ) Xᵀ‖F² over the samples (rows of X are tokens).
double OutputError(const std::vector<float>& w, const std::vector<float>& wh, int64_t rows,
                   int64_t cols, const std::vector<double>& x, int64_t n) {
  double e = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < n; ++t) {
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c)
        acc += (static_cast<double>(w[static_cast<size_t>(r * cols + c)]) -
                wh[static_cast<size_t>(r * cols + c)]) *
               x[static_cast<size_t>(t * cols + c)];
      e += acc * acc;
    }
  return e;
}

double DiagObjective(const std::vector<float>& w, const std::vector<float>& wh, int64_t rows,
                     int64_t cols, const std::vector<double>& h) {
  double e = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double d = static_cast<double>(w[static_cast<size_t>(r * cols + c)]) -
                       wh[static_cast<size_t>(r * cols + c)];
      e += h[static_cast<size_t>(c)] * d * d;
    }
  return e;
}

void ExpectSameTensor(const QuantizedTensor& a, const QuantizedTensor& b) {
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(a.packed, b.packed);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.biases, b.biases);
}

TEST(Encoders, ParseNamesAndLists) {
  EXPECT_EQ(*ParseEncoder("gptq"), EncoderKind::kGptq);
  EXPECT_EQ(EncoderName(EncoderKind::kWeighted), "weighted");
  EXPECT_FALSE(ParseEncoder("awq").ok());
  auto l = ParseEncoderList("rtn,gptq");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->size(), 2u);
  EXPECT_FALSE(ParseEncoderList("rtn,rtn").ok());
  EXPECT_FALSE(ParseEncoderList("rtn,").ok());
}

TEST(Encoders, RtnIsQuantizeAffine) {
  const auto w = Gaussian(64 * 256, 1);
  EncoderOptions o;
  InputStats s;
  s.diag.assign(256, 2.0);
  auto a = EncodeAffine(w, 64, 256, *FindAffineFormat(3, 64), DType::kBF16, o, &s, 2);
  auto b = QuantizeAffine(w, 64, 256, 3, 64, DType::kBF16, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectSameTensor(*a, *b);
}

TEST(Encoders, WeightedWithoutSearchReproducesRtnBytes) {
  const auto w = Gaussian(40 * 256, 2);
  InputStats s;
  s.diag = std::vector<double>(256, 1.0);
  EncoderOptions o;
  o.kind = EncoderKind::kWeighted;
  o.weighted_steps = 0;
  for (int bits : kAffineBits) {
    for (int g : kAffineGroupSizes) {
      for (DType sd : {DType::kBF16, DType::kF16, DType::kF32}) {
        auto a = EncodeAffine(w, 40, 256, *FindAffineFormat(bits, g), sd, o, &s, 2);
        auto b = QuantizeAffine(w, 40, 256, bits, g, sd, 1);
        ASSERT_TRUE(a.ok() && b.ok()) << bits << " " << g;
        ExpectSameTensor(*a, *b);
      }
    }
  }
}

TEST(Encoders, WeightedNeverLosesToRtnAndWinsOnSkewedImportance) {
  const int64_t rows = 48, cols = 256;
  const auto w = Gaussian(static_cast<size_t>(rows * cols), 3);
  InputStats s;
  std::mt19937 rng(7);
  std::lognormal_distribution<double> ln(0.0, 1.5);
  for (int64_t c = 0; c < cols; ++c) s.diag.push_back(ln(rng));
  EncoderOptions o;
  o.kind = EncoderKind::kWeighted;
  for (int bits : {2, 3, 4}) {
    auto rq = QuantizeAffine(w, rows, cols, bits, 64, DType::kBF16, 1);
    auto wq = EncodeAffine(w, rows, cols, *FindAffineFormat(bits, 64), DType::kBF16, o, &s, 2);
    ASSERT_TRUE(rq.ok() && wq.ok());
    const double er = DiagObjective(w, *Dequantize(*rq), rows, cols, s.diag);
    const double ew = DiagObjective(w, *Dequantize(*wq), rows, cols, s.diag);
    EXPECT_LE(ew, er * (1 + 1e-12)) << bits;
    EXPECT_LT(ew, 0.9 * er) << bits;  // the search is worth something on skewed importances
  }
}

TEST(Encoders, WeightedCodesAreBruteForceNearestForStoredParameters) {
  const int64_t rows = 8, cols = 64;
  const auto w = Gaussian(static_cast<size_t>(rows * cols), 4);
  InputStats s;
  for (int64_t c = 0; c < cols; ++c) s.diag.push_back(1.0 + (c % 5));
  EncoderOptions o;
  o.kind = EncoderKind::kWeighted;
  auto q = EncodeAffine(w, rows, cols, *FindAffineFormat(3, 32), DType::kBF16, o, &s, 1);
  ASSERT_TRUE(q.ok());
  const auto deq = *Dequantize(*q);
  int worse = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = r * (cols / 32) + c / 32;
      const float sc = q->Scale(g), bi = q->Bias(g);
      double best = 1e300;
      for (int k = 0; k < 8; ++k) {
        const float v = Bf16ToF32(F32ToBf16(Bf16ToF32(F32ToBf16(static_cast<float>(k) * sc)) + bi));
        best = std::min(best,
                        std::fabs(static_cast<double>(w[static_cast<size_t>(r * cols + c)]) - v));
      }
      const double got = std::fabs(static_cast<double>(w[static_cast<size_t>(r * cols + c)]) -
                                   deq[static_cast<size_t>(r * cols + c)]);
      if (got > best + 1e-6 * std::fabs(sc)) ++worse;
    }
  }
  EXPECT_EQ(worse, 0);
}

TEST(Encoders, GptqWithIdentityHessianIsRtn) {
  const int64_t rows = 70, cols = 256;  // a partial row block at the end
  const auto w = Gaussian(static_cast<size_t>(rows * cols), 5);
  InputStats s;
  s.diag.assign(static_cast<size_t>(cols), 1.0);
  s.gram.assign(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) s.gram[static_cast<size_t>(i * cols + i)] = 1.0;
  EncoderOptions o;
  o.kind = EncoderKind::kGptq;
  for (int bits : {2, 4, 8}) {
    for (bool act : {false, true}) {
      o.gptq_act_order = act;
      auto a = EncodeAffine(w, rows, cols, *FindAffineFormat(bits, 64), DType::kBF16, o, &s, 2);
      auto b = QuantizeAffine(w, rows, cols, bits, 64, DType::kBF16, 1);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status().ToString();
      ExpectSameTensor(*a, *b);
    }
  }
}

/// Direct GPTQ reference in the OBS form: after quantizing column i, the remaining columns get
/// W[:, j] −= (w_i − ŵ_i) · Hinv[i, j] / Hinv[i, i], then Hinv loses row/column i
/// (Hinv −= Hinv[:, i] Hinv[i, :] / Hinv[i, i]). Double precision, no blocking, no Cholesky.
std::vector<float> GptqReference(std::vector<float> w, int64_t rows, int64_t cols, int bits,
                                 int group, const InputStats& s, double damp) {
  std::vector<double> h = s.gram;
  double mean = 0;
  for (int64_t i = 0; i < cols; ++i) mean += h[static_cast<size_t>(i * cols + i)];
  mean /= static_cast<double>(cols);
  for (int64_t i = 0; i < cols; ++i) h[static_cast<size_t>(i * cols + i)] += damp * mean;
  // Gauss-Jordan inverse.
  std::vector<double> a = h, inv(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; ++i) inv[static_cast<size_t>(i * cols + i)] = 1.0;
  for (int64_t i = 0; i < cols; ++i) {
    const double p = a[static_cast<size_t>(i * cols + i)];
    for (int64_t j = 0; j < cols; ++j) {
      a[static_cast<size_t>(i * cols + j)] /= p;
      inv[static_cast<size_t>(i * cols + j)] /= p;
    }
    for (int64_t k = 0; k < cols; ++k) {
      if (k == i) continue;
      const double f = a[static_cast<size_t>(k * cols + i)];
      for (int64_t j = 0; j < cols; ++j) {
        a[static_cast<size_t>(k * cols + j)] -= f * a[static_cast<size_t>(i * cols + j)];
        inv[static_cast<size_t>(k * cols + j)] -= f * inv[static_cast<size_t>(i * cols + j)];
      }
    }
  }
  std::vector<double> wd(w.begin(), w.end());
  std::vector<float> out(w.size());
  std::vector<float> sc(static_cast<size_t>(rows)), bi(static_cast<size_t>(rows));
  const float nbins = static_cast<float>((1 << bits) - 1);
  for (int64_t i = 0; i < cols; ++i) {
    if (i % group == 0) {
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> gw(static_cast<size_t>(group));
        for (int k = 0; k < group; ++k)
          gw[static_cast<size_t>(k)] =
              static_cast<float>(wd[static_cast<size_t>(r * cols + i + k)]);
        auto q = QuantizeAffine(gw, 1, group, bits, group, DType::kF32, 1);
        sc[static_cast<size_t>(r)] = q->Scale(0);
        bi[static_cast<size_t>(r)] = q->Bias(0);
      }
    }
    const double d = inv[static_cast<size_t>(i * cols + i)];
    for (int64_t r = 0; r < rows; ++r) {
      const float wv = static_cast<float>(wd[static_cast<size_t>(r * cols + i)]);
      const float c = std::nearbyint(std::min(
          std::max((wv - bi[static_cast<size_t>(r)]) / sc[static_cast<size_t>(r)], 0.0f), nbins));
      const float v = c * sc[static_cast<size_t>(r)] + bi[static_cast<size_t>(r)];
      out[static_cast<size_t>(r * cols + i)] = v;
      const double e = (wd[static_cast<size_t>(r * cols + i)] - v) / d;
      for (int64_t j = i + 1; j < cols; ++j)
        wd[static_cast<size_t>(r * cols + j)] -= e * inv[static_cast<size_t>(i * cols + j)];
    }
    for (int64_t k = i + 1; k < cols; ++k)
      for (int64_t j = i + 1; j < cols; ++j)
        inv[static_cast<size_t>(k * cols + j)] -=
            inv[static_cast<size_t>(k * cols + i)] * inv[static_cast<size_t>(i * cols + j)] / d;
  }
  return out;
}

TEST(Encoders, GptqMatchesDirectReferenceAndBeatsRtnOnCorrelatedInputs) {
  const int64_t rows = 24, cols = 128, n = 2048;
  const auto w = Gaussian(static_cast<size_t>(rows * cols), 6);
  const auto x = CorrelatedX(n, cols, 9);
  const InputStats s = StatsOf(x, n, cols);
  EncoderOptions o;
  o.kind = EncoderKind::kGptq;
  o.gptq_block = 32;
  auto gq = EncodeAffine(w, rows, cols, *FindAffineFormat(3, 32), DType::kF32, o, &s, 2);
  ASSERT_TRUE(gq.ok()) << gq.status().ToString();
  const auto gdeq = *Dequantize(*gq);
  const auto ref = GptqReference(w, rows, cols, 3, 32, s, o.gptq_damp);
  int64_t same = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    same += std::fabs(ref[i] - gdeq[i]) <= 1e-5f * (1 + std::fabs(ref[i]));
  EXPECT_GE(static_cast<double>(same) / static_cast<double>(ref.size()),
            0.98);  // float vs double ties only
  const double e_ref = OutputError(w, ref, rows, cols, x, n);
  const double e_gptq = OutputError(w, gdeq, rows, cols, x, n);
  EXPECT_NEAR(e_gptq / e_ref, 1.0, 0.03);

  auto rq = QuantizeAffine(w, rows, cols, 3, 32, DType::kF32, 1);
  const double e_rtn = OutputError(w, *Dequantize(*rq), rows, cols, x, n);
  EXPECT_LT(e_gptq, 0.8 * e_rtn);
  // Act-order and a bf16 scale dtype are still much better than RTN.
  o.gptq_act_order = true;
  auto ga = EncodeAffine(w, rows, cols, *FindAffineFormat(3, 32), DType::kBF16, o, &s, 2);
  ASSERT_TRUE(ga.ok());
  auto rb = QuantizeAffine(w, rows, cols, 3, 32, DType::kBF16, 1);
  EXPECT_LT(OutputError(w, *Dequantize(*ga), rows, cols, x, n),
            0.8 * OutputError(w, *Dequantize(*rb), rows, cols, x, n));

  // MeasureWeightedError is the direct ‖(W−Ŵ)X‖² / ‖WX‖² (H = XᵀX / n).
  auto me = MeasureWeightedError(w, gdeq, rows, cols, s, 2);
  ASSERT_TRUE(me.ok());
  const std::vector<float> zero(w.size(), 0.0f);
  EXPECT_NEAR(me->output_error * static_cast<double>(n), e_gptq, 1e-9 * e_gptq);
  EXPECT_NEAR(me->output_power * static_cast<double>(n), OutputError(w, zero, rows, cols, x, n),
              1e-6);
  EXPECT_NEAR(me->Relative(), std::sqrt(e_gptq / OutputError(w, zero, rows, cols, x, n)), 1e-9);
}

TEST(Encoders, GptqOnDiagonalOnlyStatsAndDeadInputs) {
  const int64_t rows = 16, cols = 128;
  const auto w = Gaussian(static_cast<size_t>(rows * cols), 8);
  InputStats s;
  for (int64_t c = 0; c < cols; ++c) s.diag.push_back(c % 10 == 0 ? 0.0 : 1.0 + c);
  EncoderOptions o;
  o.kind = EncoderKind::kGptq;
  auto q = EncodeAffine(w, rows, cols, *FindAffineFormat(4, 64), DType::kBF16, o, &s, 1);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  // A diagonal H propagates nothing: RTN codes.
  ExpectSameTensor(*q, *QuantizeAffine(w, rows, cols, 4, 64, DType::kBF16, 1));
  EXPECT_EQ(EffectiveEncoder(EncoderKind::kGptq, nullptr), EncoderKind::kRtn);
  InputStats empty;
  EXPECT_EQ(EffectiveEncoder(EncoderKind::kWeighted, &empty), EncoderKind::kRtn);
  s.diag.pop_back();
  EXPECT_FALSE(EncodeAffine(w, rows, cols, *FindAffineFormat(4, 64), DType::kBF16, o, &s, 1).ok());
}

TEST(Encoders, IdenticalForAnyThreadCount) {
  const int64_t rows = 100, cols = 256, n = 512;
  const auto w = Gaussian(static_cast<size_t>(rows * cols), 10);
  const InputStats s = StatsOf(CorrelatedX(n, cols, 11), n, cols);
  for (EncoderKind k : {EncoderKind::kWeighted, EncoderKind::kGptq}) {
    for (bool act : {false, true}) {
      EncoderOptions o;
      o.kind = k;
      o.gptq_act_order = act;
      auto a = EncodeAffine(w, rows, cols, *FindAffineFormat(4, 64), DType::kBF16, o, &s, 1);
      auto b = EncodeAffine(w, rows, cols, *FindAffineFormat(4, 64), DType::kBF16, o, &s, 4);
      ASSERT_TRUE(a.ok() && b.ok());
      ExpectSameTensor(*a, *b);
      auto ea = MeasureWeightedError(w, *Dequantize(*a), rows, cols, s, 1);
      auto eb = MeasureWeightedError(w, *Dequantize(*b), rows, cols, s, 3);
      EXPECT_EQ(ea->output_error, eb->output_error);
    }
  }
}

}  // namespace
}  // namespace moeq::quant
