// Fuzz target: a routing trace (JSONL) profiled for a small MoE config.
#include "fuzz/fuzz_common.h"
#include "moeq/model/model_config.h"
#include "moeq/profile/routing_profile.h"

namespace moeq::fuzz {

int RoutingTrace(const uint8_t* data, size_t size) {
  static const ModelConfig config = [] {
    auto c =
        ParseModelConfig(nlohmann::json::parse(R"({"model_type": "qwen3_moe", "hidden_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2})"),
                         "config.json");
    if (!c.ok()) std::abort();
    return *c;
  }();
  const std::string path = WriteInput(data, size, ".trace.jsonl");
  const TraceInput in{path, "default"};
  ProfileOptions po;
  po.threads = 1;
  po.progress = false;
  auto p = ProfileRoutingTraces(config, std::span<const TraceInput>(&in, 1), po);
  (void)p;
  return 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(RoutingTrace)
