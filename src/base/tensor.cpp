// DType tables and float conversion of tensor views.
#include "moeq/base/tensor.h"

#include <cmath>
#include <cstring>

#include "moeq/base/half.h"

namespace moeq {
namespace {

struct DTypeRow {
  DType dtype;
  std::string_view name;
  size_t size;
  bool is_float;
};

constexpr DTypeRow kDTypes[] = {
    {DType::kBool, "BOOL", 1, false}, {DType::kU8, "U8", 1, false},
    {DType::kI8, "I8", 1, false},     {DType::kF8E4M3, "F8_E4M3", 1, true},
    {DType::kI16, "I16", 2, false},   {DType::kU16, "U16", 2, false},
    {DType::kF16, "F16", 2, true},    {DType::kBF16, "BF16", 2, true},
    {DType::kI32, "I32", 4, false},   {DType::kU32, "U32", 4, false},
    {DType::kF32, "F32", 4, true},    {DType::kI64, "I64", 8, false},
    {DType::kU64, "U64", 8, false},   {DType::kF64, "F64", 8, true},
};

const DTypeRow& Row(DType d) { return kDTypes[static_cast<size_t>(d)]; }

template <class T>
T Load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

float ElementToF32(DType d, const std::byte* p) {
  switch (d) {
    case DType::kBool:
      return Load<uint8_t>(p) ? 1.0f : 0.0f;
    case DType::kU8:
      return static_cast<float>(Load<uint8_t>(p));
    case DType::kI8:
      return static_cast<float>(Load<int8_t>(p));
    case DType::kF8E4M3:
      return Fp8E4M3ToF32(Load<uint8_t>(p));
    case DType::kI16:
      return static_cast<float>(Load<int16_t>(p));
    case DType::kU16:
      return static_cast<float>(Load<uint16_t>(p));
    case DType::kF16:
      return F16ToF32(Load<uint16_t>(p));
    case DType::kBF16:
      return Bf16ToF32(Load<uint16_t>(p));
    case DType::kI32:
      return static_cast<float>(Load<int32_t>(p));
    case DType::kU32:
      return static_cast<float>(Load<uint32_t>(p));
    case DType::kF32:
      return Load<float>(p);
    case DType::kI64:
      return static_cast<float>(Load<int64_t>(p));
    case DType::kU64:
      return static_cast<float>(Load<uint64_t>(p));
    case DType::kF64:
      return static_cast<float>(Load<double>(p));
  }
  return 0.0f;
}

}  // namespace

std::string_view DTypeName(DType dtype) { return Row(dtype).name; }

std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& r : kDTypes) {
    if (r.name == name) return r.dtype;
  }
  return std::nullopt;
}

size_t DTypeSize(DType dtype) { return Row(dtype).size; }
bool IsFloatDType(DType dtype) { return Row(dtype).is_float; }

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t TensorInfo::nbytes() const { return static_cast<uint64_t>(numel()) * DTypeSize(dtype); }

std::string ShapeString(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string TensorInfo::ShapeString() const { return moeq::ShapeString(shape); }

Status ConvertToF32(const TensorView& view, int64_t first, int64_t n, float* out) {
  if (!view.info) return Status::Internal("ConvertToF32: empty view");
  const size_t es = DTypeSize(view.info->dtype);
  if (first < 0 || n < 0 || static_cast<uint64_t>(first + n) * es > view.data.size()) {
    return Status::Internal("tensor '" + view.info->name + "': conversion range out of bounds");
  }
  const std::byte* p = view.data.data() + static_cast<size_t>(first) * es;
  const DType d = view.info->dtype;
  if (d == DType::kBF16) {
    for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToF32(Load<uint16_t>(p + 2 * i));
  } else if (d == DType::kF32) {
    std::memcpy(out, p, static_cast<size_t>(n) * 4);
  } else if (d == DType::kF16) {
    for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(Load<uint16_t>(p + 2 * i));
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = ElementToF32(d, p + i * es);
  }
  return Status::Ok();
}

Result<std::vector<float>> ToF32(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.numel()));
  MOEQ_RETURN_IF_ERROR(ConvertToF32(view, 0, view.numel(), out.data()));
  return out;
}

Status CheckFinite(const TensorView& view, std::string_view file) {
  if (!view.info || !IsFloatDType(view.info->dtype)) return Status::Ok();
  constexpr int64_t kBlock = 4096;
  std::vector<float> buf(kBlock);
  const int64_t n = view.numel();
  for (int64_t s = 0; s < n; s += kBlock) {
    const int64_t m = std::min(kBlock, n - s);
    MOEQ_RETURN_IF_ERROR(ConvertToF32(view, s, m, buf.data()));
    for (int64_t i = 0; i < m; ++i) {
      if (!std::isfinite(buf[static_cast<size_t>(i)])) {
        return Status::Corruption(std::string(file) + ": tensor '" + view.info->name +
                                  "': element " + std::to_string(s + i) + " is " +
                                  (std::isnan(buf[static_cast<size_t>(i)]) ? "NaN" : "Inf"));
      }
    }
  }
  return Status::Ok();
}

}  // namespace moeq
