// Checkpoint::Open on a .gguf file (src/io/gguf_checkpoint.cpp): the config rebuilt from the
// metadata equals the source's, tensors come back with the Hugging Face names and shapes, an
// F32 GGUF gives the engine bit-identical logits to the source checkpoint (Mixtral's q/k
// permutation undone), quantized GGUFs decode to the GgufFile's values and stay close, and
// the tokenizer read from the GGUF metadata encodes like tokenizer.json. (llama.cpp itself is
// compared in tests/llamacpp/.)
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/export/quant_plan.h"
#include "moeq/tokenizer/tokenizer.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

test::SyntheticCheckpointOptions Opts(const std::string& type) {
  test::SyntheticCheckpointOptions o;
  o.model_type = type;
  o.layers = 2;
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.experts = 4;
  o.top_k = 2;
  o.moe_ff = 64;
  o.dense_ff = 128;
  o.vocab = 256;
  o.shared_experts = type == "qwen2_moe" ? 1 : 0;
  o.dense_layers =
      type == "qwen3_moe" ? 1 : 0;  // a dense first layer: mlp_only_layers from the tensors
  o.tokenizer = false;
  return o;
}

std::vector<float> Logits(const Checkpoint& ckpt, const std::vector<int32_t>& ids) {
  auto engine = Engine::Load(ckpt);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  if (!engine.ok()) return {};
  std::vector<float> logits;
  EXPECT_TRUE((*engine)->Forward(ids, &logits).ok());
  return logits;
}

class GgufCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufCheckpoint, F32GgufGivesTheSourceLogitsAndConfig) {
  test::ScopedTempDir tmp("moeq-gguf-ckpt");
  const std::string dir = tmp.Join("m");
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir, Opts(GetParam())).ok());
  auto src = Checkpoint::Open(dir);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  QuantPlan f32;
  f32.source = "f32";
  for (const auto& t : (*src)->tensors()) {
    if (IsQuantizableRole(t.id.role)) f32.formats[t.info.name] = quant::FindFormat("f32");
  }
  GgufWriteOptions wo;
  wo.progress = false;
  const std::string gguf = tmp.Join("m.gguf");
  ASSERT_TRUE(WriteGguf(**src, f32, gguf, wo).ok());

  auto g = Checkpoint::Open(gguf);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE((*g)->is_gguf());
  const ModelConfig& a = (*src)->config();
  const ModelConfig& b = (*g)->config();
  EXPECT_EQ(b.model_type, a.model_type);
  EXPECT_EQ(b.hidden_size, a.hidden_size);
  EXPECT_EQ(b.num_layers, a.num_layers);
  EXPECT_EQ(b.num_heads, a.num_heads);
  EXPECT_EQ(b.num_kv_heads, a.num_kv_heads);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(b.num_experts, a.num_experts);
  EXPECT_EQ(b.top_k, a.top_k);
  EXPECT_EQ(b.moe_intermediate_size, a.moe_intermediate_size);
  EXPECT_EQ(b.shared_expert_intermediate_size, a.shared_expert_intermediate_size);
  EXPECT_EQ(b.moe_layer, a.moe_layer);
  EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings);
  EXPECT_EQ(b.norm_topk_prob || b.model_type == "mixtral",
            a.norm_topk_prob || a.model_type == "mixtral");
  EXPECT_EQ((*g)->GgufStorageType((*g)->tensors().front().info.name), "f32");

  // Non-expert tensors keep their Hugging Face names and values.
  for (const auto& t : (*src)->tensors()) {
    if (IsExpertRole(t.id.role)) continue;
    const CheckpointTensor* u = (*g)->Find(t.info.name);
    ASSERT_NE(u, nullptr) << t.info.name;
    EXPECT_EQ(u->info.shape, t.info.shape) << t.info.name;
    EXPECT_EQ(u->id, t.id) << t.info.name;
    std::vector<float> x, y;
    ASSERT_TRUE((*src)->ReadF32(t.info.name, &x).ok());
    ASSERT_TRUE((*g)->ReadF32(t.info.name, &y).ok());
    EXPECT_EQ(x, y) << t.info.name;
  }
  const std::vector<int32_t> ids = {1, 17, 42, 99, 3, 250, 7, 7, 128, 64};
  const std::vector<float> la = Logits(**src, ids), lb = Logits(**g, ids);
  ASSERT_EQ(la.size(), lb.size());
  ASSERT_FALSE(la.empty());
  for (size_t i = 0; i < la.size(); ++i) ASSERT_EQ(la[i], lb[i]) << "logit " << i;
  // View: mapped float bytes (or decoded float32) equal to ReadF32.
  for (const auto& t : (*g)->tensors()) {
    auto v = (*g)->View(t.info.name);
    ASSERT_TRUE(v.ok()) << t.info.name << ": " << v.status().ToString();
    auto f = ToF32(*v);
    ASSERT_TRUE(f.ok());
    std::vector<float> r;
    ASSERT_TRUE((*g)->ReadF32(t.info.name, &r).ok());
    EXPECT_EQ(*f, r) << t.info.name;
  }
}

TEST_P(GgufCheckpoint, QuantizedGgufDecodesTheFileAndStaysClose) {
  test::ScopedTempDir tmp("moeq-gguf-ckpt");
  const std::string dir = tmp.Join("m");
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir, Opts(GetParam())).ok());
  auto src = Checkpoint::Open(dir);
  ASSERT_TRUE(src.ok());
  auto plan = MakeUniformPlan(**src, *quant::FindFormat("q8g32"));
  ASSERT_TRUE(plan.ok());
  GgufWriteOptions wo;
  wo.progress = false;
  wo.force_type = GgmlType::kQ5_0;  // a legacy type no plan format maps to
  const std::string gguf = tmp.Join("m.gguf");
  ASSERT_TRUE(WriteGguf(**src, *plan, gguf, wo).ok());
  auto file = GgufFile::Open(gguf);
  ASSERT_TRUE(file.ok());
  auto g = Checkpoint::Open(gguf);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  // A fused expert tensor is the GGUF 3-D tensor, decoded.
  const CheckpointTensor* down = nullptr;
  for (const auto& t : (*g)->tensors()) {
    if (t.fused_experts && t.id.role == TensorRole::kExpertDown && t.id.layer == 1) down = &t;
  }
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->info.shape, (std::vector<int64_t>{4, 64, 64}));
  EXPECT_EQ((*g)->GgufStorageType(down->info.name), "q5_0");
  std::vector<float> mine;
  ASSERT_TRUE((*g)->ReadF32(down->info.name, &mine).ok());
  auto view = (*g)->View(down->info.name);  // decoded once, float32
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->data.size(), mine.size() * sizeof(float));
  EXPECT_EQ(*ToF32(*view), mine);
  auto want = (*file)->DequantizeTensor("blk.1.ffn_down_exps.weight");
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(mine, *want);

  const std::vector<int32_t> ids = {1, 17, 42, 99, 3, 250, 7, 7, 128, 64};
  const std::vector<float> la = Logits(**src, ids), lb = Logits(**g, ids);
  ASSERT_EQ(la.size(), lb.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    num += (la[i] - lb[i]) * (la[i] - lb[i]);
    den += la[i] * la[i];
  }
  EXPECT_LT(std::sqrt(num / den),
            0.2);  // 5.5-bit weights: logits within 20 % relative RMS (measured 0.104)
  EXPECT_GT(std::sqrt(num / den), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Families, GgufCheckpoint,
                         ::testing::Values("qwen3_moe", "qwen2_moe", "mixtral"),
                         [](const auto& param_info) { return param_info.param; });

TEST(GgufCheckpointTokenizer, Gpt2VocabularyFromGgufEncodesLikeTokenizerJson) {
  const std::string model = std::string(kSourceDir) + "/models/tiny-qwen3moe";
  if (!fs::exists(model + "/tokenizer_tests.json"))
    GTEST_FAIL() << "bundled model not found at " << model;
  test::ScopedTempDir tmp("moeq-gguf-tok");
  auto src = Checkpoint::Open(model);
  ASSERT_TRUE(src.ok());
  auto plan = MakeUniformPlan(**src, *quant::FindFormat("q8g32"));
  ASSERT_TRUE(plan.ok());
  GgufWriteOptions wo;
  wo.progress = false;
  wo.require_tokenizer = true;
  const std::string gguf = tmp.Join("m.gguf");
  ASSERT_TRUE(WriteGguf(**src, *plan, gguf, wo).ok());
  auto a = Tokenizer::Load(model + "/tokenizer.json");
  auto b = Tokenizer::Load(gguf);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ((*a)->eos_id(), (*b)->eos_id());
  EXPECT_EQ((*a)->add_bos_token(), (*b)->add_bos_token());
  auto tests = ReadJsonFile(model + "/tokenizer_tests.json");
  ASSERT_TRUE(tests.ok());
  int n = 0;
  for (const auto& t : (*tests)["tests"]) {
    const std::string text = t.at("text").get<std::string>();
    auto x = (*a)->Encode(text);
    auto y = (*b)->Encode(text);
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(*x, *y) << text;
    EXPECT_EQ(*y, t.at("ids").get<std::vector<int32_t>>()) << text;
    EXPECT_EQ((*b)->Decode(*y), (*a)->Decode(*x));
    ++n;
  }
  EXPECT_GE(n, 10);
}

}  // namespace
}  // namespace moeq
