// What a quantization plan costs in the file a writer really stores (moeq-allocate --target).
//
// The allocator measures quantization error per tensor and format; the bytes of the output
// depend on the writer: GGUF maps each format to a ggml block type (Q4_K stores 4.5 bits per
// weight where MLX's q4g128 stores 4.25), falls back to legacy types when a row is not a multiple
// of 256, keeps norms and the router in F32, merges a layer's experts into one 3-D tensor of one
// type, and adds a header with the tokenizer vocabulary and 32-byte alignment. A TargetCostModel
// answers "how many bytes of the file does this tensor (or this group of experts) cost in this
// format" and "how many bytes does the file cost whatever the plan" (docs/gguf.md,
// docs/allocation-targets.md).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/quant/quant_format.h"

namespace moeq {

/// The file layout an allocation is made for.
enum class WriteTarget {
  kMlx,         ///< moeq-quantize --format mlx: per-expert tensors, each expert its own format
  kMlxStacked,  ///< --format mlx --stacked: mlx-lm's switch_mlp, one format per (layer, projection)
  kGguf,        ///< --format gguf: one 3-D expert tensor of one ggml type per (layer, projection)
};

Result<WriteTarget> ParseWriteTarget(std::string_view name);
std::string_view WriteTargetName(WriteTarget t);
/// True when the target stores every routed expert in its own format (only kMlx).
bool TargetHoldsPerExpertFormats(WriteTarget t);
/// The target moeq-quantize writes for an output format ("mlx" or "gguf") and --stacked.
WriteTarget TargetOfOutput(std::string_view format, bool stacked);

class TargetCostModel {
 public:
  /// Bytes reserved in the GGUF header for the strings moeq-quantize records that are not known
  /// at allocation time (moeq.plan.source = the allocation path, moeq.command = the command
  /// line). A longer path plus command line can exceed the budget by the difference.
  static constexpr uint64_t kGgufStringReserve = 1024;

  /// Plans the output of `ckpt` for `target`. `costed` are the checkpoint tensors the allocation
  /// decides (ItemBytes); every other tensor is written in its source dtype and counts in
  /// fixed_bytes().
  static Result<std::unique_ptr<TargetCostModel>> Make(
      const Checkpoint& ckpt, WriteTarget target, const std::set<std::string, std::less<>>& costed);
  virtual ~TargetCostModel() = default;

  WriteTarget target() const { return target_; }
  /// Bytes of the output that no costed tensor decides: header, metadata, alignment of the
  /// header, tensors not costed, carried files.
  uint64_t fixed_bytes() const { return fixed_bytes_; }
  /// Weights (elements) of every tensor the output stores: the denominator of a file bpw.
  int64_t weights() const { return weights_; }
  /// What is exact and what is estimated, for allocation.json and the logs.
  const std::string& accuracy() const { return accuracy_; }

  /// Bytes the output spends on the checkpoint tensors `names` (one tensor, or every expert of
  /// one (layer, projection) for stacked targets) all stored in `format` (nullptr = source
  /// dtype), including their alignment padding and, for MLX, their header entries.
  virtual Result<uint64_t> ItemBytes(std::span<const std::string> names,
                                     const quant::FormatTraits* format) const = 0;

 protected:
  WriteTarget target_ = WriteTarget::kMlx;
  uint64_t fixed_bytes_ = 0;
  int64_t weights_ = 0;
  std::string accuracy_;
};

}  // namespace moeq
