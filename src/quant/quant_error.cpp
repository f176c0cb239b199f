// Quantization error measurement: quantize → dequantize → error per row block, for one or
// several formats, without materialising a dequantized copy of the tensor.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "moeq/base/half.h"
#include "moeq/base/parallel.h"
#include "moeq/quant/quantizer.h"
#include "quant/affine_internal.h"
#include "quant/row_blocks.h"

namespace moeq::quant {

double ErrorStats::Nrmse() const {
  if (weight_sq_sum == 0.0)
    return error_sq_sum == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(error_sq_sum / weight_sq_sum);
}

double ErrorStats::SqnrDb() const {
  if (error_sq_sum == 0.0) return kSqnrCapDb;
  if (weight_sq_sum == 0.0) return -kSqnrCapDb;
  const double db = 10.0 * std::log10(weight_sq_sum / error_sq_sum);
  return std::max(-kSqnrCapDb, std::min(kSqnrCapDb, db));
}

double ErrorStats::Rmse() const {
  return count > 0 ? std::sqrt(error_sq_sum / static_cast<double>(count)) : 0.0;
}

void ErrorStats::Merge(const ErrorStats& other) {
  weight_sq_sum += other.weight_sq_sum;
  error_sq_sum += other.error_sq_sum;
  max_abs_error = std::max(max_abs_error, other.max_abs_error);
  count += other.count;
  storage_bytes += other.storage_bytes;
}

void AccumulateError(std::span<const float> w, std::span<const float> w_hat, ErrorStats* s) {
  const size_t n = std::min(w.size(), w_hat.size());
  for (size_t i = 0; i < n; ++i) {
    const double a = w[i];
    const double e = a - static_cast<double>(w_hat[i]);
    s->weight_sq_sum += a * a;
    s->error_sq_sum += e * e;
    s->max_abs_error = std::max(s->max_abs_error, std::fabs(e));
  }
  s->count += static_cast<int64_t>(n);
}

ErrorStats CompareTensors(std::span<const float> w, std::span<const float> w_hat) {
  ErrorStats s;
  AccumulateError(w, w_hat, &s);
  return s;
}

namespace {

using internal::ErrorAccum;
using internal::RowBlocks;
using internal::RowSource;

/// Rounds finite `x` to D (BF16, F16 or F32) and back.
template <DType D>
inline float NarrowTo(float x) {
  if constexpr (D == DType::kBF16) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    float r;
    std::memcpy(&r, &u, 4);
    return r;
  } else if constexpr (D == DType::kF16) {
    return F16ToF32(F32ToF16(x));
  } else {
    return x;
  }
}

/// Error of narrowing a block to a float format; same lane structure as the affine kernels.
template <DType D>
void FloatFormatErrorT(const float* w, int64_t n, ErrorAccum* acc) {
  constexpr int kLanes = 8;
  double lw[kLanes] = {}, le[kLanes] = {}, lm[kLanes] = {};
  auto step = [&](int l, float x) {
    const double wv = x;
    const double e = wv - static_cast<double>(NarrowTo<D>(x));
    lw[l] += wv * wv;
    le[l] += e * e;
    const double ae = e < 0 ? -e : e;
    lm[l] = lm[l] < ae ? ae : lm[l];
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) step(l, w[i + l]);
  }
  for (int l = 0; i < n; ++i, ++l) step(l, w[i]);
  for (int l = 0; l < kLanes; ++l) {
    acc->weight_sq += lw[l];
    acc->error_sq += le[l];
    acc->max_abs = std::max(acc->max_abs, lm[l]);
  }
}

void FloatFormatError(const float* w, int64_t n, DType dtype, ErrorAccum* acc) {
  if (dtype == DType::kBF16) return FloatFormatErrorT<DType::kBF16>(w, n, acc);
  if (dtype == DType::kF16) return FloatFormatErrorT<DType::kF16>(w, n, acc);
  FloatFormatErrorT<DType::kF32>(w, n, acc);
}

/// Shared driver: rows × cols floats from `source`, every format in `formats`.
Result<std::vector<ErrorStats>> MeasureRows(const RowSource& source, std::span<const int64_t> shape,
                                            DType source_dtype,
                                            std::span<const FormatTraits* const> formats,
                                            int threads) {
  int64_t rows = 1, cols = 1;
  if (!shape.empty()) {
    cols = shape.back();
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  }
  std::vector<ErrorStats> result(formats.size());
  for (size_t f = 0; f < formats.size(); ++f) {
    const FormatTraits& fmt = *formats[f];
    if (fmt.is_affine()) {
      MOEQ_RETURN_IF_ERROR(
          CheckAffineParams(shape, fmt.bits, fmt.group_size, fmt.ScaleDType(source_dtype))
              .WithContext("format " + std::string(fmt.name)));
    }
    MOEQ_ASSIGN_OR_RETURN(result[f].storage_bytes, fmt.StorageBytes(shape, source_dtype));
    result[f].count = rows * cols;
  }
  if (rows * cols == 0 || formats.empty()) return result;

  const RowBlocks blocks(rows, cols);
  const size_t nf = formats.size();
  std::vector<ErrorAccum> partial(static_cast<size_t>(blocks.count()) * nf);
  std::vector<Status> errors(static_cast<size_t>(blocks.count()));
  const internal::KernelSet& kernels = internal::ActiveKernels();
  ParallelFor(
      blocks.count(),
      [&](int64_t b) {
        const int64_t first = blocks.first_row(b), n = blocks.rows_in(b);
        std::vector<float> scratch;
        auto w = source(first, n, &scratch);
        if (!w.ok()) {
          errors[static_cast<size_t>(b)] = w.status();
          return;
        }
        for (size_t f = 0; f < nf; ++f) {
          const FormatTraits& fmt = *formats[f];
          ErrorAccum* acc = &partial[static_cast<size_t>(b) * nf + f];
          if (!fmt.is_affine()) {
            FloatFormatError(*w, n * cols, fmt.float_dtype, acc);
            if (!std::isfinite(acc->weight_sq)) {  // some weight is Inf or NaN: name it
              for (int64_t r = 0; r < n; ++r) {
                const float* row = *w + r * cols;
                if (!std::all_of(row, row + cols, [](float x) { return std::isfinite(x); })) {
                  errors[static_cast<size_t>(b)] = internal::NonFiniteError(row, first + r, cols);
                  return;
                }
              }
            }
            continue;
          }
          internal::QuantizeRowsArgs args;
          args.w = *w;
          args.rows = n;
          args.cols = cols;
          args.bits = fmt.bits;
          args.group_size = fmt.group_size;
          args.scale_kind = internal::ScaleKindOf(fmt.ScaleDType(source_dtype));
          // Codes are computed but not packed: packing is lossless (and tested), so the error
          // is the same and the hot path skips it.
          args.error = acc;
          const int64_t bad = kernels.quantize_rows(args);
          if (bad >= 0) {
            errors[static_cast<size_t>(b)] =
                internal::NonFiniteError(*w + bad * cols, first + bad, cols);
            return;
          }
        }
      },
      threads);
  for (auto& st : errors) MOEQ_RETURN_IF_ERROR(st);
  // Reduce in block order: the same sums for any thread count.
  for (int64_t b = 0; b < blocks.count(); ++b) {
    for (size_t f = 0; f < nf; ++f) {
      const ErrorAccum& a = partial[static_cast<size_t>(b) * nf + f];
      result[f].weight_sq_sum += a.weight_sq;
      result[f].error_sq_sum += a.error_sq;
      result[f].max_abs_error = std::max(result[f].max_abs_error, a.max_abs);
    }
  }
  return result;
}

Status CheckView(const TensorView& view) {
  if (view.info == nullptr) return Status::InvalidArgument("empty tensor view");
  if (!IsFloatDType(view.info->dtype)) {
    return Status::InvalidArgument("tensor '" + view.info->name + "': dtype " +
                                   std::string(DTypeName(view.info->dtype)) +
                                   " is not a float type");
  }
  if (static_cast<uint64_t>(view.data.size()) != view.info->nbytes()) {
    return Status::InvalidArgument("tensor '" + view.info->name + "': view holds " +
                                   std::to_string(view.data.size()) + " bytes, shape " +
                                   view.info->ShapeString() + " needs " +
                                   std::to_string(view.info->nbytes()));
  }
  return Status::Ok();
}

}  // namespace

Result<ErrorStats> MeasureFormatError(std::span<const float> w, int64_t rows, int64_t cols,
                                      DType source, const FormatTraits& format, int threads) {
  const int64_t shape[2] = {rows, cols};
  if (rows < 0 || cols < 0 || static_cast<int64_t>(w.size()) != rows * cols) {
    return Status::InvalidArgument("MeasureFormatError: shape " + ShapeString(shape) + " needs " +
                                   std::to_string(rows * cols) + " floats, got " +
                                   std::to_string(w.size()));
  }
  RowSource src = [&](int64_t first, int64_t, std::vector<float>*) -> Result<const float*> {
    return w.data() + first * cols;
  };
  const FormatTraits* formats[1] = {&format};
  MOEQ_ASSIGN_OR_RETURN(auto stats, MeasureRows(src, shape, source, formats, threads));
  return stats[0];
}

Result<std::vector<ErrorStats>> MeasureFormatErrors(const TensorView& view,
                                                    std::span<const FormatTraits* const> formats,
                                                    int threads) {
  MOEQ_RETURN_IF_ERROR(CheckView(view));
  const TensorInfo& info = *view.info;
  const int64_t cols = info.shape.empty() ? 1 : info.shape.back();
  auto stats =
      MeasureRows(internal::ViewRowSource(view, cols), info.shape, info.dtype, formats, threads);
  if (!stats.ok()) return stats.status().WithContext("tensor '" + info.name + "'");
  return stats;
}

Result<ErrorStats> MeasureFormatError(const TensorView& view, const FormatTraits& format,
                                      int threads) {
  const FormatTraits* formats[1] = {&format};
  MOEQ_ASSIGN_OR_RETURN(auto stats, MeasureFormatErrors(view, formats, threads));
  return stats[0];
}

}  // namespace moeq::quant
