// The engine runs weights where they lie (bf16/f16/f32 in the mapped checkpoint), offline
// passes run layer by layer over many windows, and the weight overlay of moeq-calibrate.
#include <gtest/gtest.h>

#include <filesystem>

#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/formats/safetensors.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

std::unique_ptr<Engine> Load(const std::string& dir, int threads = 1) {
  auto c = Checkpoint::Open(dir);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return nullptr;
  auto e = Engine::Load(**c, {threads});  // the checkpoint handle is closed on return
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

// Copies a checkpoint with every tensor converted to `dtype` (exactly: bf16 -> f32).
void ConvertCheckpoint(const std::string& from, const std::string& to, DType dtype) {
  auto c = Checkpoint::Open(from);
  ASSERT_TRUE(c.ok());
  std::filesystem::create_directories(to);
  std::vector<TensorInfo> infos;
  for (const auto& t : (*c)->tensors()) infos.push_back({t.info.name, dtype, t.info.shape});
  auto w = SafetensorsWriter::Create(to + "/model.safetensors", infos);
  ASSERT_TRUE(w.ok());
  for (const auto& t : (*c)->tensors()) {
    std::vector<float> v;
    ASSERT_TRUE((*c)->ReadF32(t.info.name, &v).ok());
    ASSERT_TRUE((*w)->Write(t.info.name, std::as_bytes(std::span<const float>(v))).ok());
  }
  ASSERT_TRUE((*w)->Finish().ok());
  std::filesystem::copy_file(from + "/config.json", to + "/config.json");
}

std::vector<int32_t> Tokens(int n, int salt = 0) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + 5 + salt * 11) % 256);
  return t;
}

class EngineInPlace : public ::testing::Test {
 protected:
  void SetUp() override {
    so_.experts = 8;
    so_.top_k = 2;
    so_.shards = 3;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir_.Join("bf16"), so_).ok());
  }
  test::ScopedTempDir dir_;
  test::SyntheticCheckpointOptions so_;
};

// bf16 weights converted tile by tile inside the products give the same bits as the float32
// path on an exact float32 copy of the model (the kernels see the same float32 tiles).
TEST_F(EngineInPlace, Bf16InPlaceMatchesAnF32Copy) {
  ConvertCheckpoint(dir_.Join("bf16"), dir_.Join("f32"), DType::kF32);
  auto a = Load(dir_.Join("bf16"), 2), b = Load(dir_.Join("f32"), 2);
  ASSERT_TRUE(a && b);
  std::vector<float> la, lb;
  ASSERT_TRUE(a->Forward(Tokens(40), &la).ok());
  ASSERT_TRUE(b->Forward(Tokens(40), &lb).ok());
  EXPECT_EQ(la, lb);
  // Only norms are copied into the engine's memory; the matrices stay in the mapping.
  EXPECT_LT(a->owned_weight_bytes() * 50, a->weight_bytes());
  EXPECT_LT(b->owned_weight_bytes() * 50, b->weight_bytes());
  EXPECT_EQ(a->weight_bytes() * 2,
            b->weight_bytes() + a->owned_weight_bytes());  // norms are f32 in both
}

TEST_F(EngineInPlace, F16InPlaceMatchesAnF32Copy) {
  so_.dtype = DType::kF16;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir_.Join("f16"), so_).ok());
  ConvertCheckpoint(dir_.Join("f16"), dir_.Join("f32"), DType::kF32);
  auto a = Load(dir_.Join("f16")), b = Load(dir_.Join("f32"));
  ASSERT_TRUE(a && b);
  std::vector<float> la, lb;
  ASSERT_TRUE(a->Forward(Tokens(24), &la).ok());
  ASSERT_TRUE(b->Forward(Tokens(24), &lb).ok());
  EXPECT_EQ(la, lb);
}

// Layer by layer over many windows = Forward on each window, for any thread count, with the
// same observer calls; a pass resumed from a cached layer input gives the same bits.
TEST_F(EngineInPlace, LayerMajorPassEqualsForwardPerWindow) {
  auto e = Load(dir_.Join("bf16"), 2);
  ASSERT_TRUE(e);
  std::vector<std::vector<int32_t>> ids = {Tokens(32, 0), Tokens(32, 1), Tokens(17, 2)};
  std::vector<std::span<const int32_t>> spans(ids.begin(), ids.end());
  struct Count : ForwardObserver {
    std::vector<int32_t> experts;
    void OnRouting(int, int64_t tokens, int top_k, std::span<const int32_t> ex,
                   std::span<const float>, std::span<const float>,
                   std::span<const float>) override {
      experts.insert(experts.end(), ex.begin(), ex.begin() + tokens * top_k);
    }
  };
  for (int threads : {1, 2, 3}) {
    std::vector<Count> obs(ids.size());
    std::vector<ForwardObserver*> ptr;
    for (auto& o : obs) ptr.push_back(&o);
    std::vector<std::vector<float>> hidden;
    ASSERT_TRUE(e->ForwardHidden(spans, &hidden, ptr, threads).ok());
    for (size_t w = 0; w < ids.size(); ++w) {
      std::vector<float> logits, direct;
      Count direct_obs;
      ASSERT_TRUE(e->LogitsFromHidden(&hidden[w], &logits).ok());
      ASSERT_TRUE(e->Forward(ids[w], &direct, &direct_obs, 1).ok());
      EXPECT_EQ(logits, direct) << "window " << w << ", threads " << threads;
      EXPECT_EQ(obs[w].experts, direct_obs.experts);
    }
  }
  // Resume at layer 1 from the stream entering it.
  std::vector<std::vector<float>> x(1), full(1);
  ASSERT_TRUE(e->Embed(ids[0], &x[0]).ok());
  full = x;
  ASSERT_TRUE(e->ForwardLayers(0, 1, &x).ok());
  ASSERT_TRUE(e->ForwardLayers(1, so_.layers, &x).ok());
  ASSERT_TRUE(e->ForwardLayers(0, so_.layers, &full).ok());
  EXPECT_EQ(x[0], full[0]);
  EXPECT_FALSE(e->ForwardLayers(1, so_.layers + 1, &x).ok());
}

TEST_F(EngineInPlace, WeightOverlayReplacesAndRestores) {
  auto e = Load(dir_.Join("bf16"));
  ASSERT_TRUE(e);
  auto c = Checkpoint::Open(dir_.Join("bf16"));
  ASSERT_TRUE(c.ok());
  std::vector<float> base, same, changed, restored;
  ASSERT_TRUE(e->Forward(Tokens(24), &base).ok());
  const std::string name = "model.layers.1.mlp.experts.3.down_proj.weight";
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  std::vector<float> v, vq;
  ASSERT_TRUE((*c)->ReadF32(name, &v).ok());
  ASSERT_TRUE((*c)->ReadF32(q, &vq).ok());
  // The same values: the same bits.
  ASSERT_TRUE(e->OverrideWeights(name, v).ok());
  ASSERT_TRUE(e->Forward(Tokens(24), &same).ok());
  EXPECT_EQ(same, base);
  e->ClearOverrides();
  // Other values change the output; clearing restores it exactly.
  for (float& x : vq) x *= 1.5f;
  ASSERT_TRUE(e->OverrideWeights(q, vq).ok());
  ASSERT_TRUE(e->Forward(Tokens(24), &changed).ok());
  EXPECT_NE(changed, base);
  e->ClearOverrides();
  ASSERT_TRUE(e->Forward(Tokens(24), &restored).ok());
  EXPECT_EQ(restored, base);
  // Errors: unknown tensor, too few values, a norm (not a matrix of the engine).
  EXPECT_FALSE(e->OverrideWeights("nope", v).ok());
  EXPECT_FALSE(e->OverrideWeights(q, std::vector<float>(10)).ok());
  EXPECT_FALSE(e->OverrideWeights("model.norm.weight", std::vector<float>(64)).ok());
}

TEST(EngineInPlaceFused, FusedExpertsInPlaceMatchPerExpert) {
  test::ScopedTempDir dir;
  test::SyntheticCheckpointOptions so;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("a"), so).ok());
  so.fused_experts = true;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("b"), so).ok());
  auto a = Load(dir.Join("a"), 2), b = Load(dir.Join("b"), 2);
  ASSERT_TRUE(a && b);
  std::vector<float> la, lb;
  ASSERT_TRUE(a->Forward(Tokens(30), &la).ok());
  ASSERT_TRUE(b->Forward(Tokens(30), &lb).ok());
  EXPECT_EQ(la, lb);
}

}  // namespace
}  // namespace moeq
