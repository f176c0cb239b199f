// The artefact schemas (include/moeq/artifacts/): golden files per version, write→read round
// trips, newer versions refused, and RequireSameModel.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "moeq/allocate/allocation.h"
#include "moeq/artifacts/allocate_rules.h"
#include "moeq/artifacts/allocation.h"
#include "moeq/artifacts/eval.h"
#include "moeq/artifacts/model_match.h"
#include "moeq/artifacts/routing_profile.h"
#include "moeq/artifacts/sensitivity.h"
#include "moeq/base/file_util.h"
#include "moeq/profile/routing_profile.h"

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

// ---------------------------------------------------------------- routing_profile.json

TEST(ArtifactsRoutingProfile, GoldenV1ParsesToKnownValuesAndIsWrittenBackByteForByte) {
  const std::string path = Golden("routing-profile-v1.json");
  auto a = artifacts::ReadRoutingProfile(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(artifacts::ModelFingerprintOf(a->header), "f00d");
  EXPECT_EQ(a->model.model_type, "qwen3_moe");
  EXPECT_EQ(a->model.num_experts, 2);
  EXPECT_EQ(a->calibration.tokens, 8);
  EXPECT_EQ(a->calibration.source, "engine");
  ASSERT_EQ(a->domains.size(), 1u);
  EXPECT_EQ(a->domains[0].sources, std::vector<std::string>{"calib.txt"});
  EXPECT_EQ(a->hotness["window"].get<int>(), 4);
  EXPECT_EQ(a->tiers["formats"]["critical"], "q8g64");
  ASSERT_EQ(a->layers.size(), 2u);
  EXPECT_FALSE(a->layers[0].moe);
  EXPECT_TRUE(a->layers[0].experts.empty());
  const artifacts::RoutingLayer& l = a->layers[1];
  ASSERT_EQ(l.experts.size(), 2u);
  EXPECT_EQ(l.experts[0].count, 6);
  EXPECT_DOUBLE_EQ(l.experts[0].gate_mass, 3.75);
  EXPECT_DOUBLE_EQ(l.experts[0].prob_mass.value_or(0), 5.5);
  EXPECT_EQ(l.experts[1].tier, "deprioritized");
  EXPECT_EQ(l.experts[1].domain_counts->at("default"), 2);
  ASSERT_TRUE(l.experts[1].hotness);
  EXPECT_EQ(l.experts[1].hotness->promotions, 1);
  ASSERT_TRUE(l.summary);
  EXPECT_EQ(l.summary->tiers.at("critical"), 1);
  ASSERT_TRUE(l.top_pairs);
  ASSERT_EQ(l.top_pairs->size(), 1u);
  EXPECT_EQ((*l.top_pairs)[0].b, 1);
  ASSERT_TRUE(l.hotness);
  EXPECT_EQ(l.hotness->churn, 2);
  EXPECT_EQ(DumpJson(artifacts::RoutingProfileToJson(*a)), Text(path));

  // Through the profile module and back: the same file.
  auto prof = RoutingProfileFromArtifact(*a, path);
  ASSERT_TRUE(prof.ok()) << prof.status().ToString();
  EXPECT_EQ(prof->layers[1].experts[0].tier, ExpertTier::kCritical);
  EXPECT_EQ(prof->hotness.window, 4);
  EXPECT_DOUBLE_EQ(prof->tiers.critical_fraction, 0.25);
}

TEST(ArtifactsRoutingProfile, ProfileWriteReadRoundTrip) {
  RoutingProfile p;
  p.model_type = "mixtral";
  p.num_experts = 3;
  p.top_k = 2;
  p.tokens = 10;
  p.windows = 1;
  p.context = 10;
  p.source = "trace";
  p.has_prob_mass = false;
  p.domains = {{"code", {"a.jsonl"}, {"aa"}, 10, 1}};
  LayerProfile l;
  l.layer = 0;
  l.moe = true;
  l.tokens = 10;
  for (int e = 0; e < 3; ++e) {
    ExpertUsage u;
    u.count = 4 + 4 * (e == 0) - 2 * (e == 2);
    u.gate_mass = 0.5 * static_cast<double>(u.count);
    u.rank_sum = e;
    u.domain_counts = {u.count};
    u.tier = e == 2 ? ExpertTier::kDeprioritized : ExpertTier::kStandard;
    l.experts.push_back(u);
  }
  l.top_pairs = {{0, 1, 3, 1.25}};
  p.layers.push_back(l);
  const nlohmann::json header = {{"schema", "moeq.routing_profile"}, {"version", 1}};
  const nlohmann::json j = artifacts::RoutingProfileToJson(RoutingProfileToArtifact(p, header));
  EXPECT_FALSE(j["layers"][0]["experts"][0].contains("prob_mass"));  // traces: none
  auto a = artifacts::ParseRoutingProfile(j, "p.json");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(artifacts::RoutingProfileToJson(*a), j);
  auto back = RoutingProfileFromArtifact(*a, "p.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_FALSE(back->has_prob_mass);
  EXPECT_EQ(back->source, "trace");
  ASSERT_EQ(back->layers.size(), 1u);
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(back->layers[0].experts[e].count, l.experts[e].count);
    EXPECT_EQ(back->layers[0].experts[e].rank_sum, l.experts[e].rank_sum);
    EXPECT_EQ(back->layers[0].experts[e].tier, l.experts[e].tier);
    EXPECT_EQ(back->layers[0].experts[e].domain_counts, l.experts[e].domain_counts);
  }
  ASSERT_EQ(back->layers[0].top_pairs.size(), 1u);
  EXPECT_DOUBLE_EQ(back->layers[0].top_pairs[0].lift, 1.25);
  // And the profile writes the same JSON again.
  EXPECT_EQ(artifacts::RoutingProfileToJson(RoutingProfileToArtifact(*back, header)), j);
}

TEST(ArtifactsRoutingProfile, ErrorsNameFileLayerExpertAndField) {
  auto j = nlohmann::json::parse(Text(Golden("routing-profile-v1.json")));
  j["layers"][1]["experts"][1]["count"] = "six";
  auto bad = artifacts::ParseRoutingProfile(j, "p.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("p.json: layers[1].experts[1]: field 'count'"),
            std::string::npos)
      << bad.status().message();
  j = nlohmann::json::parse(Text(Golden("routing-profile-v1.json")));
  j["layers"][1]["experts"][0]["tier"] = "lukewarm";
  auto a = artifacts::ParseRoutingProfile(j, "p.json");
  ASSERT_TRUE(a.ok());
  auto prof = RoutingProfileFromArtifact(*a, "p.json");
  ASSERT_FALSE(prof.ok());
  EXPECT_NE(prof.status().message().find("unknown tier"), std::string::npos);
  j = nlohmann::json::parse(Text(Golden("routing-profile-v1.json")));
  j.erase("calibration");
  bad = artifacts::ParseRoutingProfile(j, "p.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("field 'calibration'"), std::string::npos);
  j = nlohmann::json::parse(Text(Golden("routing-profile-v1.json")));
  j["version"] = 2;
  bad = artifacts::ParseRoutingProfile(j, "p.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("version 2"), std::string::npos);
}

// ---------------------------------------------------------------- allocate rules

TEST(ArtifactsAllocateRules, GoldenV1ParsesToKnownValuesAndIsWrittenBackByteForByte) {
  const std::string path = Golden("allocate-rules-v1.json");
  auto a = artifacts::ReadAllocateRules(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(artifacts::ModelFingerprintOf(a->header), "f00d");
  ASSERT_TRUE(a->probe);
  EXPECT_EQ(a->probe->format, "q2g64");
  EXPECT_TRUE(a->probe->per_layer);
  EXPECT_DOUBLE_EQ(a->probe->kl_per_relative_change.value_or(0), 0.25);
  ASSERT_EQ(a->rules.size(), 2u);
  ASSERT_TRUE(a->measurements);
  ASSERT_EQ(a->measurements->size(), 2u);
  EXPECT_EQ((*a->measurements)[1].layer, -1);
  EXPECT_DOUBLE_EQ((*a->measurements)[0].sensitivity, 2.0);
  EXPECT_EQ(DumpJson(artifacts::AllocateRulesToJson(*a)), Text(path));
  // moeq-allocate's interpretation: two rules with priors, the first one layer-bound.
  alloc::PriorsConfig cfg;
  ASSERT_TRUE(alloc::AppendRules(*a, path, &cfg).ok());
  ASSERT_EQ(cfg.rules.size(), 2u);
  EXPECT_TRUE(cfg.rules[0].has_layers);
  EXPECT_DOUBLE_EQ(cfg.rules[0].prior, 1.5);
  EXPECT_FALSE(cfg.rules[1].has_layers);
}

TEST(ArtifactsAllocateRules, HandWrittenRulesRoundTripAndErrorsNameTheField) {
  nlohmann::json j = {{"schema", "moeq.allocate_rules"},
                      {"version", 1},
                      {"rules", {{{"match", {{"role", "router"}}}, {"format", "q8g64"}}}}};
  auto a = artifacts::ParseAllocateRules(j, "r.json");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_FALSE(a->probe);
  EXPECT_FALSE(a->measurements);
  EXPECT_EQ(artifacts::AllocateRulesToJson(*a), j);
  j["rulez"] = nlohmann::json::array();
  auto bad = artifacts::ParseAllocateRules(j, "r.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("r.json: field 'rulez'"), std::string::npos)
      << bad.status().message();
  j.erase("rulez");
  j["rules"][0]["match"]["role"] = "no_such_role";
  a = artifacts::ParseAllocateRules(j, "r.json");
  ASSERT_TRUE(a.ok());
  alloc::PriorsConfig cfg;
  const Status s = alloc::AppendRules(*a, "r.json", &cfg);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("r.json: field 'rules[0].match.role'"), std::string::npos)
      << s.message();
  j["version"] = 2;
  bad = artifacts::ParseAllocateRules(j, "r.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("version 2"), std::string::npos);
}

}  // namespace
}  // namespace moeq
