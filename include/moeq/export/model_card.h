// The model card (README.md with Hugging Face front matter) moeq-quantize writes next to its
// output. Internal to the library (src/commands/quantize_command.cpp, tests).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/quant_plan.h"

namespace moeq {

struct ModelCardInput {
  const Checkpoint* checkpoint = nullptr;
  const QuantPlan* plan = nullptr;
  std::string format = "mlx";  ///< "mlx" or "gguf" (library tag)
  bool mlx_stacked = false;
  std::string output_name;    ///< the written file or directory, as named on the command line
  uint64_t output_bytes = 0;  ///< bytes written (all shards, or the .gguf file)
  double written_bpw = 0;     ///< bits per weight of the written tensors (0 = unknown)
  /// The commands that produced the output, in order (allocation first when known).
  std::vector<std::string> commands;
  /// GGUF only: GgufWriteReport::TypeSummary() of the written file (what llama.cpp loads).
  std::optional<nlohmann::json> gguf_types;
  /// Data-aware encoders that produced the codes and the statistics they used, one line
  /// ("gptq ×48, rtn ×12; statistics sha256 …"); "" = rtn only (not shown).
  std::string encoders;
  /// eval.json (moeq-eval) of the quantized model, when given.
  std::optional<nlohmann::json> eval;
  std::string eval_name;
};

/// base_model: config.json "_name_or_path" when set, else the model directory's name.
std::string BaseModelName(const Checkpoint& ckpt);

/// README.md text: front matter (base_model, quantized_by: moeq, library_name and tags mlx or
/// gguf), allocation summary (bytes, bpw, bits by role and by layer), the commands, and the
/// quality figures of `eval` when given. Deterministic for the same inputs.
std::string RenderModelCard(const ModelCardInput& in);

}  // namespace moeq
