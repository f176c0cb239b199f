// moeq-synth: real-architecture checkpoints, on shrunken sizes of the presets.
#include "moeq/checkpoint/synth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "moeq/base/file_util.h"
#include "moeq/base/half.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/tokenizer/tokenizer.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

// qwen3-30b-a3b with every size cut down (the vocabulary too, so no tokenizer).
SynthOptions Tiny(uint64_t seed = 7) {
  SynthOptions o;
  o.preset = "qwen3-30b-a3b";
  o.layers = 2;
  o.hidden = 128;
  o.heads = 4;
  o.kv_heads = 2;
  o.head_dim = 32;
  o.experts = 8;
  o.top_k = 2;
  o.moe_ff = 64;
  o.vocab = 512;
  o.seed = seed;
  o.shard_bytes = 400'000;  // several shards
  o.threads = 2;
  return o;
}

std::map<std::string, std::string> FileHashes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    auto h = Sha256File(e.path().string());
    EXPECT_TRUE(h.ok());
    out[e.path().filename().string()] = h.ok() ? *h : "";
  }
  return out;
}

std::vector<float> Values(const Checkpoint& c, const std::string& name) {
  std::vector<float> v;
  EXPECT_TRUE(c.ReadF32(name, &v).ok()) << name;
  return v;
}

TEST(Synth, PresetsHaveTheRealShapes) {
  auto q = FindSynthPreset("qwen3-30b-a3b");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->hidden, 2048);
  EXPECT_EQ(q->layers, 48);
  EXPECT_EQ(q->experts, 128);
  EXPECT_EQ(q->top_k, 8);
  EXPECT_EQ(q->moe_ff, 768);
  EXPECT_EQ(q->heads, 32);
  EXPECT_EQ(q->kv_heads, 4);
  EXPECT_EQ(q->head_dim, 128);
  EXPECT_EQ(q->vocab, 151936);
  auto m = FindSynthPreset("mixtral-8x7b");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->hidden, 4096);
  EXPECT_EQ(m->experts, 8);
  EXPECT_EQ(m->moe_ff, 14336);
  EXPECT_FALSE(FindSynthPreset("gpt-5").ok());

  // The full config parses, and counts 30.5 B parameters as the real model has.
  SynthOptions o;
  auto text = SynthConfigJson(o);
  ASSERT_TRUE(text.ok());
  auto cfg = ParseModelConfig(nlohmann::json::parse(*text), "config.json");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->num_experts, 128);
  EXPECT_EQ(cfg->head_dim, 128);
  EXPECT_FALSE(cfg->tie_word_embeddings);
}

TEST(Synth, WritesAShardedCheckpointThatOpensStrictly) {
  test::ScopedTempDir tmp;
  const std::string dir = tmp.Join("m");
  auto s = WriteSynthCheckpoint(dir, Tiny());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_GT(s->shard_files.size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(s->tokenizer);  // vocabulary overridden: the Qwen3 tokenizer would not fit
  CheckpointOptions co;
  co.strict = true;
  co.check_finite = true;
  auto c = Checkpoint::Open(dir, co);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->config().model_type, "qwen3_moe");
  EXPECT_EQ((*c)->config().num_layers, 2);
  EXPECT_EQ((*c)->config().num_experts, 8);
  EXPECT_TRUE((*c)->unknown_tensors().empty());
  int64_t params = 0;
  for (const auto& t : (*c)->tensors()) {
    EXPECT_EQ(t.info.dtype, DType::kBF16) << t.info.name;
    params += t.info.numel();
  }
  EXPECT_EQ(params, s->parameters);
  // Qwen3-MoE's per-head q/k norms are there.
  EXPECT_NE((*c)->Find("model.layers.1.self_attn.q_norm.weight"), nullptr);

  // Existing output: refused without force, replaced with it.
  EXPECT_EQ(WriteSynthCheckpoint(dir, Tiny()).status().code(), StatusCode::kAlreadyExists);
  SynthOptions f = Tiny();
  f.force = true;
  EXPECT_TRUE(WriteSynthCheckpoint(dir, f).ok());
}

TEST(Synth, DeterministicForAnyThreadCountAndSeeded) {
  test::ScopedTempDir tmp;
  SynthOptions a = Tiny(), b = Tiny(), c = Tiny(8);
  a.threads = 1;
  b.threads = 2;
  ASSERT_TRUE(WriteSynthCheckpoint(tmp.Join("a"), a).ok());
  ASSERT_TRUE(WriteSynthCheckpoint(tmp.Join("b"), b).ok());
  ASSERT_TRUE(WriteSynthCheckpoint(tmp.Join("c"), c).ok());
  const auto ha = FileHashes(tmp.Join("a")), hb = FileHashes(tmp.Join("b")),
             hc = FileHashes(tmp.Join("c"));
  EXPECT_EQ(ha, hb);
  EXPECT_GT(ha.size(), 3u);
  // Another seed: same files, other weights.
  ASSERT_EQ(ha.size(), hc.size());
  int differ = 0;
  for (const auto& [name, h] : ha)
    differ += name.find(".safetensors") != std::string::npos && hc.at(name) != h;
  EXPECT_GT(differ, 0);
}

TEST(Synth, TensorStatisticsDiffer) {
  test::ScopedTempDir tmp;
  SynthOptions o = Tiny();
  o.moe_ff = 128;
  o.experts = 16;
  ASSERT_TRUE(WriteSynthCheckpoint(tmp.Join("m"), o).ok());
  auto c = Checkpoint::Open(tmp.Join("m"));
  ASSERT_TRUE(c.ok());
  double min_std = 1e30, max_std = 0, max_kurt = 0;
  int low_rank = 0, matrices = 0;
  for (const auto& t : (*c)->tensors()) {
    if (t.id.role != TensorRole::kExpertGate && t.id.role != TensorRole::kExpertDown) continue;
    const auto v = Values(**c, t.info.name);
    double m2 = 0, m4 = 0;
    for (float x : v) {
      m2 += double(x) * x;
      m4 += double(x) * x * x * x;
    }
    m2 /= v.size();
    m4 /= v.size();
    min_std = std::min(min_std, std::sqrt(m2));
    max_std = std::max(max_std, std::sqrt(m2));
    max_kurt = std::max(max_kurt, m4 / (m2 * m2));
    // Low rank plus noise: two rows far more correlated than independent rows would be.
    const int64_t cols = t.info.shape[1], rows = t.info.shape[0];
    double best = 0;
    for (int64_t r = 1; r < std::min<int64_t>(rows, 16); ++r) {
      double d = 0, n0 = 0, n1 = 0;
      for (int64_t i = 0; i < cols; ++i) {
        d += double(v[i]) * v[r * cols + i];
        n0 += double(v[i]) * v[i];
        n1 += double(v[r * cols + i]) * v[r * cols + i];
      }
      best = std::max(best, std::abs(d) / std::sqrt(n0 * n1));
    }
    ++matrices;
    low_rank += best > 0.4;
  }
  EXPECT_GT(matrices, 50);
  EXPECT_GT(max_std / min_std, 1.5) << "per-tensor scales";
  EXPECT_GT(max_kurt, 5.0) << "heavy tails (a Gaussian has 3)";
  EXPECT_GT(low_rank, 0) << "some low-rank-ish tensors";
  EXPECT_LT(low_rank, matrices / 2);
}

TEST(Synth, RunsInTheEngineWithSaneLogits) {
  test::ScopedTempDir tmp;
  SynthOptions o = Tiny();
  ASSERT_TRUE(WriteSynthCheckpoint(tmp.Join("m"), o).ok());
  auto c = Checkpoint::Open(tmp.Join("m"));
  ASSERT_TRUE(c.ok());
  auto e = Engine::Load(**c, {2});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  std::vector<int32_t> ids;
  for (int i = 0; i < 48; ++i) ids.push_back((i * 97 + 5) % 512);
  std::vector<float> logits;
  ASSERT_TRUE((*e)->Forward(ids, &logits).ok());
  std::set<int> argmax;
  double sum = 0, sq = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* l = logits.data() + t * 512;
    int best = 0;
    for (int i = 0; i < 512; ++i) {
      ASSERT_TRUE(std::isfinite(l[i]));
      sum += l[i];
      sq += double(l[i]) * l[i];
      if (l[i] > l[best]) best = i;
    }
    argmax.insert(best);
  }
  const double n = double(logits.size());
  const double sd = std::sqrt(sq / n - (sum / n) * (sum / n));
  EXPECT_GT(sd, 0.3) << "logits are not flat";
  EXPECT_LT(sd, 50.0);
  EXPECT_GT(argmax.size(), 4u) << "predictions depend on the input";
}

TEST(Synth, CopiesTheBundledQwen3Tokenizer) {
  test::ScopedTempDir tmp;
  SynthOptions o = Tiny();
  o.vocab = 0;  // the real vocabulary: the tokenizer comes along
  o.layers = 1;
  o.shard_bytes = 5'000'000'000ULL;
  auto s = WriteSynthCheckpoint(tmp.Join("m"), o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->tokenizer);
  EXPECT_EQ(s->shard_files, std::vector<std::string>{"model.safetensors"});
  EXPECT_TRUE(std::filesystem::exists(tmp.Join("m/tokenizer_config.json")));
  EXPECT_TRUE(std::filesystem::exists(tmp.Join("m/LICENSE.tokenizer")));
  auto tok = Tokenizer::Load(tmp.Join("m/tokenizer.json"));
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto ids = (*tok)->Encode("Hello world, this is moeq.");
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 3u);
  for (int32_t id : *ids) EXPECT_LT(id, 151936);
}

TEST(Synth, CliPrintsConfigAndRejectsUnknownPreset) {
  test::ScopedTempDir tmp;
  EXPECT_EQ(test::RunToolCommand("moeq-synth --preset mixtral-8x7b --print-config"), 0);
  EXPECT_EQ(test::RunToolCommand("moeq-synth --preset nope -o " + tmp.Join("x")), 2);
  EXPECT_EQ(
      test::RunToolCommand(
          "moeq-synth --preset qwen3-30b-a3b --layers 1 --hidden 64 --heads 2 --kv-heads 1 "
          "--head-dim 32 --experts 4 --top-k 2 --moe-ff 32 --vocab 300 --shard-size 100KB -o " +
          tmp.Join("m")),
      0);
  EXPECT_TRUE(std::filesystem::exists(tmp.Join("m/model.safetensors.index.json")));
}

}  // namespace
}  // namespace moeq
