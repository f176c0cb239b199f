// The plan-format → ggml-type mapping of the GGUF writer (docs/gguf.md).
#include "moeq/export/gguf_writer.h"

namespace moeq {

GgmlTypeChoice ChooseGgmlType(const quant::FormatTraits* format, DType source, int64_t ne0) {
  GgmlType preferred;
  if (format == nullptr) {
    preferred = source == DType::kF16    ? GgmlType::kF16
                : source == DType::kBF16 ? GgmlType::kBF16
                                         : GgmlType::kF32;
    if (source == DType::kF8E4M3) preferred = GgmlType::kBF16;
  } else if (!format->is_affine()) {
    preferred = format->float_dtype == DType::kF16    ? GgmlType::kF16
                : format->float_dtype == DType::kBF16 ? GgmlType::kBF16
                                                      : GgmlType::kF32;
  } else {
    switch (format->bits) {
      case 8:
        preferred = GgmlType::kQ8_0;
        break;
      case 6:
        preferred = GgmlType::kQ6_K;
        break;
      case 5:
        preferred = format->group_size <= 32 ? GgmlType::kQ5_1 : GgmlType::kQ5_K;
        break;
      case 4:
        preferred = format->group_size <= 32 ? GgmlType::kQ4_1 : GgmlType::kQ4_K;
        break;
      case 3:
        preferred = GgmlType::kQ3_K;
        break;
      default:
        preferred = GgmlType::kQ2_K;
        break;
    }
  }
  return GgmlTypeForShape(preferred, source, ne0);
}

GgmlTypeChoice GgmlTypeForShape(GgmlType preferred, DType source, int64_t ne0) {
  const GgmlType half = source == DType::kF16 ? GgmlType::kF16 : GgmlType::kBF16;
  GgmlTypeChoice choice{preferred, preferred, false};
  auto fits = [ne0](GgmlType t) { return ne0 % FindGgmlType(t)->block_size == 0; };
  if (fits(preferred)) return choice;
  choice.fallback = true;
  GgmlType next = half;
  switch (preferred) {
    case GgmlType::kQ6_K:
      next = GgmlType::kQ8_0;
      break;
    case GgmlType::kQ5_K:
      next = GgmlType::kQ5_1;
      break;
    case GgmlType::kQ4_K:
      next = GgmlType::kQ4_1;
      break;
    case GgmlType::kQ3_K:
    case GgmlType::kQ2_K:
      next = GgmlType::kQ4_0;
      break;
    default:
      break;
  }
  choice.type = fits(next) ? next : half;
  return choice;
}

}  // namespace moeq
