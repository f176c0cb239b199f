// MLX affine quantization drivers: parameter checks, row-block threading over the kernels,
// QuantizedTensor accessors, dequantization and generic bit packing. The per-row math lives in
// affine_kernels.h (compiled here for the baseline ISA).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "moeq/base/cpu_features.h"
#include "moeq/base/half.h"
#include "moeq/base/parallel.h"
#include "moeq/quant/quantizer.h"
#include "quant/affine_internal.h"
#include "quant/row_blocks.h"

#define MOEQ_QUANT_ISA portable
#include "quant/affine_kernels.h"
#undef MOEQ_QUANT_ISA

namespace moeq::quant {
namespace internal {

const KernelSet& PortableKernels() {
  static const KernelSet kSet = {"portable", &portable::QuantizeRows, &portable::DequantizeRows};
  return kSet;
}

const KernelSet& ActiveKernels() {
  static const KernelSet* const kActive = [] {
    // The library's one selection (MOEQ_ISA; MOEQ_QUANT_KERNELS is the deprecated older name):
    // the best kernel set at or below the selected instruction set.
    const KernelSet* avx2 = Avx2Kernels();
    const bool want_avx2 = SelectIsa("MOEQ_QUANT_KERNELS") >= Isa::kAvx2;
    return (avx2 != nullptr && want_avx2) ? avx2 : &PortableKernels();
  }();
  return *kActive;
}

Status NonFiniteError(const float* row, int64_t row_index, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) {
    if (!std::isfinite(row[c])) {
      return Status::InvalidArgument(
          "row " + std::to_string(row_index) + ", column " + std::to_string(c) + ": weight is " +
          (std::isnan(row[c]) ? "NaN" : "Inf") + "; only finite weights can be quantized");
    }
  }
  return Status::Internal("row " + std::to_string(row_index) + " reported non-finite but is not");
}

Result<QuantizedTensor> QuantizeRowBlocks(std::span<const int64_t> shape, int bits, int group_size,
                                          DType scale_dtype, const RowSource& source, int threads) {
  QuantizedTensor q;
  q.shape.assign(shape.begin(), shape.end());
  q.bits = bits;
  q.group_size = group_size;
  q.scale_dtype = scale_dtype;
  const int64_t rows = q.rows(), cols = q.cols();
  const ScaleKind kind = ScaleKindOf(scale_dtype);
  const size_t ss = ScaleSize(kind);
  q.packed.assign(static_cast<size_t>(rows * cols * bits / 32), 0u);
  q.scales.assign(static_cast<size_t>(q.num_groups()) * ss, std::byte{0});
  q.biases.assign(q.scales.size(), std::byte{0});

  const RowBlocks blocks(rows, cols);
  std::vector<Status> errors(static_cast<size_t>(blocks.count()));
  const KernelSet& kernels = ActiveKernels();
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
        QuantizeRowsArgs args;
        args.w = *w;
        args.rows = n;
        args.cols = cols;
        args.bits = bits;
        args.group_size = group_size;
        args.scale_kind = kind;
        const int64_t g0 = first * (cols / group_size);
        args.packed = q.packed.data() + first * cols * bits / 32;
        args.scales = q.scales.data() + static_cast<size_t>(g0) * ss;
        args.biases = q.biases.data() + static_cast<size_t>(g0) * ss;
        const int64_t bad = kernels.quantize_rows(args);
        if (bad >= 0)
          errors[static_cast<size_t>(b)] = NonFiniteError(*w + bad * cols, first + bad, cols);
      },
      threads);
  for (auto& st : errors) MOEQ_RETURN_IF_ERROR(st);
  return q;
}

}  // namespace internal

int64_t QuantizedTensor::rows() const {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

int64_t QuantizedTensor::cols() const { return shape.empty() ? 0 : shape.back(); }

int64_t QuantizedTensor::num_groups() const {
  return group_size > 0 ? rows() * (cols() / group_size) : 0;
}

std::vector<int64_t> QuantizedTensor::PackedShape() const {
  std::vector<int64_t> s = shape;
  if (!s.empty()) s.back() = s.back() * bits / 32;
  return s;
}

std::vector<int64_t> QuantizedTensor::ScalesShape() const {
  std::vector<int64_t> s = shape;
  if (!s.empty() && group_size > 0) s.back() = s.back() / group_size;
  return s;
}

namespace {

uint32_t ElementBits(const std::vector<std::byte>& v, DType dtype, int64_t i) {
  if (dtype == DType::kF32) {
    uint32_t u;
    std::memcpy(&u, v.data() + static_cast<size_t>(i) * 4, 4);
    return u;
  }
  uint16_t h;
  std::memcpy(&h, v.data() + static_cast<size_t>(i) * 2, 2);
  return h;
}

float BitsToValue(uint32_t bits, DType dtype) {
  if (dtype == DType::kF32) return BitsToF32(bits);
  if (dtype == DType::kF16) return F16ToF32(static_cast<uint16_t>(bits));
  return Bf16ToF32(static_cast<uint16_t>(bits));
}

}  // namespace

uint32_t QuantizedTensor::ScaleBits(int64_t group) const {
  return ElementBits(scales, scale_dtype, group);
}
uint32_t QuantizedTensor::BiasBits(int64_t group) const {
  return ElementBits(biases, scale_dtype, group);
}
float QuantizedTensor::Scale(int64_t group) const {
  return BitsToValue(ScaleBits(group), scale_dtype);
}
float QuantizedTensor::Bias(int64_t group) const {
  return BitsToValue(BiasBits(group), scale_dtype);
}

uint64_t QuantizedTensor::nbytes() const {
  return packed.size() * sizeof(uint32_t) + scales.size() + biases.size();
}

Status CheckAffineParams(std::span<const int64_t> shape, int bits, int group_size,
                         DType scale_dtype) {
  const FormatTraits* f = FindAffineFormat(bits, group_size);
  if (f == nullptr) {
    bool bits_ok = false;
    for (int b : kAffineBits) bits_ok |= (b == bits);
    if (!bits_ok) {
      return Status::InvalidArgument("shape " + ShapeString(shape) + ": bits " +
                                     std::to_string(bits) +
                                     " is not supported (MLX affine bits: 2, 3, 4, 5, 6, 8)");
    }
    return Status::InvalidArgument("shape " + ShapeString(shape) + ": group size " +
                                   std::to_string(group_size) +
                                   " is not supported (MLX affine group sizes: 32, 64, 128)");
  }
  if (scale_dtype != DType::kBF16 && scale_dtype != DType::kF16 && scale_dtype != DType::kF32) {
    return Status::InvalidArgument("scale dtype " + std::string(DTypeName(scale_dtype)) +
                                   " is not supported (BF16, F16 or F32)");
  }
  if (shape.size() < 2) {
    return Status::InvalidArgument("shape " + ShapeString(shape) +
                                   ": affine quantization needs at least 2 dimensions");
  }
  for (int64_t d : shape) {
    if (d < 0)
      return Status::InvalidArgument("shape " + ShapeString(shape) + ": negative dimension");
  }
  if (shape.back() % group_size != 0) {
    return Status::InvalidArgument(
        "shape " + ShapeString(shape) + ": last dimension " + std::to_string(shape.back()) +
        " is not a multiple of group size " + std::to_string(group_size) + " (bits " +
        std::to_string(bits) + ")");
  }
  return Status::Ok();
}

Result<QuantizedTensor> QuantizeAffine(std::span<const float> w, int64_t rows, int64_t cols,
                                       int bits, int group_size, DType scale_dtype, int threads) {
  const int64_t shape[2] = {rows, cols};
  MOEQ_RETURN_IF_ERROR(CheckAffineParams(shape, bits, group_size, scale_dtype));
  if (static_cast<int64_t>(w.size()) != rows * cols) {
    return Status::InvalidArgument("QuantizeAffine: shape " + ShapeString(shape) + " needs " +
                                   std::to_string(rows * cols) + " floats, got " +
                                   std::to_string(w.size()));
  }
  internal::RowSource source = [&](int64_t first, int64_t,
                                   std::vector<float>*) -> Result<const float*> {
    return w.data() + first * cols;
  };
  return internal::QuantizeRowBlocks(shape, bits, group_size, scale_dtype, source, threads);
}

Result<QuantizedTensor> QuantizeTensor(const TensorView& view, const FormatTraits& format,
                                       int threads) {
  if (view.info == nullptr) return Status::InvalidArgument("QuantizeTensor: empty tensor view");
  const TensorInfo& info = *view.info;
  auto fail = [&](const Status& st) { return st.WithContext("tensor '" + info.name + "'"); };
  if (!IsFloatDType(info.dtype)) {
    return fail(Status::InvalidArgument("dtype " + std::string(DTypeName(info.dtype)) +
                                        " is not a float type"));
  }
  if (!format.is_affine()) {
    return fail(
        Status::InvalidArgument("format " + std::string(format.name) + " is not an affine format"));
  }
  const DType scale_dtype = format.ScaleDType(info.dtype);
  Status st = CheckAffineParams(info.shape, format.bits, format.group_size, scale_dtype);
  if (!st.ok()) return fail(st);
  if (static_cast<uint64_t>(view.data.size()) != info.nbytes()) {
    return fail(Status::InvalidArgument("view holds " + std::to_string(view.data.size()) +
                                        " bytes, shape needs " + std::to_string(info.nbytes())));
  }
  const int64_t cols = info.shape.back();
  internal::RowSource source = internal::ViewRowSource(view, cols);
  auto q = internal::QuantizeRowBlocks(info.shape, format.bits, format.group_size, scale_dtype,
                                       source, threads);
  if (!q.ok()) return fail(q.status());
  return q;
}

Status DequantizeRows(const QuantizedTensor& q, int64_t first_row, int64_t n_rows,
                      std::span<float> out) {
  MOEQ_RETURN_IF_ERROR(CheckAffineParams(q.shape, q.bits, q.group_size, q.scale_dtype));
  const int64_t rows = q.rows(), cols = q.cols();
  const size_t ss = internal::ScaleSize(internal::ScaleKindOf(q.scale_dtype));
  if (q.packed.size() != static_cast<size_t>(rows * cols * q.bits / 32) ||
      q.scales.size() != static_cast<size_t>(q.num_groups()) * ss ||
      q.biases.size() != q.scales.size()) {
    return Status::InvalidArgument("quantized tensor of shape " + ShapeString(q.shape) +
                                   ": buffer sizes do not match bits " + std::to_string(q.bits) +
                                   ", group " + std::to_string(q.group_size));
  }
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > rows ||
      static_cast<int64_t>(out.size()) != n_rows * cols) {
    return Status::InvalidArgument("DequantizeRows: rows [" + std::to_string(first_row) + ", " +
                                   std::to_string(first_row + n_rows) + ") of shape " +
                                   ShapeString(q.shape) + " into " + std::to_string(out.size()) +
                                   " floats");
  }
  internal::DequantizeRowsArgs args;
  const int64_t g0 = first_row * (cols / q.group_size);
  args.packed = q.packed.data() + first_row * cols * q.bits / 32;
  args.scales = q.scales.data() + static_cast<size_t>(g0) * ss;
  args.biases = q.biases.data() + static_cast<size_t>(g0) * ss;
  args.rows = n_rows;
  args.cols = cols;
  args.bits = q.bits;
  args.group_size = q.group_size;
  args.scale_kind = internal::ScaleKindOf(q.scale_dtype);
  args.out = out.data();
  internal::ActiveKernels().dequantize_rows(args);
  return Status::Ok();
}

Result<std::vector<float>> Dequantize(const QuantizedTensor& q, int threads) {
  MOEQ_RETURN_IF_ERROR(CheckAffineParams(q.shape, q.bits, q.group_size, q.scale_dtype));
  const int64_t rows = q.rows(), cols = q.cols();
  std::vector<float> out(static_cast<size_t>(rows * cols));
  const internal::RowBlocks blocks(rows, cols);
  std::vector<Status> errors(static_cast<size_t>(blocks.count()));
  ParallelFor(
      blocks.count(),
      [&](int64_t b) {
        const int64_t first = blocks.first_row(b), n = blocks.rows_in(b);
        errors[static_cast<size_t>(b)] = DequantizeRows(
            q, first, n,
            std::span<float>(out.data() + first * cols, static_cast<size_t>(n * cols)));
      },
      threads);
  for (auto& st : errors) MOEQ_RETURN_IF_ERROR(st);
  return out;
}

namespace {

Status CheckPackSizes(size_t n_codes, int bits, size_t n_words) {
  bool bits_ok = false;
  for (int b : kAffineBits) bits_ok |= (b == bits);
  if (!bits_ok) {
    return Status::InvalidArgument("bit packing: bits " + std::to_string(bits) +
                                   " is not supported (2, 3, 4, 5, 6, 8)");
  }
  if (n_codes * static_cast<size_t>(bits) != n_words * 32) {
    return Status::InvalidArgument("bit packing: " + std::to_string(n_codes) + " codes of " +
                                   std::to_string(bits) + " bits do not fill " +
                                   std::to_string(n_words) + " uint32 words");
  }
  return Status::Ok();
}

}  // namespace

// Generic bit-at-a-time-free stream packing, independent of the kernels' chunked Pack32, so
// tests can check one against the other.
Status PackBits(std::span<const uint8_t> codes, int bits, std::span<uint32_t> words) {
  MOEQ_RETURN_IF_ERROR(CheckPackSizes(codes.size(), bits, words.size()));
  std::fill(words.begin(), words.end(), 0u);
  const uint32_t mask = (1u << bits) - 1u;
  for (size_t k = 0; k < codes.size(); ++k) {
    if ((codes[k] & ~mask) != 0) {
      return Status::InvalidArgument("bit packing: code " + std::to_string(k) + " = " +
                                     std::to_string(codes[k]) + " does not fit in " +
                                     std::to_string(bits) + " bits");
    }
    const size_t bit = k * static_cast<size_t>(bits);
    const size_t word = bit / 32, shift = bit % 32;
    words[word] |= static_cast<uint32_t>(codes[k]) << shift;
    if (shift + static_cast<size_t>(bits) > 32) {
      words[word + 1] |= static_cast<uint32_t>(codes[k]) >> (32 - shift);
    }
  }
  return Status::Ok();
}

Status UnpackBits(std::span<const uint32_t> words, int bits, std::span<uint8_t> codes) {
  MOEQ_RETURN_IF_ERROR(CheckPackSizes(codes.size(), bits, words.size()));
  const uint32_t mask = (1u << bits) - 1u;
  for (size_t k = 0; k < codes.size(); ++k) {
    const size_t bit = k * static_cast<size_t>(bits);
    const size_t word = bit / 32, shift = bit % 32;
    uint32_t v = words[word] >> shift;
    if (shift + static_cast<size_t>(bits) > 32) v |= words[word + 1] << (32 - shift);
    codes[k] = static_cast<uint8_t>(v & mask);
  }
  return Status::Ok();
}

std::string_view ActiveKernelName() { return internal::ActiveKernels().name; }

}  // namespace moeq::quant
