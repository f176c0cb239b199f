// Checkpoint::Open on synthetic checkpoints of every family: single file, sharded with and
// without index, fused experts, and every error path (missing shard, bad config, unknown and
// missing tensors, shape mismatches, duplicates, non-finite weights).
#include "moeq/checkpoint/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "moeq/base/file_util.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;
using test::ScopedTempDir;
using test::SyntheticCheckpointOptions;
using test::WriteSyntheticCheckpoint;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

SyntheticCheckpointOptions Options(const std::string& type) {
  SyntheticCheckpointOptions o;
  o.model_type = type;
  o.layers = 2;
  o.shared_experts = 1;
  o.dense_layers = 1;
  return o;
}

std::unique_ptr<Checkpoint> MustOpen(const std::string& dir, CheckpointOptions options = {}) {
  auto c = Checkpoint::Open(dir, options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

std::vector<std::byte> Bytes(const Checkpoint& c, const std::string& name) {
  auto v = c.View(name);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  if (!v.ok()) return {};
  return {v->data.begin(), v->data.end()};
}

TEST(Checkpoint, OpensEveryFamily) {
  for (const auto& type : SupportedModelTypes()) {
    SCOPED_TRACE(type);
    ScopedTempDir dir;
    auto written = WriteSyntheticCheckpoint(dir.path(), Options(type));
    ASSERT_TRUE(written.ok()) << written.status().ToString();
    auto c = MustOpen(dir.path());
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->config().model_type, type);
    EXPECT_EQ(c->adapter().model_type(), type);
    EXPECT_EQ(c->tensors().size(), written->tensors.size());
    EXPECT_EQ(c->tensors().size(), c->adapter().ExpectedTensors().size());
    EXPECT_TRUE(c->unknown_tensors().empty());
    EXPECT_EQ(c->shard_files(), std::vector<std::string>{"model.safetensors"});
    EXPECT_EQ(c->extra_files(), std::vector<std::string>{"tokenizer.json"});
    EXPECT_EQ(c->fingerprint().size(), 64u);
    EXPECT_TRUE(std::is_sorted(c->tensors().begin(), c->tensors().end(),
                               [](const auto& a, const auto& b) { return a.id < b.id; }));
    for (const auto& t : c->tensors()) {
      ASSERT_EQ(c->Find(t.info.name), &t);
      EXPECT_EQ(c->adapter().Name(t.id), t.info.name);
      EXPECT_FALSE(t.fused_experts);
    }
    const auto& first = c->tensors().front();
    auto v = c->View(first.info.name);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->data.size(), first.info.nbytes());
    EXPECT_EQ(c->Find("no.such.tensor"), nullptr);
    EXPECT_FALSE(c->View("no.such.tensor").ok());
  }
}

TEST(Checkpoint, FusedExpertsHoldTheSameValues) {
  for (const std::string type : {"qwen3_moe", "mixtral", "deepseek_v3"}) {
    SCOPED_TRACE(type);
    ScopedTempDir per_expert_dir, fused_dir;
    auto o = Options(type);
    ASSERT_TRUE(WriteSyntheticCheckpoint(per_expert_dir.path(), o).ok());
    o.fused_experts = true;
    ASSERT_TRUE(WriteSyntheticCheckpoint(fused_dir.path(), o).ok());
    auto per_expert = MustOpen(per_expert_dir.path());
    auto fused = MustOpen(fused_dir.path());
    ASSERT_TRUE(per_expert && fused);
    const int layer = 1;  // sparse in every family with dense_layers = 1
    const auto& adapter = fused->adapter();
    const std::string gate_up = adapter.Name(TensorId{layer, -1, TensorRole::kExpertGateUp});
    const std::string down = adapter.Name(TensorId{layer, -1, TensorRole::kExpertDown});
    const CheckpointTensor* t = fused->Find(gate_up);
    ASSERT_NE(t, nullptr) << gate_up;
    EXPECT_TRUE(t->fused_experts);
    EXPECT_EQ(t->id, (TensorId{layer, -1, TensorRole::kExpertGateUp}));
    const int64_t e = fused->config().num_experts, ff = fused->config().moe_intermediate_size,
                  h = fused->config().hidden_size;
    EXPECT_EQ(t->info.shape, (std::vector<int64_t>{e, 2 * ff, h}));
    ASSERT_NE(fused->Find(down), nullptr);
    // Expert 1's up rows sit after its gate rows.
    const auto fused_bytes = Bytes(*fused, gate_up);
    const auto up1 = Bytes(*per_expert, adapter.Name(TensorId{layer, 1, TensorRole::kExpertUp}));
    const size_t matrix = static_cast<size_t>(ff * h) * 2;
    ASSERT_EQ(up1.size(), matrix);
    EXPECT_EQ(std::memcmp(fused_bytes.data() + 3 * matrix, up1.data(), matrix), 0);
    const auto down_bytes = Bytes(*fused, down);
    const auto down1 =
        Bytes(*per_expert, adapter.Name(TensorId{layer, 1, TensorRole::kExpertDown}));
    EXPECT_EQ(std::memcmp(down_bytes.data() + matrix, down1.data(), matrix), 0);
    const auto& moe = fused->config().moe_layer;
    const auto moe_layers = static_cast<size_t>(std::count(moe.begin(), moe.end(), true));
    EXPECT_EQ(fused->tensors().size(),
              per_expert->tensors().size() - moe_layers * static_cast<size_t>(3 * e - 2));
  }
}

TEST(Checkpoint, ShardedWithIndex) {
  ScopedTempDir single_dir, sharded_dir;
  auto o = Options("qwen2_moe");
  ASSERT_TRUE(WriteSyntheticCheckpoint(single_dir.path(), o).ok());
  o.shards = 3;
  auto written = WriteSyntheticCheckpoint(sharded_dir.path(), o);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  ASSERT_EQ(written->shard_files.size(), 3u);
  EXPECT_TRUE(fs::exists(sharded_dir.Join("model.safetensors.index.json")));
  auto single = MustOpen(single_dir.path());
  auto sharded = MustOpen(sharded_dir.path());
  ASSERT_TRUE(single && sharded);
  EXPECT_EQ(sharded->shard_files(), written->shard_files);
  ASSERT_EQ(sharded->tensors().size(), single->tensors().size());
  std::set<int> shards_used;
  for (const auto& t : sharded->tensors()) {
    shards_used.insert(t.shard);
    EXPECT_EQ(Bytes(*sharded, t.info.name), Bytes(*single, t.info.name)) << t.info.name;
  }
  EXPECT_EQ(shards_used.size(), 3u);
}

TEST(Checkpoint, ShardsWithoutIndexAreGlobbed) {
  ScopedTempDir dir;
  auto o = Options("mixtral");
  o.shards = 2;
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  fs::remove(dir.Join("model.safetensors.index.json"));
  auto c = MustOpen(dir.path());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->shard_files().size(), 2u);
  EXPECT_TRUE(c->unknown_tensors().empty());
}

TEST(Checkpoint, MissingShardNamesIndexTensorAndFile) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");
  o.shards = 2;
  auto written = WriteSyntheticCheckpoint(dir.path(), o);
  ASSERT_TRUE(written.ok());
  const std::string gone = written->shard_files[1];
  fs::remove(dir.Join(gone));
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(c.status().message(), "model.safetensors.index.json"));
  EXPECT_TRUE(Contains(c.status().message(), gone));
  EXPECT_TRUE(Contains(c.status().message(), "tensor 'model."));
}

TEST(Checkpoint, IndexAndShardsMustAgree) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");
  o.shards = 2;
  auto written = WriteSyntheticCheckpoint(dir.path(), o);
  ASSERT_TRUE(written.ok());
  const std::string index_path = dir.Join("model.safetensors.index.json");
  auto index = ReadJsonFile(index_path);
  ASSERT_TRUE(index.ok());

  auto extra = *index;
  extra["weight_map"]["model.layers.0.ghost.weight"] = written->shard_files[0];
  ASSERT_TRUE(WriteFileAtomic(index_path, DumpJson(extra)).ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCorruption);
  EXPECT_TRUE(Contains(c.status().message(), "model.layers.0.ghost.weight"));

  auto missing = *index;
  missing["weight_map"].erase("model.norm.weight");
  ASSERT_TRUE(WriteFileAtomic(index_path, DumpJson(missing)).ok());
  c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "'model.norm.weight' is not listed"));

  auto moved = *index;
  const std::string other = moved["weight_map"]["model.norm.weight"] == written->shard_files[0]
                                ? written->shard_files[1]
                                : written->shard_files[0];
  moved["weight_map"]["model.norm.weight"] = other;
  ASSERT_TRUE(WriteFileAtomic(index_path, DumpJson(moved)).ok());
  c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "model.norm.weight"));

  auto escape = *index;
  escape["weight_map"]["model.norm.weight"] = "../model.safetensors";
  ASSERT_TRUE(WriteFileAtomic(index_path, DumpJson(escape)).ok());
  EXPECT_EQ(Checkpoint::Open(dir.path()).status().code(), StatusCode::kCorruption);
}

TEST(Checkpoint, DuplicateTensorAcrossShards) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");
  o.shards = 2;
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  fs::remove(dir.Join("model.safetensors.index.json"));
  // A third shard repeating model.norm.weight.
  std::vector<TensorInfo> infos = {{"model.norm.weight", DType::kBF16, {64}}};
  auto w = SafetensorsWriter::Create(dir.Join("model-extra.safetensors"), infos);
  ASSERT_TRUE(w.ok());
  std::vector<std::byte> zeros(128);
  ASSERT_TRUE((*w)->Write("model.norm.weight", zeros).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "'model.norm.weight' appears in both"));
  EXPECT_TRUE(Contains(c.status().message(), "model-extra.safetensors"));
}

TEST(Checkpoint, ConfigErrors) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");
  o.config_patch = {{"hidden_size", nullptr}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "config.json: missing key 'hidden_size'"));

  o.config_patch = {{"model_type", "bloom"}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(Contains(c.status().message(), "'bloom'"));
  EXPECT_TRUE(Contains(c.status().message(), "qwen3_moe"));

  fs::remove(dir.Join("config.json"));
  c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(c.status().message(), "config.json"));

  EXPECT_EQ(Checkpoint::Open(dir.Join("nope")).status().code(), StatusCode::kNotFound);
}

TEST(Checkpoint, NoWeights) {
  ScopedTempDir dir;
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), Options("llama")).ok());
  fs::remove(dir.Join("model.safetensors"));
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(c.status().message(), "model*.safetensors"));
}

TEST(Checkpoint, UnknownTensorsAreReportedByName) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");
  o.extra_tensors = {{"model.layers.0.mlp.mystery.weight", {4, 4}},
                     {"model.layers.1.self_attn.q_proj.weight_scale_inv", {1, 1}}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = MustOpen(dir.path());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->unknown_tensors(),
            (std::vector<std::string>{"model.layers.0.mlp.mystery.weight",
                                      "model.layers.1.self_attn.q_proj.weight_scale_inv"}));
  EXPECT_EQ(c->Find("model.layers.0.mlp.mystery.weight")->id.role, TensorRole::kUnknown);

  CheckpointOptions strict;
  strict.strict = true;
  auto s = Checkpoint::Open(dir.path(), strict);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s.status().message(), "2 tensors not recognised"));
  EXPECT_TRUE(Contains(s.status().message(), "'model.layers.0.mlp.mystery.weight'"));
}

TEST(Checkpoint, ShapeMismatchNamesFileTensorAndShapes) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");  // hidden 64, moe_ff 32
  o.shape_overrides = {{"model.layers.1.mlp.experts.1.down_proj.weight", {64, 16}}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCorruption);
  const std::string m = c.status().message();
  EXPECT_TRUE(Contains(m, "model.safetensors"));
  EXPECT_TRUE(Contains(m, "'model.layers.1.mlp.experts.1.down_proj.weight'"));
  EXPECT_TRUE(Contains(m, "[64, 16]"));
  EXPECT_TRUE(Contains(m, "expected [64, 32]"));
}

TEST(Checkpoint, FusedShapeMismatch) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");
  o.fused_experts = true;
  o.shape_overrides = {{"model.layers.1.mlp.experts.gate_up_proj", {4, 32, 64}}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "expected [4, 64, 64]"));
}

TEST(Checkpoint, MissingTensorIsNamed) {
  ScopedTempDir dir;
  auto o = Options("deepseek_v3");
  o.drop_tensors = {"model.layers.1.mlp.experts.2.up_proj.weight"};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "1 tensors expected"));
  EXPECT_TRUE(Contains(c.status().message(), "model.layers.1.mlp.experts.2.up_proj.weight"));
}

TEST(Checkpoint, TensorNotCalledForByConfig) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");  // layer 0 is dense: an expert there contradicts config.json
  o.extra_tensors = {{"model.layers.0.mlp.experts.0.down_proj.weight", {64, 32}}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "not expected"));
  EXPECT_TRUE(Contains(c.status().message(), "model.layers.0.mlp.experts.0.down_proj.weight"));
}

TEST(Checkpoint, FusedAndPerExpertTogetherIsAnError) {
  ScopedTempDir dir;
  auto o = Options("qwen3_moe");
  o.extra_tensors = {{"model.layers.1.mlp.experts.down_proj", {4, 64, 32}}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "both as a fused expert tensor and per expert"));
}

TEST(Checkpoint, TiedLmHeadMayBePresent) {
  ScopedTempDir dir;
  auto o = Options("qwen2");
  o.tie_word_embeddings = true;
  o.extra_tensors = {{"lm_head.weight", {256, 64}}};
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto c = MustOpen(dir.path());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Find("lm_head.weight")->id.role, TensorRole::kLmHead);
}

TEST(Checkpoint, CheckFinite) {
  ScopedTempDir dir;
  auto o = Options("llama");
  o.dtype = DType::kF32;
  ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
  CheckpointOptions finite;
  finite.check_finite = true;
  ASSERT_NE(MustOpen(dir.path(), finite), nullptr);
  // Poison one element of one tensor in place.
  uint64_t offset = 0;
  {
    auto f = SafetensorsFile::Open(dir.Join("model.safetensors"));
    ASSERT_TRUE(f.ok());
    offset = (*f)->data_start() + (*f)->Offsets("model.layers.1.mlp.up_proj.weight").first + 8;
  }
  {
    std::fstream f(dir.Join("model.safetensors"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    const float nan = std::nanf("");
    f.write(reinterpret_cast<const char*>(&nan), sizeof nan);
  }
  ASSERT_NE(MustOpen(dir.path()), nullptr);  // not checked by default
  auto c = Checkpoint::Open(dir.path(), finite);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status().message(), "model.layers.1.mlp.up_proj.weight"));
}

TEST(Checkpoint, ExtraFilesAndFingerprint) {
  ScopedTempDir a, b;
  auto o = Options("olmoe");
  ASSERT_TRUE(WriteSyntheticCheckpoint(a.path(), o).ok());
  ASSERT_TRUE(WriteSyntheticCheckpoint(b.path(), o).ok());
  for (const char* name :
       {"generation_config.json", "special_tokens_map.json", "chat_template.jinja", "README.md",
        "train_log.txt", "reference_logits.safetensors"}) {
    std::ofstream(a.Join(name)) << "{}";
  }
  auto ca = MustOpen(a.path());
  auto cb = MustOpen(b.path());
  ASSERT_TRUE(ca && cb);
  EXPECT_EQ(ca->extra_files(),
            (std::vector<std::string>{"chat_template.jinja", "generation_config.json",
                                      "special_tokens_map.json", "tokenizer.json"}));
  EXPECT_EQ(ca->shard_files(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(ca->fingerprint(), cb->fingerprint());

  ScopedTempDir c;
  o.vocab = 300;
  ASSERT_TRUE(WriteSyntheticCheckpoint(c.path(), o).ok());
  auto cc = MustOpen(c.path());
  ASSERT_NE(cc, nullptr);
  EXPECT_NE(cc->fingerprint(), ca->fingerprint());
}

TEST(SyntheticCheckpoint, DeterministicBytes) {
  ScopedTempDir a, b, c;
  auto o = Options("qwen3_moe");
  o.seed = 7;
  ASSERT_TRUE(WriteSyntheticCheckpoint(a.path(), o).ok());
  ASSERT_TRUE(WriteSyntheticCheckpoint(b.path(), o).ok());
  o.seed = 8;
  ASSERT_TRUE(WriteSyntheticCheckpoint(c.path(), o).ok());
  auto read = [](const std::string& p) { return ReadFile(p + "/model.safetensors").value(); };
  EXPECT_EQ(read(a.path()), read(b.path()));
  EXPECT_NE(read(a.path()), read(c.path()));
  EXPECT_EQ(ReadFile(a.Join("config.json")).value(), ReadFile(b.Join("config.json")).value());
}

TEST(SyntheticCheckpoint, Dtypes) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    ScopedTempDir dir;
    auto o = Options("qwen3");
    o.dtype = dtype;
    ASSERT_TRUE(WriteSyntheticCheckpoint(dir.path(), o).ok());
    auto c = MustOpen(dir.path());
    ASSERT_NE(c, nullptr);
    for (const auto& t : c->tensors()) EXPECT_EQ(t.info.dtype, dtype);
    auto v = c->View("model.norm.weight");
    ASSERT_TRUE(v.ok());
    auto f = ToF32(*v);
    ASSERT_TRUE(f.ok());
    for (float x : *f) EXPECT_NEAR(x, 1.0f, 0.06f);  // norms are drawn around 1
  }
  ScopedTempDir dir;
  auto o = Options("qwen3");
  o.dtype = DType::kI8;
  EXPECT_FALSE(WriteSyntheticCheckpoint(dir.path(), o).ok());
}

}  // namespace
}  // namespace moeq
