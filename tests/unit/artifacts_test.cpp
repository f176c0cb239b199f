// The artefact schemas (include/moeq/artifacts/): golden files per version, write→read round
// trips, newer versions refused, and RequireSameModel.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "moeq/artifacts/allocation.h"
#include "moeq/artifacts/eval.h"
#include "moeq/artifacts/model_match.h"
#include "moeq/artifacts/sensitivity.h"
#include "moeq/base/file_util.h"

namespace moeq {
namespace {

std::string Golden(const std::string& name) {
  return std::string(MOEQ_GOLDEN_DIR) + "/artifacts/" + name;
}

std::string Text(const std::string& path) {
  auto t = ReadFile(path);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *t : "";
}

// ---------------------------------------------------------------- sensitivity.jsonl

TEST(ArtifactsSensitivity, GoldenV1ParsesToKnownValuesAndIsWrittenBackByteForByte) {
  const std::string path = Golden("sensitivity-v1.jsonl");
  auto a = artifacts::ReadSensitivityFile(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(artifacts::ModelFingerprintOf(a->header), "f00d");
  ASSERT_EQ(a->rows.size(), 3u);
  const artifacts::SensitivityRow& r = a->rows[0];
  EXPECT_EQ(r.tensor, "model.embed_tokens.weight");
  EXPECT_EQ(r.role, "embedding");
  EXPECT_EQ(r.layer, -1);
  EXPECT_EQ(r.unit, 0);
  EXPECT_EQ(r.shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(r.format, "q4g64");
  EXPECT_EQ(r.bytes, 4608u);
  EXPECT_DOUBLE_EQ(r.nrmse, 0.109375);
  EXPECT_EQ(r.features["svd_rank"].get<int>(), 32);
  EXPECT_FALSE(r.encoder);
  EXPECT_TRUE(r.cluster.is_null());
  EXPECT_EQ(a->rows[1].format, "bf16");
  EXPECT_EQ(a->rows[1].bits, 16);
  EXPECT_EQ(a->rows[1].group_size, 0);
  const artifacts::SensitivityRow& c = a->rows[2];
  EXPECT_EQ(c.expert, 2);
  EXPECT_EQ(c.unit, 7);
  ASSERT_TRUE(c.fused_shape);
  EXPECT_EQ(*c.fused_shape, (std::vector<int64_t>{4, 64, 64}));
  EXPECT_EQ(c.encoder.value_or(""), "gptq");
  EXPECT_EQ(c.error.value_or(""), "activation");
  EXPECT_DOUBLE_EQ(c.weight_nrmse.value_or(0), 0.13);
  EXPECT_EQ(c.cluster["worst_member"].get<int>(), 1);
  EXPECT_DOUBLE_EQ(c.features["noise_amplification_act"].get<double>(), 0.0625);
  // Every feature of the golden row is a schema feature name.
  for (const auto& [k, v] : c.features.items()) {
    const auto& names = artifacts::SensitivityFeatureNames();
    EXPECT_NE(std::find(names.begin(), names.end(), k), names.end()) << k;
  }
  std::string written = artifacts::SensitivityLine(a->header) + "\n";
  for (const auto& row : a->rows)
    written += artifacts::SensitivityLine(artifacts::SensitivityRowToJson(row)) + "\n";
  EXPECT_EQ(written, Text(path));
}

TEST(ArtifactsSensitivity, RowRoundTrips) {
  artifacts::SensitivityRow r;
  r.tensor = "model.layers.1.self_attn.q_proj.weight";
  r.role = "attn_q";
  r.layer = 1;
  r.unit = 12;
  r.shape = {64, 64};
  r.params = 4096;
  r.dtype = "BF16";
  r.format = "q8g64";
  r.bits = 8;
  r.group_size = 64;
  r.bytes = 4608;
  r.nrmse = 0.0123456789;
  r.sqnr_db = 38.17;
  r.features = {{"std", 0.02}, {"svd_rank", 16}};
  auto back = artifacts::ParseSensitivityRow(artifacts::SensitivityRowToJson(r), "mem", 2);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(artifacts::SensitivityRowToJson(*back), artifacts::SensitivityRowToJson(r));
  EXPECT_EQ(back->tensor, r.tensor);
  EXPECT_EQ(back->unit, 12);
  EXPECT_DOUBLE_EQ(back->nrmse, r.nrmse);
  EXPECT_EQ(back->line, 2);
}

TEST(ArtifactsSensitivity, ErrorsNameFileLineAndField) {
  auto a = artifacts::ParseSensitivityText(
      Text(Golden("sensitivity-v1.jsonl")) + "{\"tensor\": \"w\", \"format\": 4}\n", "s.jsonl");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("s.jsonl:5: field 'format'"), std::string::npos)
      << a.status().message();
}

TEST(ArtifactsSensitivity, NewerVersionIsRefused) {
  std::string text = Text(Golden("sensitivity-v1.jsonl"));
  const size_t at = text.find("\"version\":1");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 11, "\"version\":2");
  auto a = artifacts::ParseSensitivityText(text, "new.jsonl");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("new.jsonl"), std::string::npos) << a.status().message();
  EXPECT_NE(a.status().message().find("version"), std::string::npos) << a.status().message();
}

// ---------------------------------------------------------------- allocation.json

TEST(ArtifactsAllocation, GoldenV1ParsesToKnownValuesAndIsWrittenBackByteForByte) {
  const std::string path = Golden("allocation-v1.json");
  auto a = artifacts::ReadAllocation(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(artifacts::ModelFingerprintOf(a->header), "f00d");
  ASSERT_EQ(a->tensors.size(), 2u);
  const artifacts::AllocationTensor& t = a->tensors[0];
  EXPECT_EQ(t.name, "model.embed_tokens.weight");
  EXPECT_EQ(t.format, "q4g64");
  EXPECT_EQ(t.bits.value_or(0), 4);
  EXPECT_EQ(t.bytes.value_or(0), 4608u);
  EXPECT_FALSE(t.encoder);
  EXPECT_FALSE(t.prune.value_or(true));
  const artifacts::AllocationTensor& p = a->tensors[1];
  EXPECT_EQ(p.encoder.value_or(""), "gptq");
  EXPECT_TRUE(p.prune.value_or(false));
  EXPECT_EQ(p.tier.value_or(""), "prunable");
  EXPECT_DOUBLE_EQ(p.exposure.value_or(0), 0.5);
  EXPECT_EQ(a->sections["budget"]["bytes"].get<int>(), 10000);
  EXPECT_EQ(a->sections["settings"]["objective"], "mse");
  EXPECT_EQ(DumpJson(artifacts::AllocationToJson(*a)), Text(path));
}

TEST(ArtifactsAllocation, MinimalPlanAndUnknownSectionsRoundTrip) {
  nlohmann::json j = {{"schema", "moeq.allocation"},
                      {"version", 1},
                      {"target", {{"kind", "kl"}, {"value", 0.05}}},
                      {"tensors", {{{"name", "w"}, {"format", "bf16"}}}}};
  auto a = artifacts::ParseAllocation(j, "mem.json");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->tensors.size(), 1u);
  EXPECT_FALSE(a->tensors[0].bits);
  EXPECT_EQ(artifacts::AllocationToJson(*a), j);
  j["tensors"][0]["bits"] = "four";
  auto bad = artifacts::ParseAllocation(j, "mem.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mem.json: tensor 'w': field 'bits'"), std::string::npos)
      << bad.status().message();
  j["version"] = 2;
  auto newer = artifacts::ParseAllocation(j, "mem.json");
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("version"), std::string::npos);
}

// ---------------------------------------------------------------- eval.json

TEST(ArtifactsEval, GoldenV1ParsesToKnownValuesAndIsWrittenBackByteForByte) {
  const std::string path = Golden("eval-v1.json");
  auto e = artifacts::ReadEval(path);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_DOUBLE_EQ(e->ppl, 12.5);
  EXPECT_EQ(e->tokens_scored, 4088);
  EXPECT_EQ(e->text_sha256, "1234");
  EXPECT_EQ(e->protocol["context"].get<int>(), 512);
  ASSERT_TRUE(e->reference);
  EXPECT_DOUBLE_EQ(e->reference->kl_mean, 0.03125);
  EXPECT_EQ(e->reference->top_k, 151936);
  ASSERT_TRUE(e->model_size);
  EXPECT_EQ(e->model_size->bytes, 1048576u);
  ASSERT_TRUE(e->gate);
  EXPECT_FALSE(e->gate->passed);
  EXPECT_EQ(artifacts::ModelFingerprintOf(e->header), "cafe");
  EXPECT_EQ(DumpJson(artifacts::EvalToJson(*e)), Text(path));
}

TEST(ArtifactsEval, RoundTripWithoutOptionalSectionsAndNewerVersionRefused) {
  artifacts::EvalArtifact e;
  e.header = {{"schema", "moeq.eval"}, {"version", 1}};
  e.ppl = 7.25;
  e.tokens_scored = 511;
  e.windows = 1;
  e.protocol = {{"name", "reference"}};
  e.text_sha256 = "ab";
  auto back = artifacts::ParseEval(artifacts::EvalToJson(e), "mem.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(artifacts::EvalToJson(*back), artifacts::EvalToJson(e));
  EXPECT_FALSE(back->reference);
  EXPECT_FALSE(back->model_size);
  nlohmann::json j = artifacts::EvalToJson(e);
  j.erase("ppl");
  auto missing = artifacts::ParseEval(j, "mem.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("mem.json: field 'ppl': missing"), std::string::npos)
      << missing.status().message();
  j = artifacts::EvalToJson(e);
  j["version"] = 2;
  auto newer = artifacts::ParseEval(j, "mem.json");
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("version"), std::string::npos);
}

// ---------------------------------------------------------------- RequireSameModel

TEST(ArtifactsModelMatch, MismatchNamesBothSidesAndTheOverride) {
  EXPECT_TRUE(artifacts::RequireSameModel({"a.json", "x"}, {"b.json", "x"}, false).ok());
  EXPECT_TRUE(artifacts::RequireSameModel({"a.json", ""}, {"b.json", "y"}, false).ok());
  Status s = artifacts::RequireSameModel({"a.json", "x"}, {"checkpoint m", "y"}, false);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(ExitCodeFor(s), 2);
  for (const char* want : {"a.json", "checkpoint m", "model_fingerprint x", "model_fingerprint y",
                           "--allow-model-mismatch"}) {
    EXPECT_NE(s.message().find(want), std::string::npos) << want << " in " << s.message();
  }
  EXPECT_TRUE(artifacts::RequireSameModel({"a.json", "x"}, {"b.json", "y"}, true).ok());
  EXPECT_EQ(artifacts::ModelFingerprintOf({{"inputs", {{"model_fingerprint", "z"}}}}), "z");
  EXPECT_EQ(artifacts::ModelFingerprintOf({{"inputs", {{"config_sha256", "z"}}}}), "");
}

}  // namespace
}  // namespace moeq
