// Overflow-checked size arithmetic for everything computed from untrusted counts (safetensors
// shapes and offsets, GGUF dimensions, config.json sizes): a result that does not fit is an
// error, never a wrapped value (docs/reliability.md).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

namespace moeq {

/// a * b, or nullopt when it overflows T (signed or unsigned).
template <class T>
constexpr std::optional<T> CheckedMul(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// a + b, or nullopt when it overflows T.
template <class T>
constexpr std::optional<T> CheckedAdd(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// The product of non-negative dimensions, or nullopt when one is negative or the product
/// exceeds `limit` (default: INT64_MAX).
inline std::optional<int64_t> CheckedProduct(std::span<const int64_t> dims,
                                             int64_t limit = std::numeric_limits<int64_t>::max()) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return std::nullopt;
    auto m = CheckedMul<int64_t>(n, d);
    if (!m || *m > limit) return std::nullopt;
    n = *m;
  }
  return n;
}

/// `v` converted to To when it fits exactly, else nullopt (no narrowing wrap-around).
template <class To, class From>
constexpr std::optional<To> CheckedCast(From v) {
  static_assert(std::is_integral_v<To> && std::is_integral_v<From>);
  if (!std::in_range<To>(v)) return std::nullopt;
  return static_cast<To>(v);
}

}  // namespace moeq
