// Encoders of the MLX affine layout: rtn (QuantizeAffine), importance-weighted scale/bias
// search, and GPTQ error-compensating rounding. See include/moeq/encoders.h for the maths.
#include "moeq/quant/encoders.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "encoders_internal.h"
#include "moeq/base/half.h"
#include "moeq/base/parallel.h"

// MLX dequantizes with a separate multiply and add (each rounded to the scale dtype); no fma.
#pragma GCC optimize("fp-contract=off")

namespace moeq::quant {
namespace {

/// Rows per work item: fixed (never depends on the thread count).
constexpr int64_t kEncodeRows = 32;

float RoundTo(DType d, float x) {
  if (d == DType::kF32) return x;
  if (d == DType::kF16) return F16ToF32(F32ToF16(x));
  return Bf16ToF32(F32ToBf16(x));
}

void StoreParam(DType d, float v, std::byte* p) {
  if (d == DType::kF32) {
    std::memcpy(p, &v, 4);
    return;
  }
  const uint16_t h = d == DType::kF16 ? F32ToF16(v) : F32ToBf16(v);
  std::memcpy(p, &h, 2);
}

size_t ParamSize(DType d) { return d == DType::kF32 ? 4 : 2; }

/// MLX CPU dequantization of one code: R(R(q·s) + b).
inline float Dequant(DType d, float q, float s, float b) {
  const float t = RoundTo(d, q * s);
  return RoundTo(d, t + b);
}

inline float Code(float w, float s, float b, float nbins) {
  const float x = (w - b) / s;
  return std::nearbyint(std::min(std::max(x, 0.0f), nbins));
}

/// MLX's RTN scale and bias of one group (float32, not yet rounded to the scale dtype).
void RtnParams(const float* wg, int g, int bits, float* scale, float* bias) {
  float lo = wg[0], hi = wg[0];
  for (int i = 1; i < g; ++i) {
    lo = std::min(lo, wg[i]);
    hi = std::max(hi, wg[i]);
  }
  const float nbins = static_cast<float>((1 << bits) - 1);
  const bool mask = std::fabs(lo) > std::fabs(hi);
  float s = (hi - lo) / nbins;
  s = s < 1e-7f ? 1e-7f : s;
  s = mask ? s : -s;
  const float edge = mask ? lo : hi;
  const float q0 = std::nearbyint(edge / s);
  float b = 0.0f;
  if (q0 != 0.0f) {
    s = edge / q0;
    b = edge;
  }
  *scale = s;
  *bias = b;
}

/// Output of one row block: codes (original column order) and stored scale/bias per group.
struct BlockOut {
  std::vector<uint8_t> codes;      // [n, cols]
  std::vector<float> scale, bias;  // [n, groups], stored values
};

Result<QuantizedTensor> Assemble(std::span<const int64_t> shape, int bits, int group, DType sd,
                                 int64_t rows, int64_t cols, const std::vector<BlockOut>& blocks) {
  QuantizedTensor q;
  q.shape.assign(shape.begin(), shape.end());
  q.bits = bits;
  q.group_size = group;
  q.scale_dtype = sd;
  const int64_t words = cols * bits / 32, groups = cols / group;
  const size_t ps = ParamSize(sd);
  q.packed.assign(static_cast<size_t>(rows * words), 0u);
  q.scales.assign(static_cast<size_t>(rows * groups) * ps, std::byte{0});
  q.biases.assign(q.scales.size(), std::byte{0});
  for (size_t bi = 0; bi < blocks.size(); ++bi) {
    const BlockOut& b = blocks[bi];
    const int64_t r0 = static_cast<int64_t>(bi) * kEncodeRows;
    const int64_t n = static_cast<int64_t>(b.codes.size()) / cols;
    for (int64_t r = 0; r < n; ++r) {
      MOEQ_RETURN_IF_ERROR(
          PackBits(std::span(b.codes.data() + r * cols, static_cast<size_t>(cols)), bits,
                   std::span(q.packed.data() + (r0 + r) * words, static_cast<size_t>(words))));
      for (int64_t gi = 0; gi < groups; ++gi) {
        const size_t at = static_cast<size_t>((r0 + r) * groups + gi) * ps;
        StoreParam(sd, b.scale[static_cast<size_t>(r * groups + gi)], q.scales.data() + at);
        StoreParam(sd, b.bias[static_cast<size_t>(r * groups + gi)], q.biases.data() + at);
      }
    }
  }
  return q;
}

// ---------------------------------------------------------------- weighted

/// Σ h (w − ŵ)² of a group for stored parameters (s, b); codes written to q.
double GroupError(const float* w, const double* h, int g, DType sd, float s, float b, float nbins,
                  uint8_t* q) {
  double e = 0;
  for (int i = 0; i < g; ++i) {
    const float c = Code(w[i], s, b, nbins);
    q[i] = static_cast<uint8_t>(c);
    const double d = static_cast<double>(w[i]) - Dequant(sd, c, s, b);
    e += h[i] * d * d;
  }
  return e;
}

void WeightedGroup(const float* w, const double* h, int g, int bits, DType sd,
                   const EncoderOptions& o, uint8_t* codes, float* scale_out, float* bias_out) {
  const float nbins = static_cast<float>((1 << bits) - 1);
  // RTN candidate: codes with the float32 parameters (as MLX), error with the stored ones.
  float s, b;
  RtnParams(w, g, bits, &s, &b);
  const float s_st = RoundTo(sd, s), b_st = RoundTo(sd, b);
  double best = 0;
  for (int i = 0; i < g; ++i) {
    const float c = Code(w[i], s, b, nbins);
    codes[i] = static_cast<uint8_t>(c);
    const double d = static_cast<double>(w[i]) - Dequant(sd, c, s_st, b_st);
    best += h[i] * d * d;
  }
  *scale_out = s_st;
  *bias_out = b_st;
  if (o.weighted_steps <= 0 || !(best > 0)) return;

  float lo = w[0], hi = w[0];
  for (int i = 1; i < g; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  const double range = static_cast<double>(hi) - lo;
  if (!(range > 0)) return;
  std::vector<uint8_t> cand(static_cast<size_t>(g));
  auto consider = [&](float cs, float cb) {
    const float ss = RoundTo(sd, cs), bs = RoundTo(sd, cb);
    if (!(ss != 0.0f) || !std::isfinite(ss) || !std::isfinite(bs)) return;
    const double e = GroupError(w, h, g, sd, ss, bs, nbins, cand.data());
    if (e < best) {
      best = e;
      std::copy(cand.begin(), cand.end(), codes);
      *scale_out = ss;
      *bias_out = bs;
    }
  };
  auto refit = [&](const uint8_t* q) {
    // argmin over (s, b) of Σ h (w − s q − b)²: 2×2 normal equations.
    double shqq = 0, shq = 0, sh = 0, shqw = 0, shw = 0;
    for (int i = 0; i < g; ++i) {
      const double qi = q[i], wi = w[i];
      shqq += h[i] * qi * qi;
      shq += h[i] * qi;
      sh += h[i];
      shqw += h[i] * qi * wi;
      shw += h[i] * wi;
    }
    const double det = shqq * sh - shq * shq;
    if (!(std::fabs(det) > 1e-30 * std::max(1.0, shqq * sh))) return;
    const double rs = (shqw * sh - shq * shw) / det;
    const double rb = (shqq * shw - shq * shqw) / det;
    consider(static_cast<float>(rs), static_cast<float>(rb));
  };
  refit(codes);  // refit of the RTN codes
  const double step = o.weighted_max_shrink / o.weighted_steps;
  for (int a = 0; a <= o.weighted_steps; ++a) {
    for (int c = 0; c <= o.weighted_steps; ++c) {
      const double l2 = lo + a * step * range, h2 = hi - c * step * range;
      if (!(h2 > l2)) continue;
      const float cs = static_cast<float>((h2 - l2) / nbins), cb = static_cast<float>(l2);
      const float ss = RoundTo(sd, cs);
      if (!(ss != 0.0f)) continue;
      consider(cs, cb);  // leaves the candidate's codes in `cand`
      refit(cand.data());
    }
  }
}

// ---------------------------------------------------------------- gptq

}  // namespace

namespace internal {

Result<GptqFactor> FactorHessian(const InputStats& st, int64_t cols, const EncoderOptions& o) {
  Eigen::MatrixXd h(cols, cols);
  if (st.has_gram()) {
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) h(i, j) = st.gram[static_cast<size_t>(i * cols + j)];
    h = 0.5 * (h + h.transpose()).eval();
  } else {
    h.setZero();
    for (int64_t i = 0; i < cols; ++i) h(i, i) = st.diag[static_cast<size_t>(i)];
  }
  double mean = 0;
  for (int64_t i = 0; i < cols; ++i) {
    if (!(h(i, i) > 0)) {  // dead input: any weight is as good as another
      h.row(i).setZero();
      h.col(i).setZero();
      h(i, i) = 1.0;
    }
    mean += h(i, i);
  }
  mean /= static_cast<double>(cols);
  GptqFactor f;
  f.perm.resize(static_cast<size_t>(cols));
  std::iota(f.perm.begin(), f.perm.end(), 0);
  if (o.gptq_act_order) {
    std::stable_sort(f.perm.begin(), f.perm.end(), [&](int a, int b) { return h(a, a) > h(b, b); });
  }
  Eigen::MatrixXd hp(cols, cols);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j)
      hp(i, j) = h(f.perm[static_cast<size_t>(i)], f.perm[static_cast<size_t>(j)]);
  // U (upper) with (H + λI)⁻¹ = Uᵀ U, without forming the inverse: with J the reversal
  // permutation and M = chol(J (H + λI) J) (lower), U = J M⁻¹ J (n³/3 for the factor and n³/3
  // for the triangular inverse, instead of an explicit inverse and a second factorisation).
  double damp = o.gptq_damp;
  const Eigen::MatrixXd rev = hp.reverse();  // rows and columns reversed: J A J
  for (int attempt = 0; attempt<6; ++attempt, damp = damp> 0 ? damp * 10 : 1e-6) {
    Eigen::MatrixXd a = rev;
    a.diagonal().array() += damp * mean;
    Eigen::LLT<Eigen::MatrixXd> llt(a);
    if (llt.info() != Eigen::Success) continue;
    Eigen::MatrixXd minv = Eigen::MatrixXd::Identity(cols, cols);
    llt.matrixL().solveInPlace(minv);    // M⁻¹ (lower triangular)
    f.u = minv.reverse().cast<float>();  // J M⁻¹ J (upper triangular)
    bool ok = true;
    for (int64_t i = 0; i < cols && ok; ++i) ok = std::isfinite(f.u(i, i)) && f.u(i, i) > 0;
    if (ok) return f;
  }
  return Status::InvalidArgument(
      "gptq: the input Gram matrix is not positive definite even with dampening " +
      std::to_string(damp));
}

}  // namespace internal

namespace {

using internal::FactorHessian;
using internal::GptqFactor;

void GptqBlock(const float* w, int64_t n, int64_t cols, int bits, int group, DType sd,
               const GptqFactor& f, const EncoderOptions& o, BlockOut* out) {
  const float nbins = static_cast<float>((1 << bits) - 1);
  const int64_t groups = cols / group;
  // W in processing order, column-major (a column of the block is contiguous).
  Eigen::MatrixXf wb(n, cols);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < cols; ++i) wb(r, i) = w[r * cols + f.perm[static_cast<size_t>(i)]];
  std::vector<int64_t> pos(static_cast<size_t>(cols));  // column → processing position
  for (int64_t i = 0; i < cols; ++i) pos[static_cast<size_t>(f.perm[static_cast<size_t>(i)])] = i;
  out->codes.assign(static_cast<size_t>(n * cols), 0);
  out->scale.assign(static_cast<size_t>(n * groups), 0.0f);
  out->bias.assign(out->scale.size(), 0.0f);
  std::vector<float> s_raw(static_cast<size_t>(n * groups)), b_raw(s_raw.size());
  std::vector<char> set(static_cast<size_t>(groups), 0);
  std::vector<float> gw(static_cast<size_t>(group));
  const int64_t bs = std::max(1, o.gptq_block);
  Eigen::MatrixXf err(n, bs);
  for (int64_t c0 = 0; c0 < cols; c0 += bs) {
    const int64_t c1 = std::min(cols, c0 + bs);
    for (int64_t i = c0; i < c1; ++i) {
      const int64_t col = f.perm[static_cast<size_t>(i)];
      const int64_t gi = col / group;
      if (!set[static_cast<size_t>(gi)]) {
        set[static_cast<size_t>(gi)] = 1;
        for (int64_t r = 0; r < n; ++r) {
          for (int k = 0; k < group; ++k)
            gw[static_cast<size_t>(k)] = wb(r, pos[static_cast<size_t>(gi * group + k)]);
          float s, b;
          RtnParams(gw.data(), group, bits, &s, &b);
          const size_t at = static_cast<size_t>(r * groups + gi);
          s_raw[at] = s;
          b_raw[at] = b;
          out->scale[at] = RoundTo(sd, s);
          out->bias[at] = RoundTo(sd, b);
        }
      }
      const float d = f.u(i, i);
      for (int64_t r = 0; r < n; ++r) {
        const size_t at = static_cast<size_t>(r * groups + gi);
        const float wv = wb(r, i);
        const float c = Code(wv, s_raw[at], b_raw[at], nbins);
        out->codes[static_cast<size_t>(r * cols + col)] = static_cast<uint8_t>(c);
        err(r, i - c0) = (wv - Dequant(sd, c, out->scale[at], out->bias[at])) / d;
      }
      const int64_t rest = c1 - i - 1;
      if (rest > 0) {
        wb.middleCols(i + 1, rest).noalias() -= err.col(i - c0) * f.u.row(i).segment(i + 1, rest);
      }
    }
    if (c1 < cols) {
      wb.rightCols(cols - c1).noalias() -=
          err.leftCols(c1 - c0) * f.u.block(c0, c1, c1 - c0, cols - c1);
    }
  }
}

}  // namespace

std::string_view EncoderName(EncoderKind kind) {
  switch (kind) {
    case EncoderKind::kWeighted:
      return "weighted";
    case EncoderKind::kGptq:
      return "gptq";
    case EncoderKind::kRtn:
      break;
  }
  return "rtn";
}

Result<EncoderKind> ParseEncoder(std::string_view name) {
  for (EncoderKind k : {EncoderKind::kRtn, EncoderKind::kWeighted, EncoderKind::kGptq}) {
    if (name == EncoderName(k)) return k;
  }
  return Status::InvalidArgument("unknown encoder '" + std::string(name) +
                                 "' (expected rtn, weighted or gptq)");
}

Result<std::vector<EncoderKind>> ParseEncoderList(std::string_view list) {
  std::vector<EncoderKind> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const std::string_view item = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    MOEQ_ASSIGN_OR_RETURN(EncoderKind k, ParseEncoder(item));
    if (std::find(out.begin(), out.end(), k) != out.end()) {
      return Status::InvalidArgument("encoder list '" + std::string(list) + "': '" +
                                     std::string(item) + "' given twice");
    }
    out.push_back(k);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

EncoderKind EffectiveEncoder(EncoderKind kind, const InputStats* stats) {
  if (kind == EncoderKind::kRtn || stats == nullptr) return EncoderKind::kRtn;
  if (!stats->has_diag() && !stats->has_gram()) return EncoderKind::kRtn;
  if (kind == EncoderKind::kWeighted && !stats->has_diag()) return EncoderKind::kRtn;
  return kind;
}

Result<QuantizedTensor> EncodeAffine(std::span<const float> w, int64_t rows, int64_t cols,
                                     const FormatTraits& format, DType scale_dtype,
                                     const EncoderOptions& options, const InputStats* stats,
                                     int threads) {
  if (!format.is_affine()) {
    return Status::InvalidArgument("EncodeAffine: format " + std::string(format.name) +
                                   " is not affine");
  }
  const int64_t shape[2] = {rows, cols};
  MOEQ_RETURN_IF_ERROR(CheckAffineParams(shape, format.bits, format.group_size, scale_dtype));
  if (static_cast<int64_t>(w.size()) != rows * cols) {
    return Status::InvalidArgument("EncodeAffine: shape " + ShapeString(shape) + " needs " +
                                   std::to_string(rows * cols) + " floats, got " +
                                   std::to_string(w.size()));
  }
  if (stats != nullptr) {
    if ((stats->has_diag() && stats->cols() != cols) ||
        (stats->has_gram() && static_cast<int64_t>(stats->gram.size()) != cols * cols)) {
      return Status::InvalidArgument("EncodeAffine: input statistics for " +
                                     std::to_string(stats->cols()) + " inputs, the weight has " +
                                     std::to_string(cols) + " columns");
    }
  }
  const EncoderKind kind = EffectiveEncoder(options.kind, stats);
  if (kind == EncoderKind::kRtn) {
    return QuantizeAffine(w, rows, cols, format.bits, format.group_size, scale_dtype, threads);
  }
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) {
      return Status::InvalidArgument("row " + std::to_string(static_cast<int64_t>(i) / cols) +
                                     ", column " + std::to_string(static_cast<int64_t>(i) % cols) +
                                     ": weight is not finite");
    }
  }
  const int bits = format.bits, group = format.group_size;
  const int64_t nblocks = (rows + kEncodeRows - 1) / kEncodeRows;
  std::vector<BlockOut> blocks(static_cast<size_t>(nblocks));
  if (kind == EncoderKind::kWeighted) {
    std::vector<double> h = stats->diag;
    for (double& x : h) x = std::isfinite(x) && x > 0 ? x : 0.0;
    const int64_t groups = cols / group;
    ParallelFor(
        nblocks,
        [&](int64_t bi) {
          const int64_t r0 = bi * kEncodeRows, n = std::min(kEncodeRows, rows - r0);
          BlockOut& b = blocks[static_cast<size_t>(bi)];
          b.codes.assign(static_cast<size_t>(n * cols), 0);
          b.scale.assign(static_cast<size_t>(n * groups), 0.0f);
          b.bias.assign(b.scale.size(), 0.0f);
          for (int64_t r = 0; r < n; ++r) {
            for (int64_t gi = 0; gi < groups; ++gi) {
              const size_t at = static_cast<size_t>(r * groups + gi);
              WeightedGroup(w.data() + (r0 + r) * cols + gi * group, h.data() + gi * group, group,
                            bits, scale_dtype, options, b.codes.data() + r * cols + gi * group,
                            &b.scale[at], &b.bias[at]);
            }
          }
        },
        threads);
  } else {
    MOEQ_ASSIGN_OR_RETURN(GptqFactor f, FactorHessian(*stats, cols, options));
    ParallelFor(
        nblocks,
        [&](int64_t bi) {
          const int64_t r0 = bi * kEncodeRows, n = std::min(kEncodeRows, rows - r0);
          GptqBlock(w.data() + r0 * cols, n, cols, bits, group, scale_dtype, f, options,
                    &blocks[static_cast<size_t>(bi)]);
        },
        threads);
  }
  return Assemble(shape, bits, group, scale_dtype, rows, cols, blocks);
}

double WeightedError::Relative() const {
  if (output_power > 0) return std::sqrt(output_error / output_power);
  return output_error > 0 ? std::numeric_limits<double>::infinity() : 0.0;
}

double WeightedError::SqnrDb() const {
  if (!(output_error > 0)) return kSqnrCapDb;
  if (!(output_power > 0)) return -kSqnrCapDb;
  return std::clamp(10.0 * std::log10(output_power / output_error), -kSqnrCapDb, kSqnrCapDb);
}

Result<WeightedError> MeasureWeightedError(std::span<const float> w, std::span<const float> w_hat,
                                           int64_t rows, int64_t cols, const InputStats& st,
                                           int threads) {
  if (static_cast<int64_t>(w.size()) != rows * cols || w_hat.size() != w.size()) {
    return Status::InvalidArgument("MeasureWeightedError: sizes do not match shape [" +
                                   std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
  if (!st.has_diag() && !st.has_gram())
    return Status::InvalidArgument("MeasureWeightedError: no statistics");
  if ((st.has_diag() && st.cols() != cols) ||
      (st.has_gram() && static_cast<int64_t>(st.gram.size()) != cols * cols)) {
    return Status::InvalidArgument("MeasureWeightedError: statistics for " +
                                   std::to_string(st.cols()) + " inputs, the weight has " +
                                   std::to_string(cols) + " columns");
  }
  const int64_t nblocks = (rows + kEncodeRows - 1) / kEncodeRows;
  std::vector<double> err(static_cast<size_t>(nblocks)), pow(static_cast<size_t>(nblocks));
  Eigen::MatrixXd h;
  if (st.has_gram())
    h = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
        st.gram.data(), cols, cols);
  ParallelFor(
      nblocks,
      [&](int64_t bi) {
        const int64_t r0 = bi * kEncodeRows, n = std::min(kEncodeRows, rows - r0);
        double e = 0, p = 0;
        if (st.has_gram()) {
          Eigen::MatrixXd d(n, cols), x(n, cols);
          for (int64_t r = 0; r < n; ++r)
            for (int64_t c = 0; c < cols; ++c) {
              const size_t at = static_cast<size_t>((r0 + r) * cols + c);
              x(r, c) = w[at];
              d(r, c) = static_cast<double>(w[at]) - w_hat[at];
            }
          e = (d * h).cwiseProduct(d).sum();
          p = (x * h).cwiseProduct(x).sum();
        } else {
          for (int64_t r = 0; r < n; ++r)
            for (int64_t c = 0; c < cols; ++c) {
              const size_t at = static_cast<size_t>((r0 + r) * cols + c);
              const double wv = w[at], dv = wv - w_hat[at], hv = st.diag[static_cast<size_t>(c)];
              e += hv * dv * dv;
              p += hv * wv * wv;
            }
        }
        err[static_cast<size_t>(bi)] = e;
        pow[static_cast<size_t>(bi)] = p;
      },
      threads);
  WeightedError out;
  for (int64_t b = 0; b < nblocks; ++b) {
    out.output_error += err[static_cast<size_t>(b)];
    out.output_power += pow[static_cast<size_t>(b)];
  }
  return out;
}

}  // namespace moeq::quant
