// ParseModelConfig: key aliases per family, defaults, MoE layer plans, and precise errors.
#include "moeq/model/model_config.h"

#include <gtest/gtest.h>

#include "moeq/model/arch.h"

namespace moeq {
namespace {

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

nlohmann::json Qwen3MoeJson() {
  return nlohmann::json::parse(R"({
    "model_type": "qwen3_moe", "hidden_size": 128, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 2048,
    "intermediate_size": 512, "moe_intermediate_size": 128, "num_experts": 64,
    "num_experts_per_tok": 4, "decoder_sparse_step": 1, "mlp_only_layers": [],
    "norm_topk_prob": true, "tie_word_embeddings": false, "attention_bias": false,
    "rope_theta": 10000.0, "rms_norm_eps": 1e-06, "max_position_embeddings": 1024,
    "sliding_window": null})");
}

TEST(ModelConfig, ParsesQwen3Moe) {
  auto c = ParseModelConfig(Qwen3MoeJson(), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "qwen3_moe");
  EXPECT_EQ(c->hidden_size, 128);
  EXPECT_EQ(c->num_layers, 4);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->vocab_size, 2048);
  EXPECT_EQ(c->num_experts, 64);
  EXPECT_EQ(c->top_k, 4);
  EXPECT_EQ(c->moe_intermediate_size, 128);
  EXPECT_EQ(c->num_shared_experts, 0);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_TRUE(c->is_moe());
  EXPECT_EQ(c->moe_layer, std::vector<bool>(4, true));
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->max_position_embeddings, 1024);
  EXPECT_EQ(c->raw.at("model_type"), "qwen3_moe");
}

TEST(ModelConfig, QwenSparseStepAndMlpOnlyLayers) {
  auto j = Qwen3MoeJson();
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  auto c = ParseModelConfig(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  // (l + 1) % 2 == 0 → layers 1 and 3; layer 3 is forced dense.
  EXPECT_EQ(c->moe_layer, (std::vector<bool>{false, true, false, false}));
  EXPECT_EQ(c->intermediate_size, 512);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_FALSE(c->IsMoeLayer(4));
}

TEST(ModelConfig, MixtralExpertWidthIsIntermediateSize) {
  auto c = ParseModelConfig(nlohmann::json::parse(R"({
    "model_type": "mixtral", "hidden_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
    "intermediate_size": 256, "num_local_experts": 8, "num_experts_per_tok": 2})"),
                            "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_experts, 8);
  EXPECT_EQ(c->top_k, 2);
  EXPECT_EQ(c->moe_intermediate_size, 256);
  EXPECT_EQ(c->intermediate_size, 0);
  EXPECT_EQ(c->head_dim, 32);  // hidden / heads
  EXPECT_EQ(c->moe_layer, std::vector<bool>(2, true));
}

TEST(ModelConfig, Qwen2MoeSharedExpertAndBiases) {
  auto c = ParseModelConfig(nlohmann::json::parse(R"({
    "model_type": "qwen2_moe", "hidden_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 96,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64, "num_experts": 4,
    "num_experts_per_tok": 2, "mlp_only_layers": [0]})"),
                            "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_kv_heads, 4);  // defaults to num_attention_heads
  EXPECT_EQ(c->num_shared_experts, 1);
  EXPECT_EQ(c->shared_expert_intermediate_size, 64);
  EXPECT_TRUE(c->attention_bias);  // qwen2 q/k/v projections always carry biases
  EXPECT_EQ(c->moe_layer, (std::vector<bool>{false, true, true}));
}

TEST(ModelConfig, DeepseekLayerPlanSharedExpertsAndMla) {
  auto c = ParseModelConfig(nlohmann::json::parse(R"({
    "model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100,
    "intermediate_size": 96, "moe_intermediate_size": 16, "n_routed_experts": 8,
    "n_shared_experts": 2, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
    "moe_layer_freq": 1, "q_lora_rank": 32, "kv_lora_rank": 24, "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8, "v_head_dim": 16, "head_dim": 8})"),
                            "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_experts, 8);
  EXPECT_EQ(c->num_shared_experts, 2);
  EXPECT_EQ(c->shared_expert_intermediate_size, 32);
  EXPECT_EQ(c->moe_layer, (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(c->q_lora_rank, 32);
  EXPECT_EQ(c->kv_lora_rank, 24);
  EXPECT_EQ(c->head_dim, 24);  // qk_nope + qk_rope
  EXPECT_EQ(c->v_head_dim, 16);
  EXPECT_TRUE(c->norm_topk_prob);
}

TEST(ModelConfig, DeepseekV2NullQLoraRank) {
  auto c = ParseModelConfig(nlohmann::json::parse(R"({
    "model_type": "deepseek_v2", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 96,
    "moe_intermediate_size": 16, "n_routed_experts": 8, "num_experts_per_tok": 2,
    "q_lora_rank": null, "kv_lora_rank": 24, "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8, "v_head_dim": 16})"),
                            "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->q_lora_rank, 0);
  EXPECT_EQ(c->moe_layer, (std::vector<bool>{true, true}));
}

TEST(ModelConfig, DenseLlama) {
  auto c = ParseModelConfig(nlohmann::json::parse(R"({
    "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
    "vocab_size": 100, "intermediate_size": 96, "tie_word_embeddings": true})"),
                            "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->is_moe());
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->moe_layer, std::vector<bool>(2, false));
}

TEST(ModelConfig, MissingKeyNamesFileAndKey) {
  auto j = Qwen3MoeJson();
  j.erase("hidden_size");
  auto c = ParseModelConfig(j, "/models/x/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(c.status().message(), "config.json: missing key 'hidden_size'"));
}

TEST(ModelConfig, MissingExpertCountNamesTheAliases) {
  auto j = Qwen3MoeJson();
  j.erase("num_experts");
  auto c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "'num_experts'"));
  EXPECT_TRUE(Contains(c.status().message(), "n_routed_experts"));
}

TEST(ModelConfig, WrongTypeNamesKeyAndExpectedType) {
  auto j = Qwen3MoeJson();
  j["hidden_size"] = "128";
  auto c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "'hidden_size'"));
  EXPECT_TRUE(Contains(c.status().message(), "an integer"));

  j = Qwen3MoeJson();
  j["tie_word_embeddings"] = 1;
  c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "'tie_word_embeddings' must be a boolean"));

  j = Qwen3MoeJson();
  j["mlp_only_layers"] = {"a"};
  c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "'mlp_only_layers' must be a list of integers"));
}

TEST(ModelConfig, AcceptsIntegralFloats) {
  auto j = Qwen3MoeJson();
  j["hidden_size"] = 128.0;
  auto c = ParseModelConfig(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hidden_size, 128);
  j["hidden_size"] = 128.5;
  EXPECT_FALSE(ParseModelConfig(j, "config.json").ok());
}

TEST(ModelConfig, InvalidValues) {
  auto j = Qwen3MoeJson();
  j["num_experts_per_tok"] = 65;
  auto c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "num_experts_per_tok"));

  j = Qwen3MoeJson();
  j["num_key_value_heads"] = 3;
  EXPECT_FALSE(ParseModelConfig(j, "config.json").ok());

  j = Qwen3MoeJson();
  j["num_hidden_layers"] = 0;
  EXPECT_FALSE(ParseModelConfig(j, "config.json").ok());

  EXPECT_FALSE(ParseModelConfig(nlohmann::json::array(), "config.json").ok());
}

TEST(ModelConfig, UnsupportedModelTypeListsSupportedOnes) {
  auto j = Qwen3MoeJson();
  j["model_type"] = "gpt2";
  auto c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(Contains(c.status().message(), "'gpt2'"));
  for (const auto& t : SupportedModelTypes()) EXPECT_TRUE(Contains(c.status().message(), t));

  j.erase("model_type");
  c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "missing key 'model_type'"));
  EXPECT_TRUE(Contains(c.status().message(), "qwen3_moe"));
}

TEST(ModelConfig, DenseLayerOfMoeModelNeedsIntermediateSize) {
  auto j = Qwen3MoeJson();
  j.erase("intermediate_size");
  EXPECT_TRUE(ParseModelConfig(j, "config.json").ok());  // all layers sparse
  j["mlp_only_layers"] = {0};
  auto c = ParseModelConfig(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "missing key 'intermediate_size'"));
}

}  // namespace
}  // namespace moeq
