// TableAdapter: tensor name ↔ TensorId through a family's pattern rows, and tensor shapes as a
// function of role and config.
#include "model/arch_table.h"

#include <algorithm>
#include <charconv>
#include <string>

namespace moeq::arch {
namespace {

constexpr std::string_view kLayerPrefix = "model.layers.";
constexpr std::string_view kExpertSlot = "{E}";

/// Parses a canonical non-negative decimal index (no sign, no leading zeros, below 10^9).
std::optional<int> ParseIndex(std::string_view s) {
  if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

/// Matches `text` against a pattern with at most one "{E}" slot; returns the expert index
/// (-1 for patterns without a slot) or nullopt.
std::optional<int> MatchPattern(std::string_view pattern, std::string_view text) {
  const size_t slot = pattern.find(kExpertSlot);
  if (slot == std::string_view::npos) {
    if (pattern == text) return -1;
    return std::nullopt;
  }
  const std::string_view head = pattern.substr(0, slot);
  const std::string_view tail = pattern.substr(slot + kExpertSlot.size());
  if (text.size() <= head.size() + tail.size()) return std::nullopt;
  if (text.substr(0, head.size()) != head) return std::nullopt;
  if (text.substr(text.size() - tail.size()) != tail) return std::nullopt;
  return ParseIndex(text.substr(head.size(), text.size() - head.size() - tail.size()));
}

std::string Substitute(std::string_view pattern, int expert) {
  std::string s(pattern);
  const size_t slot = s.find(kExpertSlot);
  if (slot != std::string::npos) s.replace(slot, kExpertSlot.size(), std::to_string(expert));
  return s;
}

using Shape = std::vector<int64_t>;

}  // namespace

std::optional<Shape> ShapeOf(const ModelConfig& c, const ShapeTraits& traits, TensorRole role,
                             Slot slot) {
  const int64_t h = c.hidden_size;
  const int64_t q_width = traits.mla ? c.num_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim)
                                     : c.num_heads * c.head_dim;
  const int64_t kv_width = c.num_kv_heads * c.head_dim;
  const int64_t o_in = traits.mla ? c.num_heads * c.v_head_dim : c.num_heads * c.head_dim;
  const int64_t ff = c.intermediate_size;
  const int64_t mff = c.moe_intermediate_size;
  const int64_t sff = c.shared_expert_intermediate_size;
  const int64_t rope_dim = traits.mla ? c.qk_rope_head_dim : c.head_dim;
  Shape s;
  switch (role) {
    case TensorRole::kUnknown:
      return std::nullopt;
    case TensorRole::kEmbedding:
    case TensorRole::kLmHead:
      s = {c.vocab_size, h};
      break;
    case TensorRole::kFinalNorm:
    case TensorRole::kInputNorm:
    case TensorRole::kPostAttnNorm:
    case TensorRole::kPreFfnNorm:
    case TensorRole::kPostFfnNorm:
      s = {h};
      break;
    case TensorRole::kAttnQ:
      s = {q_width, h};
      break;
    case TensorRole::kAttnK:
    case TensorRole::kAttnV:
      s = {kv_width, h};
      break;
    case TensorRole::kAttnO:
      s = {h, o_in};
      break;
    case TensorRole::kAttnQBias:
      s = {q_width};
      break;
    case TensorRole::kAttnKBias:
    case TensorRole::kAttnVBias:
      s = {kv_width};
      break;
    case TensorRole::kAttnOBias:
      s = {h};
      break;
    case TensorRole::kAttnQNorm:
      s = {traits.full_width_qk_norm ? q_width : c.head_dim};
      break;
    case TensorRole::kAttnKNorm:
      s = {traits.full_width_qk_norm ? kv_width : c.head_dim};
      break;
    case TensorRole::kAttnQA:
      s = {c.q_lora_rank, h};
      break;
    case TensorRole::kAttnQANorm:
      s = {c.q_lora_rank};
      break;
    case TensorRole::kAttnQB:
      s = {q_width, c.q_lora_rank};
      break;
    case TensorRole::kAttnKVA:
      s = {c.kv_lora_rank + c.qk_rope_head_dim, h};
      break;
    case TensorRole::kAttnKVANorm:
      s = {c.kv_lora_rank};
      break;
    case TensorRole::kAttnKVB:
      s = {c.num_heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank};
      break;
    case TensorRole::kRouter:
      s = {c.num_experts, h};
      break;
    case TensorRole::kRouterBias:
      s = {c.num_experts};
      break;
    case TensorRole::kExpertGate:
    case TensorRole::kExpertUp:
      s = {mff, h};
      break;
    case TensorRole::kExpertDown:
      s = {h, mff};
      break;
    case TensorRole::kExpertGateUp:
      s = {2 * mff, h};
      break;
    case TensorRole::kSharedGate:
    case TensorRole::kSharedUp:
      s = {sff, h};
      break;
    case TensorRole::kSharedDown:
      s = {h, sff};
      break;
    case TensorRole::kSharedExpertGate:
      s = {1, h};
      break;
    case TensorRole::kMlpGate:
    case TensorRole::kMlpUp:
      s = {ff, h};
      break;
    case TensorRole::kMlpDown:
      s = {h, ff};
      break;
    case TensorRole::kBuffer:
      s = {rope_dim / 2};
      break;
  }
  if (slot == Slot::kFused) s.insert(s.begin(), c.num_experts);
  return s;
}

TableAdapter::TableAdapter(const FamilySpec& family, ModelConfig config)
    : family_(family), config_(std::move(config)) {
  for (const auto& group : family_.row_groups)
    rows_.insert(rows_.end(), group.begin(), group.end());
}

std::optional<ClassifiedTensor> TableAdapter::Classify(std::string_view name) const {
  if (name.substr(0, kLayerPrefix.size()) != kLayerPrefix) {
    for (const auto& row : rows_) {
      if (row.slot == Slot::kModel && row.pattern == name) {
        return ClassifiedTensor{TensorId{-1, -1, row.role}, false};
      }
    }
    return std::nullopt;
  }
  const std::string_view rest = name.substr(kLayerPrefix.size());
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::optional<int> layer = ParseIndex(rest.substr(0, dot));
  if (!layer || *layer >= config_.num_layers) return std::nullopt;
  const std::string_view suffix = rest.substr(dot + 1);
  for (const auto& row : rows_) {
    if (row.slot == Slot::kModel) continue;
    const std::optional<int> expert = MatchPattern(row.pattern, suffix);
    if (!expert) continue;
    if (row.slot == Slot::kExpert && *expert >= config_.num_experts) return std::nullopt;
    return ClassifiedTensor{TensorId{*layer, *expert, row.role}, row.slot == Slot::kFused};
  }
  return std::nullopt;
}

std::string TableAdapter::Name(const TensorId& id) const {
  Slot slot = Slot::kLayer;
  if (id.layer < 0) {
    slot = Slot::kModel;
  } else if (id.expert >= 0) {
    slot = Slot::kExpert;
  } else if (IsExpertRole(id.role)) {
    slot = Slot::kFused;
  }
  for (const auto& row : rows_) {
    if (row.role != id.role || row.slot != slot) continue;
    if (slot == Slot::kModel) return std::string(row.pattern);
    return std::string(kLayerPrefix) + std::to_string(id.layer) + "." +
           Substitute(row.pattern, id.expert);
  }
  return {};
}

bool TableAdapter::Expected(const PatternRow& row, int layer) const {
  const bool moe = config_.IsMoeLayer(layer);
  switch (row.presence) {
    case Presence::kRecognised:
      return false;
    case Presence::kAlways:
      return true;
    case Presence::kUntied:
      return !config_.tie_word_embeddings;
    case Presence::kAttnBias:
      return config_.attention_bias;
    case Presence::kMoeLayer:
      return moe;
    case Presence::kDenseLayer:
      return !moe;
    case Presence::kShared:
      return moe && config_.num_shared_experts > 0;
    case Presence::kQLora:
      return config_.q_lora_rank > 0;
    case Presence::kNoQLora:
      return config_.q_lora_rank == 0;
  }
  return false;
}

std::vector<std::pair<TensorId, std::vector<int64_t>>> TableAdapter::ExpectedTensors() const {
  std::vector<std::pair<TensorId, Shape>> out;
  for (const auto& row : rows_) {
    if (row.slot != Slot::kModel || !Expected(row, -1)) continue;
    auto shape = ShapeOf(config_, family_.shapes, row.role, row.slot);
    if (shape) out.emplace_back(TensorId{-1, -1, row.role}, std::move(*shape));
  }
  for (int layer = 0; layer < static_cast<int>(config_.num_layers); ++layer) {
    for (const auto& row : rows_) {
      if (row.slot == Slot::kModel || !Expected(row, layer)) continue;
      auto shape = ShapeOf(config_, family_.shapes, row.role, row.slot);
      if (!shape) continue;
      if (row.slot == Slot::kExpert) {
        for (int e = 0; e < static_cast<int>(config_.num_experts); ++e) {
          out.emplace_back(TensorId{layer, e, row.role}, *shape);
        }
      } else {
        out.emplace_back(TensorId{layer, -1, row.role}, std::move(*shape));
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

}  // namespace moeq::arch
