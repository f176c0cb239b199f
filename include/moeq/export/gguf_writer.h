// GGUF v3 output for llama.cpp: the plan-format → ggml-type mapping and a streaming writer for a
// whole checkpoint.
//
// Layouts follow docs/formats.md §3 (file layout, block layouts, MoE experts, tensor names); the
// mapping from plan formats to ggml types is documented in docs/gguf.md.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"
#include "moeq/base/tensor.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/quant_plan.h"
#include "moeq/formats/gguf.h"
#include "moeq/quant/encoders.h"
#include "moeq/quant/quant_format.h"

namespace moeq {

class InputStatsFile;

// ---------------------------------------------------------------------------------------------
// Plan format → ggml type

/// The ggml type a tensor gets, and why.
struct GgmlTypeChoice {
  GgmlType type = GgmlType::kF32;
  /// The type the format maps to before the shape fallback (== type when none was needed).
  GgmlType preferred = GgmlType::kF32;
  /// True when ne0 is not a multiple of `preferred`'s block size and `type` replaces it.
  bool fallback = false;
};

/// Maps a plan format to a ggml type for a tensor whose rows have `ne0` elements and whose
/// source dtype is `source` (docs/gguf.md): nullptr keeps the source dtype (BF16/F16/F32);
/// float formats map to BF16/F16/F32; affine formats by bits and group size (q8 → Q8_0,
/// q6 → Q6_K, q5g32 → Q5_1, q5g64/128 → Q5_K, q4g32 → Q4_1, q4g64/128 → Q4_K, q3 → Q3_K,
/// q2 → Q2_K), then the shape fallback when ne0 is not a multiple of the block size
/// (Q6_K → Q8_0, Q5_K → Q5_1, Q4_K → Q4_1, Q3_K/Q2_K → Q4_0, 32-blocks → F16/BF16).
GgmlTypeChoice ChooseGgmlType(const quant::FormatTraits* format, DType source, int64_t ne0);

/// `preferred` when ne0 is a multiple of its block size, else the shape fallback above
/// (K-quants to their legacy neighbour, 32-blocks to F16/BF16).
GgmlTypeChoice GgmlTypeForShape(GgmlType preferred, DType source, int64_t ne0);

// ---------------------------------------------------------------------------------------------
// Writer

/// What WriteGguf did with one tensor.
struct GgufTensorReport {
  std::string name;         ///< GGUF name, e.g. "blk.0.ffn_down_exps.weight"
  std::vector<int64_t> ne;  ///< ggml order (ne[0] innermost)
  GgmlType type = GgmlType::kF32;
  uint64_t bytes = 0;
  std::string plan_format;  ///< plan format that decided the type ("" = keep source)
  std::string note;         ///< "fallback q4_K->q4_1 (ne0 128 % 256)", "experts promoted", ...
  int sources = 1;          ///< checkpoint tensors merged into it
  /// Encoders that produced the codes ("rtn", "weighted", "gptq"; comma-joined when the merged
  /// sources differ); "" for tensors that are not block-quantized.
  std::string encoder;
};

struct GgufWriteReport {
  std::string architecture;  ///< general.architecture
  uint64_t file_bytes = 0;
  uint64_t tensor_bytes = 0;  ///< data section without padding
  int64_t n_kv = 0;
  int64_t weights = 0;              ///< elements of all tensors
  int fallback_tensors = 0;         ///< tensors whose preferred type needed a shape fallback
  int promoted_expert_tensors = 0;  ///< merged expert tensors whose experts had different formats
  std::vector<GgufTensorReport> tensors;  ///< in file order
  double seconds = 0;

  /// {"ggml_type": {"tensors": n, "bytes": b, "weights": w}}.
  nlohmann::json TypeSummary() const;
};

struct GgufWriteOptions {
  /// Worker threads for encoding (0 = all cores). Output bytes do not depend on it.
  int threads = 0;
  /// Progress on stderr.
  bool progress = true;
  /// Producer recorded in the metadata (moeq.producer, moeq.command); may be null.
  const ArtifactContext* context = nullptr;
  /// general.name; "" = the model directory's base name.
  std::string model_name;
  /// Refuse to write without tokenizer metadata (no or empty tokenizer.json). When false, a
  /// missing vocabulary only logs a warning (llama.cpp will not load such a file).
  bool require_tokenizer = false;
  /// Filled when not null.
  GgufWriteReport* report = nullptr;
  /// Replace an existing `path` (--force); without it an output that appears while writing is
  /// not replaced (AlreadyExists).
  bool overwrite = false;
  /// When set, every tensor the plan quantizes (affine plan format) is stored as this ggml
  /// type instead of the one its format maps to (shape fallback as GgmlTypeForShape), as
  /// llama-quantize's TYPE argument does (moeq-quantize --gguf-type).
  std::optional<GgmlType> force_type;
  /// Input statistics for the data-aware encoders (plan.encoders, include/moeq/quant/
  /// gguf_encoders.h); block-quantized tensors whose plan encoder is weighted/gptq are encoded
  /// with it, using the statistics of their input (per expert for expert tensors). Tensors
  /// without statistics, or with none given, use rtn (byte-identical to the plain writer).
  const InputStatsFile* stats = nullptr;
  quant::EncoderOptions encoder_options;
};

/// Writes one GGUF v3 file for `ckpt` with per-tensor types chosen from `plan` (plan.FormatOf of
/// each checkpoint tensor; experts of one layer and projection are merged into one 3-D tensor of
/// the highest precision among them). Streams tensor by tensor; the file appears atomically
/// (written as "<path>.tmp", then renamed). Does not check whether `path` exists (the caller's
/// CheckOutputPath does). Supported architectures: qwen3_moe, qwen2_moe, mixtral, olmoe, llama,
/// qwen2, qwen3.
Status WriteGguf(const Checkpoint& ckpt, const QuantPlan& plan, const std::string& path,
                 const GgufWriteOptions& options);

/// The GGUF architecture name for a Hugging Face model_type ("qwen3_moe" → "qwen3moe",
/// "mixtral" → "llama"); Unsupported otherwise.
Result<std::string> GgufArchitecture(std::string_view model_type);

}  // namespace moeq
