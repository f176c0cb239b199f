// A quantization plan: the storage format of every tensor of a checkpoint, from an
// allocation.json (moeq-allocate) or a uniform format (--uniform BITS --group G).
//
// The plan is what moeq-quantize's writers consume (MLX safetensors and GGUF). Tensors absent
// from `formats` keep their source dtype (norms, biases, buffers, unknown tensors).
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/quant/encoders.h"
#include "moeq/quant/quant_format.h"

namespace moeq {

struct QuantPlan {
  /// "uniform q4g64" or "allocation <path>": where the plan came from (recorded in manifests).
  std::string source;
  /// SHA-256 of the allocation.json the plan was read from ("" for uniform plans).
  std::string allocation_sha256;
  /// The allocation's inputs.model_fingerprint (the model it was made for); "" = unknown.
  std::string allocation_model_fingerprint;
  /// The allocation's producer.command (for the model card); "" = unknown.
  std::string allocation_command;
  /// Tensor name -> storage format, for every tensor that is stored in a format other than its
  /// source dtype or that the plan names explicitly. Affine formats quantize; float formats
  /// (bf16/f16/f32) store the tensor converted to that dtype.
  std::map<std::string, const quant::FormatTraits*, std::less<>> formats;
  /// Routed-expert tensors the plan prunes (DynaMINT "prunable" with --allow-prune).
  std::set<std::string, std::less<>> pruned;
  /// The written file the allocation was costed for (allocation.json budget.target: "mlx",
  /// "mlx-stacked", "gguf"); "" for uniform plans and allocations made without --target.
  std::string target;
  /// Tensor name -> encoder of its codes (allocation.json "encoder"); absent = rtn.
  std::map<std::string, quant::EncoderKind, std::less<>> encoders;

  /// The encoder of `name` (rtn unless the plan names another).
  quant::EncoderKind EncoderOf(std::string_view name) const {
    auto it = encoders.find(name);
    return it == encoders.end() ? quant::EncoderKind::kRtn : it->second;
  }
  /// True when any tensor uses a data-aware encoder.
  bool DataAware() const {
    for (const auto& [n, e] : encoders) {
      if (e != quant::EncoderKind::kRtn) return true;
    }
    return false;
  }

  /// The format of `name`, or nullptr when the tensor keeps its source dtype.
  const quant::FormatTraits* FormatOf(std::string_view name) const {
    auto it = formats.find(name);
    return it == formats.end() ? nullptr : it->second;
  }
};

/// Every quantizable tensor of `ckpt` (IsQuantizableRole) whose last dimension is a multiple of
/// `format`'s group size gets `format`; the others keep their dtype and are listed in
/// `*skipped` (may be null) with the reason.
Result<QuantPlan> MakeUniformPlan(const Checkpoint& ckpt, const quant::FormatTraits& format,
                                  std::map<std::string, std::string>* skipped = nullptr);

/// Reads allocation.json (docs/artifacts.md, schema moeq.allocation v1) and checks it against
/// `ckpt`: every named tensor exists, is quantizable (for affine formats), and its shape fits
/// the format. Errors name the file, the tensor and the field.
Result<QuantPlan> LoadAllocationPlan(const std::string& path, const Checkpoint& ckpt);

}  // namespace moeq
