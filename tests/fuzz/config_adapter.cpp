// Fuzz target: config.json text through the JSON reader, ParseModelConfig and the architecture
// adapter (tensor naming and classification, expected tensors).
#include <algorithm>

#include "fuzz/fuzz_common.h"
#include "moeq/base/json_reader.h"
#include "moeq/model/arch.h"
#include "moeq/model/model_config.h"

namespace moeq::fuzz {

int ConfigAdapter(const uint8_t* data, size_t size) {
  auto j = ParseJson(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
  if (!j.ok()) return 0;
  auto config = ParseModelConfig(*j, "config.json");
  if (!config.ok()) return 0;
  auto adapter = MakeArchAdapter(*config);
  if (!adapter.ok()) return 0;
  for (const char* name :
       {"model.layers.0.mlp.experts.1.gate_proj.weight", "model.layers.1.self_attn.q_proj.weight",
        "model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.gate.weight",
        "model.layers.0.block_sparse_moe.experts.0.w1.weight"}) {
    (void)(*adapter)->Classify(name);
  }
  // Checkpoint::Open bounds layers x experts by the tensors present before it builds this list
  // (docs/limits.md); here, where no tensors exist, only configs of a plausible size build it.
  const int64_t entries = config->num_layers * std::max<int64_t>(1, config->num_experts);
  if (entries <= (1 << 16)) {
    for (const auto& [id, shape] : (*adapter)->ExpectedTensors()) (void)(*adapter)->Name(id);
  }
  return 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(ConfigAdapter)
