// Architecture adapters: roles, TensorId order, and name ↔ TensorId round trips for every
// supported model_type (per-expert and fused expert tensors).
#include "moeq/model/arch.h"

#include <gtest/gtest.h>

#include <set>

#include "testing/synthetic_checkpoint.h"

namespace moeq {
namespace {

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

/// A config exercising every optional part of `model_type`: shared experts, a leading dense
/// layer, attention biases.
ModelConfig RichConfig(const std::string& model_type, bool tie = false) {
  test::SyntheticCheckpointOptions o;
  o.model_type = model_type;
  o.layers = 3;
  o.shared_experts = 1;
  o.dense_layers = 1;
  o.attention_bias = true;
  o.tie_word_embeddings = tie;
  auto c = ParseModelConfig(test::SyntheticConfig(o), "config.json");
  MOEQ_CHECK(c.ok());
  return *c;
}

std::unique_ptr<ArchAdapter> Adapter(const ModelConfig& c) {
  auto a = MakeArchAdapter(c);
  MOEQ_CHECK(a.ok());
  return std::move(a).value();
}

TEST(Roles, NamesAreUniqueAndParse) {
  std::set<std::string_view> names;
  for (TensorRole r : AllRoles()) {
    EXPECT_TRUE(names.insert(RoleName(r)).second) << RoleName(r);
    EXPECT_EQ(ParseRole(RoleName(r)), r);
  }
  EXPECT_EQ(AllRoles().size(), static_cast<size_t>(TensorRole::kBuffer) + 1);
  EXPECT_EQ(ParseRole("no_such_role"), std::nullopt);
  EXPECT_EQ(RoleName(TensorRole::kExpertDown), "expert_down");
}

TEST(Roles, Predicates) {
  EXPECT_TRUE(IsQuantizableRole(TensorRole::kExpertGate));
  EXPECT_TRUE(IsQuantizableRole(TensorRole::kAttnQ));
  EXPECT_TRUE(IsQuantizableRole(TensorRole::kEmbedding));
  EXPECT_FALSE(IsQuantizableRole(TensorRole::kInputNorm));
  EXPECT_FALSE(IsQuantizableRole(TensorRole::kAttnQBias));
  EXPECT_FALSE(IsQuantizableRole(TensorRole::kBuffer));
  EXPECT_FALSE(IsQuantizableRole(TensorRole::kUnknown));
  EXPECT_TRUE(IsExpertRole(TensorRole::kExpertGateUp));
  EXPECT_FALSE(IsExpertRole(TensorRole::kSharedGate));
  EXPECT_TRUE(IsSharedExpertRole(TensorRole::kSharedExpertGate));
  EXPECT_TRUE(IsNormRole(TensorRole::kAttnKVANorm));
  EXPECT_FALSE(IsNormRole(TensorRole::kRouter));
}

TEST(TensorIdOrder, ModelLevelFirstThenLayerRoleExpert) {
  const TensorId emb{-1, -1, TensorRole::kEmbedding};
  const TensorId l0q{0, -1, TensorRole::kAttnQ};
  const TensorId l0e1{0, 1, TensorRole::kExpertGate};
  const TensorId l0e0up{0, 0, TensorRole::kExpertUp};
  const TensorId l1norm{1, -1, TensorRole::kInputNorm};
  EXPECT_LT(emb, l0q);
  EXPECT_LT(l0q, l0e1);
  EXPECT_LT(l0e1, l0e0up);
  EXPECT_LT(l0e0up, l1norm);
  EXPECT_FALSE(l0q < l0q);
}

TEST(Adapters, SupportedModelTypesAreSorted) {
  const auto types = SupportedModelTypes();
  EXPECT_TRUE(std::is_sorted(types.begin(), types.end()));
  for (const char* t : {"qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "deepseek_v2", "deepseek_v3",
                        "llama", "qwen2", "qwen3"}) {
    EXPECT_NE(std::find(types.begin(), types.end(), t), types.end()) << t;
  }
}

TEST(Adapters, RoundTripEveryExpectedTensor) {
  for (const auto& type : SupportedModelTypes()) {
    SCOPED_TRACE(type);
    for (bool tie : {false, true}) {
      const ModelConfig config = RichConfig(type, tie);
      auto adapter = Adapter(config);
      EXPECT_EQ(adapter->model_type(), type);
      const auto expected = adapter->ExpectedTensors();
      ASSERT_FALSE(expected.empty());
      EXPECT_TRUE(std::is_sorted(expected.begin(), expected.end(),
                                 [](const auto& a, const auto& b) { return a.first < b.first; }));
      std::set<std::string> names;
      bool has_lm_head = false;
      for (const auto& [id, shape] : expected) {
        const std::string name = adapter->Name(id);
        ASSERT_FALSE(name.empty()) << RoleName(id.role);
        EXPECT_TRUE(names.insert(name).second) << "duplicate " << name;
        auto c = adapter->Classify(name);
        ASSERT_TRUE(c.has_value()) << name;
        EXPECT_EQ(c->id, id) << name;
        EXPECT_FALSE(c->fused_experts) << name;
        EXPECT_FALSE(shape.empty()) << name;
        for (int64_t d : shape) EXPECT_GT(d, 0) << name;
        has_lm_head = has_lm_head || id.role == TensorRole::kLmHead;
      }
      EXPECT_EQ(has_lm_head, !tie);
    }
  }
}

TEST(Adapters, ExpectedTensorsFollowConfig) {
  // Layer 0 is dense (dense_layers = 1) for the qwen MoE and deepseek families.
  for (const std::string type : {"qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3"}) {
    SCOPED_TRACE(type);
    const ModelConfig config = RichConfig(type);
    auto adapter = Adapter(config);
    std::set<std::pair<int, TensorRole>> seen;
    for (const auto& [id, shape] : adapter->ExpectedTensors()) seen.emplace(id.layer, id.role);
    EXPECT_TRUE(seen.count({0, TensorRole::kMlpDown}));
    EXPECT_FALSE(seen.count({0, TensorRole::kExpertDown}));
    EXPECT_FALSE(seen.count({0, TensorRole::kRouter}));
    EXPECT_TRUE(seen.count({1, TensorRole::kExpertDown}));
    EXPECT_TRUE(seen.count({1, TensorRole::kRouter}));
    EXPECT_EQ(seen.count({1, TensorRole::kSharedDown}), type == "qwen3_moe" ? 0u : 1u);
    EXPECT_FALSE(seen.count({1, TensorRole::kMlpDown}));
    EXPECT_EQ(seen.count({1, TensorRole::kRouterBias}), type == "deepseek_v3" ? 1u : 0u);
    EXPECT_EQ(seen.count({1, TensorRole::kSharedExpertGate}), type == "qwen2_moe" ? 1u : 0u);
  }
}

TEST(Adapters, TinyQwen3MoeTensorCount) {
  test::SyntheticCheckpointOptions o;
  o.model_type = "qwen3_moe";
  o.layers = 4;
  o.hidden = 128;
  o.experts = 64;
  auto config = ParseModelConfig(test::SyntheticConfig(o), "config.json");
  ASSERT_TRUE(config.ok());
  // 3 model-level + 4 × (2 norms + 4 proj + 2 qk norms + router + 64 × 3 experts).
  EXPECT_EQ(Adapter(*config)->ExpectedTensors().size(), 3u + 4u * (2 + 4 + 2 + 1 + 192));
}

TEST(Adapters, MixtralNames) {
  auto a = Adapter(RichConfig("mixtral"));
  struct Case {
    const char* name;
    TensorId id;
  } cases[] = {
      {"model.layers.1.block_sparse_moe.experts.2.w1.weight", {1, 2, TensorRole::kExpertGate}},
      {"model.layers.1.block_sparse_moe.experts.2.w2.weight", {1, 2, TensorRole::kExpertDown}},
      {"model.layers.1.block_sparse_moe.experts.2.w3.weight", {1, 2, TensorRole::kExpertUp}},
      {"model.layers.0.block_sparse_moe.gate.weight", {0, -1, TensorRole::kRouter}},
      {"model.embed_tokens.weight", {-1, -1, TensorRole::kEmbedding}},
      {"lm_head.weight", {-1, -1, TensorRole::kLmHead}},
      {"model.norm.weight", {-1, -1, TensorRole::kFinalNorm}},
  };
  for (const auto& c : cases) {
    auto got = a->Classify(c.name);
    ASSERT_TRUE(got.has_value()) << c.name;
    EXPECT_EQ(got->id, c.id) << c.name;
    EXPECT_EQ(a->Name(c.id), c.name);
  }
}

TEST(Adapters, FusedExpertTensors) {
  for (const std::string type : {"qwen3_moe", "qwen2_moe", "olmoe", "deepseek_v3"}) {
    SCOPED_TRACE(type);
    auto a = Adapter(RichConfig(type));
    for (const auto& [suffix, role] : std::vector<std::pair<std::string, TensorRole>>{
             {"gate_up_proj", TensorRole::kExpertGateUp},
             {"down_proj", TensorRole::kExpertDown},
             {"gate_proj", TensorRole::kExpertGate},
             {"up_proj", TensorRole::kExpertUp}}) {
      const std::string name = "model.layers.2.mlp.experts." + suffix;
      auto c = a->Classify(name);
      ASSERT_TRUE(c.has_value()) << name;
      EXPECT_TRUE(c->fused_experts);
      EXPECT_EQ(c->id, (TensorId{2, -1, role}));
      EXPECT_EQ(a->Name(c->id), name);
    }
  }
  auto mixtral = Adapter(RichConfig("mixtral"));
  auto c = mixtral->Classify("model.layers.0.block_sparse_moe.experts.gate_up_proj");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->fused_experts);
  EXPECT_EQ(c->id, (TensorId{0, -1, TensorRole::kExpertGateUp}));
  // transformers v5 spelling of the same tensor; Name() gives the canonical one.
  auto v5 = mixtral->Classify("model.layers.0.mlp.experts.gate_up_proj");
  ASSERT_TRUE(v5.has_value());
  EXPECT_EQ(v5->id, c->id);
  EXPECT_EQ(mixtral->Name(v5->id), "model.layers.0.block_sparse_moe.experts.gate_up_proj");
}

TEST(Adapters, BuffersAndFamilySpecificTensors) {
  auto qwen3 = Adapter(RichConfig("qwen3_moe"));
  auto inv = qwen3->Classify("model.layers.1.self_attn.rotary_emb.inv_freq");
  ASSERT_TRUE(inv.has_value());
  EXPECT_EQ(inv->id.role, TensorRole::kBuffer);
  EXPECT_EQ(qwen3->Classify("model.rotary_emb.inv_freq")->id.role, TensorRole::kBuffer);

  auto qwen2 = Adapter(RichConfig("qwen2_moe"));
  EXPECT_EQ(qwen2->Classify("model.layers.1.mlp.shared_expert_gate.weight")->id.role,
            TensorRole::kSharedExpertGate);
  EXPECT_EQ(qwen2->Classify("model.layers.1.mlp.shared_expert.down_proj.weight")->id.role,
            TensorRole::kSharedDown);
  EXPECT_EQ(qwen2->Classify("model.layers.1.self_attn.q_proj.bias")->id.role,
            TensorRole::kAttnQBias);
  EXPECT_FALSE(qwen2->Classify("model.layers.1.self_attn.o_proj.bias").has_value());

  auto v3 = Adapter(RichConfig("deepseek_v3"));
  EXPECT_EQ(v3->Classify("model.layers.1.mlp.gate.e_score_correction_bias")->id.role,
            TensorRole::kRouterBias);
  EXPECT_EQ(v3->Classify("model.layers.1.self_attn.kv_a_proj_with_mqa.weight")->id.role,
            TensorRole::kAttnKVA);
  EXPECT_EQ(v3->Classify("model.layers.1.mlp.shared_experts.up_proj.weight")->id.role,
            TensorRole::kSharedUp);
  auto v2 = Adapter(RichConfig("deepseek_v2"));
  EXPECT_FALSE(v2->Classify("model.layers.1.mlp.gate.e_score_correction_bias").has_value());
}

TEST(Adapters, QkNormShapesDifferByFamily) {
  auto shape_of = [](const std::string& type, TensorRole role) {
    auto a = Adapter(RichConfig(type));
    for (const auto& [id, shape] : a->ExpectedTensors()) {
      if (id.role == role) return shape;
    }
    return std::vector<int64_t>{};
  };
  // hidden 64, 4 heads of 16, 2 kv heads.
  EXPECT_EQ(shape_of("qwen3_moe", TensorRole::kAttnQNorm), (std::vector<int64_t>{16}));
  EXPECT_EQ(shape_of("olmoe", TensorRole::kAttnQNorm), (std::vector<int64_t>{64}));
  EXPECT_EQ(shape_of("olmoe", TensorRole::kAttnKNorm), (std::vector<int64_t>{32}));
  EXPECT_EQ(shape_of("qwen3_moe", TensorRole::kExpertDown), (std::vector<int64_t>{64, 32}));
  // MLA: kv_lora_rank 32 + rope 8; kv_b: heads × (nope 16 + v 16).
  EXPECT_EQ(shape_of("deepseek_v3", TensorRole::kAttnKVA), (std::vector<int64_t>{40, 64}));
  EXPECT_EQ(shape_of("deepseek_v3", TensorRole::kAttnKVB), (std::vector<int64_t>{128, 32}));
  EXPECT_EQ(shape_of("deepseek_v3", TensorRole::kAttnQB), (std::vector<int64_t>{96, 32}));
  EXPECT_EQ(shape_of("deepseek_v2", TensorRole::kAttnQ), (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(shape_of("deepseek_v3", TensorRole::kAttnO), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(shape_of("qwen2_moe", TensorRole::kSharedGate), (std::vector<int64_t>{32, 64}));
}

TEST(Adapters, UnknownNamesAreNotClassified) {
  auto a = Adapter(RichConfig("qwen3_moe"));  // 3 layers, 4 experts
  for (const char* name : {"", "model.layers.0.mlp.mystery.weight", "lm_head.bias",
                           "model.layers.3.self_attn.q_proj.weight",   // layer out of range
                           "model.layers.01.self_attn.q_proj.weight",  // non-canonical index
                           "model.layers.-1.self_attn.q_proj.weight",
                           "model.layers.x.self_attn.q_proj.weight", "model.layers.1",
                           "model.layers.1.mlp.experts.4.gate_proj.weight",  // expert out of range
                           "model.layers.1.mlp.experts..gate_proj.weight",
                           "model.layers.1.mlp.experts.1.gate_proj.weight.scales",
                           "model.layers.1.block_sparse_moe.experts.1.w1.weight",
                           "model.layers.1.self_attn.q_proj.weight_scale_inv"}) {
    EXPECT_FALSE(a->Classify(name).has_value()) << name;
  }
  EXPECT_EQ(a->Name(TensorId{1, 2, TensorRole::kExpertGateUp}), "");
}

TEST(Adapters, UnsupportedModelTypeListsSupportedOnes) {
  ModelConfig c;
  c.model_type = "gpt_neox";
  auto a = MakeArchAdapter(c);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(Contains(a.status().message(), "gpt_neox"));
  for (const auto& t : SupportedModelTypes()) EXPECT_TRUE(Contains(a.status().message(), t));
}

}  // namespace
}  // namespace moeq
