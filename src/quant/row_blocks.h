// Row-block partitioning shared by the quantizer drivers, and row sources (float spans or
// tensor views converted block by block).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/base/tensor.h"
#include "moeq/quant/quantizer.h"

namespace moeq::quant::internal {

/// Target elements per row block. Fixed, so the partition (and with it every floating-point
/// sum) depends only on the tensor's shape, never on the thread count.
inline constexpr int64_t kBlockElements = 16384;

/// A partition of `rows` rows into blocks of max(1, kBlockElements / cols) rows.
class RowBlocks {
 public:
  RowBlocks(int64_t rows, int64_t cols)
      : rows_(rows),
        rows_per_block_(std::max<int64_t>(1, kBlockElements / std::max<int64_t>(1, cols))) {}
  int64_t count() const { return (rows_ + rows_per_block_ - 1) / rows_per_block_; }
  int64_t first_row(int64_t block) const { return block * rows_per_block_; }
  int64_t rows_in(int64_t block) const {
    return std::min(rows_per_block_, rows_ - block * rows_per_block_);
  }

 private:
  int64_t rows_;
  int64_t rows_per_block_;
};

/// Yields float32 rows [first, first + n): either a pointer into existing data or into
/// `scratch`, which the source may resize and fill.
using RowSource =
    std::function<Result<const float*>(int64_t first, int64_t n, std::vector<float>* scratch)>;

/// Rows of a tensor view of any float dtype with `cols` elements per row, converted to float32.
inline RowSource ViewRowSource(const TensorView& view, int64_t cols) {
  return
      [view, cols](int64_t first, int64_t n, std::vector<float>* scratch) -> Result<const float*> {
        scratch->resize(static_cast<size_t>(n * cols));
        MOEQ_RETURN_IF_ERROR(ConvertToF32(view, first * cols, n * cols, scratch->data()));
        return static_cast<const float*>(scratch->data());
      };
}

/// Quantizes all rows that `source` yields into a new QuantizedTensor of `shape`, block by
/// block on `threads` threads. Parameters must have been checked (CheckAffineParams).
Result<QuantizedTensor> QuantizeRowBlocks(std::span<const int64_t> shape, int bits, int group_size,
                                          DType scale_dtype, const RowSource& source, int threads);

/// InvalidArgument naming the first non-finite element of `row` (row number `row_index`).
Status NonFiniteError(const float* row, int64_t row_index, int64_t cols);

}  // namespace moeq::quant::internal
