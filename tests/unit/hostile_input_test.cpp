// Hostile inputs (issue 15): each class below crashed, hung, wrapped around or was accepted
// silently before the JSON reading layer, the limits table and checked size arithmetic.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "moeq/allocate/allocation.h"
#include "moeq/base/checked_math.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/export/quant_plan.h"
#include "moeq/model/arch.h"
#include "moeq/model/model_config.h"
#include "moeq/tokenizer/tokenizer.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

std::string Deep(int n) { return std::string(n, '[') + std::string(n, ']'); }

nlohmann::json MoeConfig() {
  return nlohmann::json::parse(
      R"({"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "intermediate_size": 96,
      "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2})");
}

TEST(JsonReader, DeepNestingFailsFastWithTheLimitNamed) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = ParseJson(Deep(100000), "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("config.json"), std::string::npos);
  EXPECT_NE(r.status().message().find("nested deeper than 256"), std::string::npos)
      << r.status().message();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  EXPECT_TRUE(ParseJson(Deep(kMaxJsonDepth), "x").ok());
  EXPECT_FALSE(ParseJson(Deep(kMaxJsonDepth + 1), "x").ok());
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJson("\"" + std::string(1000, '[') + "\"", "x").ok());
}

TEST(JsonReader, NumberOverflowAndBadTextBecomeStatusesNamingTheSource) {
  for (const char* text :
       {"{\"a\": 1e400}", "[-1e999]", "{\"a\": tru}", "", "{\"a\": \"\\ud800\"}"}) {
    auto r = ParseJson(text, "file.json: line 3");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    EXPECT_EQ(r.status().message().rfind("file.json: line 3: invalid JSON", 0), 0u)
        << r.status().message();
  }
  test::ScopedTempDir dir;
  std::ofstream(dir.Join("c.json")) << "{\"vocab_size\": 1e400}";
  auto r = ReadJsonFile(dir.Join("c.json"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("c.json"), std::string::npos);
}

TEST(JsonReader, ExcerptIsShortAndNeverRecursive) {
  const auto deep = nlohmann::json::parse(Deep(200));
  EXPECT_EQ(JsonExcerpt(deep), "an array of 1 element");
  EXPECT_EQ(JsonExcerpt(nlohmann::json::object({{"a", 1}, {"b", 2}})), "an object with 2 keys");
  EXPECT_LT(JsonExcerpt(std::string(100000, 'x')).size(), 80u);
  EXPECT_EQ(JsonExcerpt(7), "7");
}

TEST(JsonReader, TypeErrorsAtTheBoundaryBecomeStatuses) {
  const nlohmann::json j = {{"a", "text"}};
  Result<int> r = CatchJsonErrors("f.json", [&]() -> Result<int> { return j.at("a").get<int>(); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().rfind("f.json: ", 0), 0u);
}

TEST(ModelConfigLimits, AbsurdCountsAreRejectedBeforeAnythingIsSized) {
  struct Case {
    const char* key;
    nlohmann::json value;
  };
  for (const Case& c :
       {Case{"num_hidden_layers", int64_t{4294967300}}, Case{"num_hidden_layers", 2147483647},
        Case{"num_hidden_layers", 1000000}, Case{"num_experts", 1000000000},
        Case{"vocab_size", int64_t{1} << 62}, Case{"hidden_size", int64_t{1} << 40},
        Case{"num_attention_heads", 1 << 30}}) {
    nlohmann::json j = MoeConfig();
    j[c.key] = c.value;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = ParseModelConfig(j, "config.json");
    ASSERT_FALSE(r.ok()) << c.key << " = " << c.value;
    EXPECT_NE(r.status().message().find(c.key), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("docs/limits.md"), std::string::npos)
        << r.status().message();
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.5);
  }
  nlohmann::json j = MoeConfig();
  j["num_hidden_layers"] = 4096;
  j["num_experts"] = 65536;
  EXPECT_TRUE(ParseModelConfig(j, "config.json").ok());
}

TEST(ModelConfigLimits, CountsAreCheckedAgainstTheTensorsPresent) {
  // 4096 layers x 65536 experts pass the table, but the checkpoint holds 2 layers of 4 experts:
  // Checkpoint::Open must say so at once instead of listing 805 million expected tensors.
  test::ScopedTempDir dir;
  test::SyntheticCheckpointOptions o;
  o.config_patch = {{"num_hidden_layers", 4096}};
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.path(), o).ok());
  auto t0 = std::chrono::steady_clock::now();
  auto c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("num_hidden_layers is 4096"), std::string::npos)
      << c.status().message();
  test::ScopedTempDir dir2;
  o.config_patch = {{"num_experts", 65536}};
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir2.path(), o).ok());
  c = Checkpoint::Open(dir2.path());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("65536 experts"), std::string::npos) << c.status().message();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

TEST(CheckedMath, OverflowIsDetectedNeverWrapped) {
  EXPECT_EQ(CheckedMul<int64_t>(int64_t{1} << 40, int64_t{1} << 40), std::nullopt);
  EXPECT_EQ(CheckedMul<uint64_t>(3, 5), 15u);
  EXPECT_EQ(CheckedAdd<uint64_t>(UINT64_MAX, 1), std::nullopt);
  const std::vector<int64_t> big = {int64_t{1} << 40, int64_t{1} << 40, int64_t{1} << 40,
                                    int64_t{1} << 40};
  EXPECT_EQ(CheckedProduct(big), std::nullopt);
  EXPECT_EQ(CheckedProduct(std::vector<int64_t>{2, 3, 4}), 24);
  EXPECT_EQ(CheckedProduct(std::vector<int64_t>{2, -3}), std::nullopt);
  EXPECT_EQ(CheckedCast<int>(int64_t{4294967300}), std::nullopt);
  EXPECT_EQ(CheckedCast<int>(int64_t{7}), 7);
}

TEST(GgufReaderLimits, DimensionsWhoseProductOverflowsAreCorruption) {
  test::ScopedTempDir dir;
  std::string f = "GGUF";
  auto u32 = [&](uint32_t v) { f.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { f.append(reinterpret_cast<const char*>(&v), 8); };
  u32(3);
  u64(1);
  u64(0);
  u64(1);
  f += "t";
  u32(4);
  for (int i = 0; i < 4; ++i) u64(uint64_t{1} << 40);
  u32(0);  // F32
  u64(0);
  f.resize((f.size() + 31) / 32 * 32 + 64, '\0');
  std::ofstream(dir.Join("x.gguf"), std::ios::binary) << f;
  auto g = GgufFile::Open(dir.Join("x.gguf"));
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kCorruption);
  EXPECT_NE(g.status().message().find("overflows"), std::string::npos) << g.status().message();
}

TEST(TokenizerLimits, NestedSequencesFailFast) {
  const int n = 50000;
  std::string seq;
  for (int i = 0; i < n; ++i) seq += R"({"type": "Sequence", "normalizers": [)";
  seq += R"({"type": "NFC"})";
  for (int i = 0; i < n; ++i) seq += "]}";
  const std::string text =
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": )" + seq + "}";
  const auto t0 = std::chrono::steady_clock::now();
  auto t = Tokenizer::FromJsonText(text, "tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tokenizer.json"), std::string::npos);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  // Within the JSON limit, the pipeline's own limit names the path.
  std::string seq20;
  for (int i = 0; i < 20; ++i) seq20 += R"({"type": "Sequence", "normalizers": [)";
  seq20 += R"({"type": "NFC"})";
  for (int i = 0; i < 20; ++i) seq20 += "]}";
  auto t20 = Tokenizer::FromJsonText(
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": )" + seq20 + "}",
      "tok.json");
  ASSERT_FALSE(t20.ok());
  EXPECT_NE(t20.status().message().find("Sequence nested deeper than"), std::string::npos)
      << t20.status().message();
}

TEST(SensitivityLimits, ShapeProductOverflowIsAnError) {
  const std::string text =
      "{\"schema\": \"moeq.sensitivity\", \"version\": 1}\n"
      "{\"tensor\": \"t\", \"role\": \"attn_q\", \"layer\": 0, \"expert\": -1, \"shape\": "
      "[4294967296, 4294967296, 16], "
      "\"params\": 1, \"dtype\": \"bf16\", \"format\": \"q4g64\", \"bits\": 4, \"group_size\": 64, "
      "\"bytes\": 1, "
      "\"nrmse\": 0.1, \"sqnr_db\": 1}\n";
  auto r = alloc::ParseSensitivity(text, "s.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("params"), std::string::npos) << r.status().message();
}

TEST(AllocationChecks, EmptyStrayFieldsAndVersionAreDataErrors) {
  test::ScopedTempDir dir;
  test::SyntheticCheckpointOptions o;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("m"), o).ok());
  auto ckpt = Checkpoint::Open(dir.Join("m"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto load = [&](const std::string& text) {
    std::ofstream(dir.Join("a.json")) << text;
    return LoadAllocationPlan(dir.Join("a.json"), **ckpt);
  };
  const std::string head = R"({"schema": "moeq.allocation", "version": 1, "tensors": )";
  auto empty = load(head + "[]}");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("'tensors' is empty"), std::string::npos);
  auto stray = load(
      head +
      R"([{"name": "model.layers.0.self_attn.q_proj.weight", "format": "q4g32", "bits": 7}]})");
  ASSERT_FALSE(stray.ok());
  EXPECT_NE(stray.status().message().find("'bits'"), std::string::npos) << stray.status().message();
  auto group = load(
      head +
      R"([{"name": "model.layers.0.self_attn.q_proj.weight", "format": "q4g32", "group_size": 48}]})");
  ASSERT_FALSE(group.ok());
  auto good = load(
      head +
      R"([{"name": "model.layers.0.self_attn.q_proj.weight", "format": "q4g32", "bits": 4, "group_size": 32}]})");
  EXPECT_TRUE(good.ok()) << good.status().ToString();
  // Unknown tensor and a too-new version: the same exit status class (1, a data error).
  auto unknown = load(head + R"([{"name": "nope", "format": "q4g32"}]})");
  auto v99 = load(R"({"schema": "moeq.allocation", "version": 99, "tensors": []})");
  ASSERT_FALSE(unknown.ok());
  ASSERT_FALSE(v99.ok());
  EXPECT_EQ(ExitCodeFor(unknown.status()), 1);
  EXPECT_EQ(ExitCodeFor(v99.status()), 1);
}

}  // namespace
}  // namespace moeq
