// Internal helpers of the sensitivity analysis (not part of the public API).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "moeq/base/status.h"

namespace moeq::analyze::internal {

/// Rows per work item of the per-tensor parallel loops: fixed by the shape only, so every
/// floating-point reduction is the same for any thread count.
int64_t RowsPerBlock(int64_t cols);

/// Fills `out` (n * cols floats) with rows [first, first + n) of the reconstruction Ŵ.
using RowFetcher = std::function<Status(int64_t first, int64_t n, std::span<float> out)>;

/// NoiseAmplification with Ŵ produced block by block by `fetch_hat` (no full-size copy).
Result<double> NoiseAmplificationRows(std::span<const float> w, const RowFetcher& fetch_hat,
                                      int64_t rows, int64_t cols, std::span<const float> scale,
                                      int probes, uint64_t seed, int threads);

}  // namespace moeq::analyze::internal
