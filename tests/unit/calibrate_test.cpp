// moeq-calibrate on a synthetic MoE: one measured prior per quantizable role, the median role at
// 1, the file accepted by moeq-allocate, errors for mismatched inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "moeq-allocate/allocate_command.h"
#include "moeq-analyze/analyze_command.h"
#include "moeq-calibrate/calibrate_command.h"
#include "moeq-quantize/quantize_command.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/eval/eval.h"
#include "moeq/export/quant_plan.h"
#include "moeq/quant/quant_format.h"
#include "moeq/tokenizer/tokenizer.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

ArtifactContext Ctx() {
  ArtifactContext c;
  c.tool = "moeq-calibrate";
  c.progress = false;
  return c;
}

TEST(Calibrate, MeasuresOnePriorPerRoleThatAllocateAccepts) {
  test::ScopedTempDir dir("moeq-calibrate");
  test::SyntheticCheckpointOptions so;  // qwen3_moe, 2 layers, 4 experts, hidden 64
  so.moe_ff = 64;                       // every matrix takes q4g64 (the down projections too)
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("m"), so).ok());
  AnalyzeCommandOptions ao;
  ao.model_dir = dir.Join("m");
  ao.output = dir.Join("sens.jsonl");
  ao.rank = 8;
  ASSERT_TRUE(RunAnalyze(ao, Ctx()).ok());
  std::vector<int32_t> ids(600);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % 256);
  ASSERT_TRUE(WriteTokenIds(dir.Join("ids.bin"), ids).ok());

  CalibrateCommandOptions o;
  o.model_dir = dir.Join("m");
  o.sensitivity = ao.output;
  o.input.tokens_file = dir.Join("ids.bin");
  o.windows = 4;
  o.context = 128;
  o.output = dir.Join("priors.json");
  o.per_layer = false;
  const Status st = RunCalibrate(o, Ctx());
  ASSERT_TRUE(st.ok()) << st.message();
  auto j = nlohmann::json::parse(*ReadFile(o.output));
  EXPECT_EQ(j["schema"], "moeq.allocate_rules");
  // Every quantizable role of the model is probed (embedding, lm_head, router, q/k/v/o, experts).
  ASSERT_EQ(j["rules"].size(), 10u) << j.dump(1);
  ASSERT_EQ(j["measurements"].size(), 10u);
  std::vector<double> priors;
  for (const auto& m : j["measurements"]) {
    EXPECT_GT(m["kl_mean"].get<double>(), 0.0) << m.dump();
    EXPECT_GT(m["predicted_noise"].get<double>(), 0.0) << m.dump();
    EXPECT_NEAR(m["sensitivity"].get<double>(),
                m["kl_mean"].get<double>() / m["predicted_noise"].get<double>(), 1e-12);
    priors.push_back(m["prior"].get<double>());
  }
  std::sort(priors.begin(), priors.end());
  EXPECT_DOUBLE_EQ(priors[priors.size() / 2], 1.0);  // the median role
  // Deterministic.
  o.output = dir.Join("priors2.json");
  ASSERT_TRUE(RunCalibrate(o, Ctx()).ok());
  EXPECT_EQ(*ReadFile(dir.Join("priors.json")), *ReadFile(o.output));

  // Per (role, layer), the default: 2 layers × 8 layer roles + embeddings + lm_head.
  CalibrateCommandOptions ol = o;
  ol.per_layer = true;
  ol.output = dir.Join("priors_layers.json");
  ASSERT_TRUE(RunCalibrate(ol, Ctx()).ok());
  auto jl = nlohmann::json::parse(*ReadFile(ol.output));
  ASSERT_EQ(jl["rules"].size(), 18u);
  int layered = 0;
  for (const auto& r : jl["rules"]) layered += r["match"].contains("layer");
  EXPECT_EQ(layered, 16);

  // moeq-allocate takes it as --rules: every tensor's prior is its role's measured one.
  AllocateCommandOptions al;
  al.sensitivity = ao.output;
  al.bpw = 4.5;
  al.objective = "mse";
  al.rules = dir.Join("priors.json");
  al.output = dir.Join("alloc.json");
  ArtifactContext actx = Ctx();
  actx.tool = "moeq-allocate";
  const Status as = RunAllocate(al, actx);
  ASSERT_TRUE(as.ok()) << as.message();
  auto a = nlohmann::json::parse(*ReadFile(al.output));
  std::map<std::string, double> by_role;
  for (const auto& r : j["rules"])
    by_role[r["match"]["role"].get<std::string>()] = r["prior"].get<double>();
  for (const auto& t : a["tensors"]) {
    EXPECT_DOUBLE_EQ(t["prior"].get<double>(), by_role.at(t["role"].get<std::string>()))
        << t["name"];
  }
}

// The in-memory probe (weight overlay, resumed from the cached stream) measures the same KL as
// quantizing the group into a checkpoint and evaluating that; --method local measures the
// last layer's largest probes and estimates the others, at fewer layer passes.
TEST(Calibrate, OverlayProbeEqualsCheckpointProbeAndLocalEstimates) {
  test::ScopedTempDir dir("moeq-calibrate");
  test::SyntheticCheckpointOptions so;
  so.moe_ff = 64;
  so.layers = 3;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("m"), so).ok());
  AnalyzeCommandOptions ao;
  ao.model_dir = dir.Join("m");
  ao.output = dir.Join("sens.jsonl");
  ao.rank = 8;
  ASSERT_TRUE(RunAnalyze(ao, Ctx()).ok());
  std::vector<int32_t> ids(600);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % 256);
  ASSERT_TRUE(WriteTokenIds(dir.Join("ids.bin"), ids).ok());
  CalibrateCommandOptions o;
  o.model_dir = dir.Join("m");
  o.sensitivity = ao.output;
  o.input.tokens_file = dir.Join("ids.bin");
  o.windows = 4;
  o.context = 128;
  o.top_k = 0;  // full-vocabulary KL, comparable with a model reference
  o.output = dir.Join("kl.json");
  ASSERT_TRUE(RunCalibrate(o, Ctx()).ok());
  auto kl = nlohmann::json::parse(*ReadFile(o.output));
  EXPECT_EQ(kl["probe"]["method"], "kl");

  // attn_o of layer 1 quantized into a checkpoint, evaluated against the source model.
  auto ckpt = Checkpoint::Open(dir.Join("m"));
  ASSERT_TRUE(ckpt.ok());
  auto fmt = quant::ParseFormatSpec("q4g64");
  ASSERT_TRUE(fmt.ok());
  auto plan = MakeUniformPlan(**ckpt, **fmt);
  ASSERT_TRUE(plan.ok());
  const std::string name = "model.layers.1.self_attn.o_proj.weight";
  QuantPlan one = *plan;
  one.formats.clear();
  one.formats[name] = plan->formats.at(name);
  MlxWriteOptions wo;
  wo.progress = false;
  std::filesystem::create_directories(dir.Join("q"));
  auto written = WriteMlxCheckpoint(**ckpt, one, dir.Join("q"), wo);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  auto qc = Checkpoint::Open(dir.Join("q"));
  ASSERT_TRUE(qc.ok());
  auto qe = Engine::Load(**qc, {1});
  auto re = Engine::Load(**ckpt, {1});
  ASSERT_TRUE(qe.ok() && re.ok());
  EvalOptions eo;
  eo.progress = false;
  auto proto = ProtocolPreset("reference", (*ckpt)->config(), -1);
  ASSERT_TRUE(proto.ok());
  eo.protocol = *proto;
  eo.protocol.context = 128;
  eo.protocol.max_chunks = 4;
  SavedLogits ref;
  EvalOptions er = eo;
  er.record = &ref;
  er.record_top_k = 0;
  ASSERT_TRUE(Evaluate(**re, ids, er).ok());
  eo.saved_reference = &ref;
  auto r = Evaluate(**qe, ids, eo);
  ASSERT_TRUE(r.ok());
  double probed = -1;
  for (const auto& m : kl["measurements"]) {
    if (m["role"] == "attn_o" && m["layer"] == 1) probed = m["kl_mean"].get<double>();
  }
  EXPECT_EQ(probed, r->kl_mean);
  EXPECT_GT(probed, 0.0);

  // --method local: the same groups, every KL positive, lm_head and (some of) the last
  // layer's groups measured exactly as above.
  o.method = "local";
  o.output = dir.Join("local.json");
  ASSERT_TRUE(RunCalibrate(o, Ctx()).ok());
  auto lo = nlohmann::json::parse(*ReadFile(o.output));
  EXPECT_EQ(lo["probe"]["method"], "local");
  EXPECT_GT(lo["probe"]["kl_per_relative_change"].get<double>(), 0.0);
  ASSERT_EQ(lo["measurements"].size(), kl["measurements"].size());
  int same = 0;
  for (size_t i = 0; i < kl["measurements"].size(); ++i) {
    const auto& a = kl["measurements"][i];
    const auto& b = lo["measurements"][i];
    EXPECT_EQ(a["role"], b["role"]);
    EXPECT_GT(b["kl_mean"].get<double>(), 0.0) << b.dump();
    same += a["kl_mean"] == b["kl_mean"];
  }
  EXPECT_GE(same, 2);  // lm_head and at least one last-layer probe are measured
  o.method = "bogus";
  o.output = dir.Join("bogus.json");
  EXPECT_EQ(RunCalibrate(o, Ctx()).code(), StatusCode::kInvalidArgument);
}

TEST(Calibrate, RefusesMismatchedOrMissingInputs) {
  test::ScopedTempDir dir("moeq-calibrate-err");
  test::SyntheticCheckpointOptions so;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("a"), so).ok());
  so.seed = 7;
  so.layers = 3;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("b"), so).ok());
  AnalyzeCommandOptions ao;
  ao.model_dir = dir.Join("b");
  ao.output = dir.Join("sens_b.jsonl");
  ao.rank = 8;
  ASSERT_TRUE(RunAnalyze(ao, Ctx()).ok());
  std::vector<int32_t> ids(300, 5);
  ASSERT_TRUE(WriteTokenIds(dir.Join("ids.bin"), ids).ok());
  CalibrateCommandOptions o;
  o.model_dir = dir.Join("a");
  o.sensitivity = ao.output;  // another model's
  o.input.tokens_file = dir.Join("ids.bin");
  o.context = 64;
  o.output = dir.Join("p.json");
  Status st = RunCalibrate(o, Ctx());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  // artifacts::RequireSameModel: both sides named, and the override offered.
  EXPECT_NE(st.message().find("model mismatch"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(ao.output), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("--allow-model-mismatch"), std::string::npos) << st.message();
  o.sensitivity.clear();
  EXPECT_EQ(RunCalibrate(o, Ctx()).code(), StatusCode::kInvalidArgument);
  o.sensitivity = ao.output;
  o.probe_format = "bf16";
  EXPECT_EQ(RunCalibrate(o, Ctx()).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(o.output));
}

}  // namespace
}  // namespace moeq
