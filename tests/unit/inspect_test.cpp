// InspectCheckpoint / FormatInspectTable on synthetic checkpoints and on the shared tiny models.
#include "moeq/report/inspect.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <ostream>

#include "moeq/base/build_info.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

using test::ScopedTempDir;
using test::SyntheticCheckpointOptions;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

nlohmann::json Inspect(const std::string& dir) {
  auto c = Checkpoint::Open(dir);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return {};
  auto r = InspectCheckpoint(**c);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : nlohmann::json();
}

int64_t GroupParams(const nlohmann::json& r, const char* group) {
  return r.at("by_group").contains(group) ? r["by_group"][group]["parameters"].get<int64_t>() : 0;
}

TEST(Inspect, CountsSyntheticQwen3Moe) {
  ScopedTempDir dir;
  SyntheticCheckpointOptions o;  // qwen3_moe, 2 layers, hidden 64, 4 experts × ff 32, vocab 256
  auto written = test::WriteSyntheticCheckpoint(dir.path(), o);
  ASSERT_TRUE(written.ok());
  const auto r = Inspect(dir.path());
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["model_type"], "qwen3_moe");
  EXPECT_EQ(r["layers"], 2);
  EXPECT_EQ(r["moe_layers"], 2);
  EXPECT_EQ(r["dense_layers"], 0);
  EXPECT_EQ(r["experts_per_layer"], 4);
  EXPECT_EQ(r["top_k"], 2);
  EXPECT_EQ(r["shared_experts"], 0);
  EXPECT_EQ(r["hidden_size"], 64);
  EXPECT_EQ(r["num_heads"], 4);
  EXPECT_EQ(r["num_kv_heads"], 2);
  EXPECT_EQ(r["head_dim"], 16);
  EXPECT_EQ(r["vocab_size"], 256);
  EXPECT_EQ(r["fused_experts"], false);
  EXPECT_EQ(r["parameters"].get<int64_t>(), written->parameters);
  EXPECT_EQ(r["bytes"].get<int64_t>(), 2 * written->parameters);
  EXPECT_EQ(r["tensors"].get<size_t>(), written->tensors.size());
  EXPECT_EQ(GroupParams(r, "experts"), 2 * 4 * 3 * 32 * 64);
  EXPECT_EQ(GroupParams(r, "router"), 2 * 4 * 64);
  EXPECT_EQ(GroupParams(r, "embeddings"), 2 * 256 * 64);
  EXPECT_EQ(GroupParams(r, "attention"), 2 * (64 * 64 * 2 + 32 * 64 * 2));
  EXPECT_EQ(GroupParams(r, "norms"), 64 + 2 * (64 * 2 + 16 * 2));
  EXPECT_EQ(r["by_role"]["expert_down"]["tensors"], 8);
  EXPECT_EQ(r["by_dtype"]["BF16"]["parameters"].get<int64_t>(), written->parameters);
  int64_t sum = 0;
  for (const auto& [name, g] : r["by_group"].items()) sum += g["parameters"].get<int64_t>();
  EXPECT_EQ(sum, written->parameters);
  ASSERT_EQ(r["shards"].size(), 1u);
  EXPECT_EQ(r["shards"][0]["file"], "model.safetensors");
  EXPECT_EQ(r["shards"][0]["bytes"].get<uint64_t>(),
            std::filesystem::file_size(dir.Join("model.safetensors")));
  EXPECT_TRUE(r["unknown_tensors"].empty());
  EXPECT_EQ(r["fingerprint"].get<std::string>().size(), 64u);

  const std::string table = FormatInspectTable(r);
  EXPECT_TRUE(Contains(table, "qwen3_moe (Qwen3MoeForCausalLM)"));
  EXPECT_TRUE(Contains(table, "expert_down"));
  EXPECT_TRUE(Contains(table, "4 routed per MoE layer, top-2"));
  EXPECT_TRUE(Contains(table, "49,152"));  // experts group parameters
  EXPECT_TRUE(Contains(table, "unknown tensors: none"));
  EXPECT_EQ(table.back(), '\n');
}

TEST(Inspect, SharedExpertsFusedShardsAndUnknowns) {
  ScopedTempDir dir;
  SyntheticCheckpointOptions o;
  o.model_type = "qwen2_moe";
  o.layers = 3;
  o.dense_layers = 1;
  o.shared_experts = 2;
  o.fused_experts = true;
  o.shards = 2;
  o.dtype = DType::kF32;
  o.extra_tensors = {{"model.layers.0.mlp.mystery.weight", {2, 2}}};
  auto written = test::WriteSyntheticCheckpoint(dir.path(), o);
  ASSERT_TRUE(written.ok());
  const auto r = Inspect(dir.path());
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["moe_layers"], 2);
  EXPECT_EQ(r["dense_layers"], 1);
  EXPECT_EQ(r["shared_experts"], 1);  // qwen2_moe has one shared expert MLP of width 2 × 32
  EXPECT_EQ(r["shared_expert_intermediate_size"], 64);
  EXPECT_EQ(r["fused_experts"], true);
  EXPECT_EQ(GroupParams(r, "shared_experts"), 2 * (3 * 64 * 64 + 64));
  EXPECT_EQ(GroupParams(r, "experts"), 2 * 4 * 3 * 32 * 64);
  EXPECT_EQ(GroupParams(r, "dense_mlp"), 3 * 96 * 64);
  EXPECT_EQ(GroupParams(r, "other"), 4);
  EXPECT_EQ(r["by_role"]["expert_gate_up"]["tensors"], 2);
  EXPECT_EQ(r["bytes"].get<int64_t>(), 4 * written->parameters);
  EXPECT_EQ(r["shards"].size(), 2u);
  EXPECT_EQ(r["unknown_tensors"], nlohmann::json::array({"model.layers.0.mlp.mystery.weight"}));
  const std::string table = FormatInspectTable(r);
  EXPECT_TRUE(Contains(table, "model.layers.0.mlp.mystery.weight"));
  EXPECT_TRUE(Contains(table, "fused"));
  EXPECT_TRUE(Contains(table, "F32"));
}

/// The shared tiny models: their MODEL_CARD.md gives the parameter counts.
struct SharedModel {
  const char* dir;
  const char* model_type;
  int64_t parameters;
  int64_t experts;
  int64_t top_k;
};

/// Printed in test names (gtest_discover_tests shows parameter values): a readable label.
void PrintTo(const SharedModel& c, std::ostream* os) { *os << c.dir; }

class SharedModels : public ::testing::TestWithParam<SharedModel> {};

TEST_P(SharedModels, MatchModelCard) {
  const SharedModel& m = GetParam();
  const std::string dir = std::string(kSourceDir) + "/../shared/models/" + m.dir;
  if (!std::filesystem::exists(dir + "/config.json")) {
    GTEST_SKIP() << dir << " is absent (the shared test models are optional)";
  }
  const auto r = Inspect(dir);
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["model_type"], m.model_type);
  EXPECT_EQ(r["parameters"].get<int64_t>(), m.parameters);
  EXPECT_EQ(r["bytes"].get<int64_t>(), 2 * m.parameters);  // all BF16
  EXPECT_EQ(r["layers"], 4);
  EXPECT_EQ(r["moe_layers"], 4);
  EXPECT_EQ(r["experts_per_layer"].get<int64_t>(), m.experts);
  EXPECT_EQ(r["top_k"].get<int64_t>(), m.top_k);
  EXPECT_EQ(r["hidden_size"], 128);
  EXPECT_EQ(r["vocab_size"], 2048);
  EXPECT_EQ(r["by_role"]["expert_down"]["tensors"].get<int64_t>(), 4 * m.experts);
  EXPECT_TRUE(r["unknown_tensors"].empty());
  EXPECT_EQ(r["extra_files"], nlohmann::json::array({"generation_config.json", "tokenizer.json",
                                                     "tokenizer_config.json"}));
}

INSTANTIATE_TEST_SUITE_P(Inspect, SharedModels,
                         ::testing::Values(SharedModel{"tiny-qwen3moe", "qwen3_moe", 13'337'984, 64,
                                                       4},
                                           SharedModel{"tiny-mixtral", "mixtral", 3'871'872, 8, 2}),
                         [](const auto& param_info) {
                           std::string name = param_info.param.dir;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace moeq
