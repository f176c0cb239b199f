// Family conformance: for every supported model_type, the family traits table
// (moeq/model/family.h) agrees with the config parser, the architecture adapter, a synthetic
// checkpoint, the GGUF writer's architecture map, mlx-lm's stacked names and the engine.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/model/family.h"
#include "moeq/model/mlx_names.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

/// Options exercising every optional part of a family: shared experts, a leading dense layer.
test::SyntheticCheckpointOptions Options(const std::string& model_type) {
  test::SyntheticCheckpointOptions o;
  o.model_type = model_type;
  o.layers = 3;
  o.shared_experts = 1;
  o.dense_layers = 1;
  o.seed = 11;
  return o;
}

class FamilyConformance : public ::testing::TestWithParam<std::string> {
 protected:
  const FamilyTraits& family() const {
    const FamilyTraits* f = FindFamily(GetParam());
    MOEQ_CHECK(f != nullptr);
    return *f;
  }
  ModelConfig Config() const {
    auto c = ParseModelConfig(test::SyntheticConfig(Options(GetParam())), "config.json");
    MOEQ_CHECK(c.ok());
    return *c;
  }
};

TEST_P(FamilyConformance, ConfigParsesWithTheFamilysTraits) {
  auto c = ParseModelConfig(test::SyntheticConfig(Options(GetParam())), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, GetParam());
  const FamilyTraits& f = family();
  EXPECT_EQ(c->is_moe(), f.plan != LayerPlan::kDense);
  EXPECT_EQ(f.router == RouterNorm::kNone, f.plan == LayerPlan::kDense);
  EXPECT_EQ(f.expert_width == ExpertWidth::kNone, f.plan == LayerPlan::kDense);
  EXPECT_EQ(f.moe_block.empty(), f.plan == LayerPlan::kDense);
  EXPECT_EQ(c->num_shared_experts > 0, f.shared != SharedExperts::kNone);
  if (f.qkv_bias_always) {
    EXPECT_TRUE(c->attention_bias);
  }
  if (f.plan != LayerPlan::kDense) {
    // norm_topk_prob defaults to the family's value when config.json omits it.
    test::SyntheticCheckpointOptions o = Options(GetParam());
    o.config_patch = {{"norm_topk_prob", nullptr}};
    auto d = ParseModelConfig(test::SyntheticConfig(o), "config.json");
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->norm_topk_prob, f.norm_topk_default);
    d->norm_topk_prob = false;
    EXPECT_EQ(RouterRenormalizesTopk(f, *d), f.router == RouterNorm::kAlwaysTopk);
    d->norm_topk_prob = true;
    EXPECT_TRUE(RouterRenormalizesTopk(f, *d));
  }
}

TEST_P(FamilyConformance, ExpectedTensorsMatchSyntheticCheckpoint) {
  test::ScopedTempDir dir;
  auto written = test::WriteSyntheticCheckpoint(dir.path(), Options(GetParam()));
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  auto adapter = MakeArchAdapter(Config());
  ASSERT_TRUE(adapter.ok()) << adapter.status().ToString();
  std::map<std::string, std::vector<int64_t>> expected;
  bool has_q_norm = false;
  for (const auto& [id, shape] : (*adapter)->ExpectedTensors()) {
    expected[(*adapter)->Name(id)] = shape;
    has_q_norm |= id.role == TensorRole::kAttnQNorm;
  }
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& t : written->tensors) got[t.name] = t.shape;
  EXPECT_EQ(expected, got);
  EXPECT_EQ(has_q_norm, family().qk_norm);
  for (const auto& [name, shape] : got) {
    auto cls = (*adapter)->Classify(name);
    ASSERT_TRUE(cls.has_value()) << name;
    EXPECT_EQ((*adapter)->Name(cls->id), name);
    if (cls->id.role == TensorRole::kAttnQNorm) {
      const ModelConfig c = Config();
      EXPECT_EQ(shape[0], family().full_width_qk_norm ? c.num_heads * c.head_dim : c.head_dim);
    }
  }
}

TEST_P(FamilyConformance, GgufArchitectureMapsBothWays) {
  const FamilyTraits& f = family();
  auto arch = GgufArchitecture(GetParam());
  if (f.gguf_arch.empty()) {
    EXPECT_FALSE(arch.ok());
    return;
  }
  ASSERT_TRUE(arch.ok()) << arch.status().ToString();
  EXPECT_EQ(*arch, f.gguf_arch);
  const FamilyTraits* back = FindFamilyByGgufArch(*arch, f.plan != LayerPlan::kDense);
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(back->model_type, f.model_type);
  EXPECT_EQ(f.gguf_rope_permute, f.gguf_arch == "llama");
}

TEST_P(FamilyConformance, StackedMlxNamesRoundTrip) {
  auto adapter = MakeArchAdapter(Config());
  ASSERT_TRUE(adapter.ok());
  const ModelConfig c = Config();
  int stacked = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    for (TensorRole role :
         {TensorRole::kExpertGate, TensorRole::kExpertUp, TensorRole::kExpertDown}) {
      auto name = MlxStackedModule(**adapter, l, role);
      if (!c.is_moe()) {
        EXPECT_FALSE(name.ok());
        continue;
      }
      ASSERT_TRUE(name.ok()) << name.status().ToString();
      ++stacked;
      // The stacked module sits where the per-expert tensors' ".experts.<e>." is.
      const std::string per_expert = (*adapter)->Name(TensorId{l, 3, role});
      const size_t at = name->find(".switch_mlp.");
      ASSERT_NE(at, std::string::npos) << *name;
      const std::string block = name->substr(0, at);
      EXPECT_EQ(per_expert.rfind(block + ".experts.3.", 0), 0u) << per_expert << " vs " << *name;
      auto cls = (*adapter)->Classify(per_expert);
      ASSERT_TRUE(cls.has_value());
      EXPECT_EQ(cls->id, (TensorId{l, 3, role}));
      EXPECT_EQ(name->substr(at + 12), role == TensorRole::kExpertGate ? "gate_proj"
                                       : role == TensorRole::kExpertUp ? "up_proj"
                                                                       : "down_proj");
    }
  }
  EXPECT_EQ(stacked > 0, c.is_moe());
}

TEST_P(FamilyConformance, NormToProjectionMapCoversEveryLinear) {
  auto adapter = MakeArchAdapter(Config());
  ASSERT_TRUE(adapter.ok());
  std::map<TensorId, std::vector<int64_t>> tensors;
  for (const auto& [id, shape] : (*adapter)->ExpectedTensors()) tensors[id] = shape;
  // Linears whose input is not a norm's output.
  const std::set<TensorRole> not_normed = {TensorRole::kEmbedding, TensorRole::kAttnO,
                                           TensorRole::kExpertDown, TensorRole::kSharedDown,
                                           TensorRole::kMlpDown};
  int checked = 0;
  for (const auto& [id, shape] : tensors) {
    if (!IsQuantizableRole(id.role)) continue;
    const auto norm = InputNormOf(family(), id.role);
    if (not_normed.count(id.role)) {
      EXPECT_FALSE(norm.has_value()) << RoleName(id.role);
      continue;
    }
    ASSERT_TRUE(norm.has_value()) << (*adapter)->Name(id) << " has no input norm";
    EXPECT_TRUE(IsNormRole(*norm)) << RoleName(*norm);
    const TensorId norm_id{*norm == TensorRole::kFinalNorm ? -1 : id.layer, -1, *norm};
    auto it = tensors.find(norm_id);
    ASSERT_NE(it, tensors.end()) << (*adapter)->Name(id) << ": norm " << RoleName(*norm)
                                 << " is not in the checkpoint";
    ASSERT_EQ(shape.size(), 2u);
    EXPECT_EQ(it->second, std::vector<int64_t>{shape[1]}) << (*adapter)->Name(id);
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST_P(FamilyConformance, EngineRunsAForwardPass) {
  test::ScopedTempDir dir;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.path(), Options(GetParam())).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto engine = Engine::Load(**ckpt, {2});
  if (family().mla) {
    // Multi-head latent attention is not run by the engine: a clear error, not a crash.
    ASSERT_FALSE(engine.ok());
    EXPECT_NE(engine.status().ToString().find("latent attention"), std::string::npos);
    return;
  }
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const std::vector<int32_t> ids = {1, 7, 200, 3};
  std::vector<float> logits;
  ASSERT_TRUE((*engine)->Forward(ids, &logits).ok());
  ASSERT_EQ(logits.size(), ids.size() * static_cast<size_t>((*engine)->vocab_size()));
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

std::vector<std::string> FamilyNames() {
  std::vector<std::string> names;
  for (const auto& f : AllFamilies()) names.emplace_back(f.model_type);
  return names;
}

INSTANTIATE_TEST_SUITE_P(All, FamilyConformance, ::testing::ValuesIn(FamilyNames()),
                         [](const auto& param_info) { return param_info.param; });

TEST(FamilyTraitsTable, CoversExactlyTheSupportedModelTypes) {
  EXPECT_EQ(FamilyNames(), SupportedModelTypes());
}

}  // namespace
}  // namespace moeq
