// Table-driven architecture adapters (internal to libmoeq).
//
// Each family is a list of pattern rows. A row maps one tensor-name pattern to a role:
// model-level rows match the whole name; layer rows match the suffix after "model.layers.{L}.";
// expert rows contain one "{E}" slot for the expert index. The same rows drive Classify(),
// Name() (the first row of a role and slot is the canonical spelling) and ExpectedTensors()
// (through each row's presence condition). Shapes come from one function of role and config.
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "moeq/model/arch.h"

namespace moeq::arch {

/// Where a pattern applies.
enum class Slot : uint8_t {
  kModel,   ///< whole tensor name, layer -1
  kLayer,   ///< suffix after "model.layers.{L}."
  kExpert,  ///< layer suffix with one "{E}" expert slot
  kFused,   ///< layer suffix of a 3-D tensor holding all experts [E, out, in]
};

/// When ExpectedTensors() lists a row's tensor.
enum class Presence : uint8_t {
  kRecognised,  ///< accepted by Classify() only: aliases, fused forms, buffers
  kAlways,      ///< every model / every layer
  kUntied,      ///< tie_word_embeddings is false
  kAttnBias,    ///< attention_bias is true
  kMoeLayer,    ///< sparse (MoE) layers
  kDenseLayer,  ///< layers with a dense MLP
  kShared,      ///< sparse layers of a model with shared experts
  kQLora,       ///< MLA with q_lora_rank > 0
  kNoQLora,     ///< MLA with q_lora_rank == 0
};

struct PatternRow {
  std::string_view pattern;
  TensorRole role;
  Slot slot;
  Presence presence;
};

/// Shape conventions that differ between families.
struct ShapeTraits {
  /// q_norm/k_norm span all heads (olmoe) instead of one head_dim (qwen3).
  bool full_width_qk_norm = false;
  /// DeepSeek multi-head latent attention dimensions.
  bool mla = false;
};

struct FamilySpec {
  std::string_view model_type;
  std::vector<std::span<const PatternRow>> row_groups;
  ShapeTraits shapes;
};

/// Every supported family (unsorted).
const std::vector<FamilySpec>& Families();

/// The shape of a tensor of `role` under `config`, for `slot` (fused adds the expert dimension);
/// nullopt for roles without a fixed shape.
std::optional<std::vector<int64_t>> ShapeOf(const ModelConfig& config, const ShapeTraits& traits,
                                            TensorRole role, Slot slot);

/// An ArchAdapter driven by a FamilySpec.
class TableAdapter final : public ArchAdapter {
 public:
  TableAdapter(const FamilySpec& family, ModelConfig config);

  std::string_view model_type() const override { return family_.model_type; }
  std::optional<ClassifiedTensor> Classify(std::string_view name) const override;
  std::string Name(const TensorId& id) const override;
  std::vector<std::pair<TensorId, std::vector<int64_t>>> ExpectedTensors() const override;

 private:
  bool Expected(const PatternRow& row, int layer) const;

  const FamilySpec& family_;
  ModelConfig config_;
  std::vector<PatternRow> rows_;  // all groups, in order
};

}  // namespace moeq::arch
