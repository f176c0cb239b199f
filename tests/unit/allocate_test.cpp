// moeq-allocate: sensitivity reader, priors and rules, the SQNR veto, policies (MCKP, hotness,
// tiers), budget curve, and the command end to end on hand-written sensitivity files.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "moeq-allocate/allocate_command.h"
#include "moeq/allocate/allocation.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/profile/routing_profile.h"
#include "testing/temp_dir.h"

namespace moeq::alloc {
namespace {

struct Grid {
  const char* format;
  int bits, group;
  double nrmse;  // typical NRMSE of Gaussian weights
};
constexpr Grid kGrid[] = {{"q2g32", 2, 32, 0.40},     {"q3g64", 3, 64, 0.19},
                          {"q4g32", 4, 32, 0.080},    {"q4g64", 4, 64, 0.089},
                          {"q4g128", 4, 128, 0.10},   {"q8g64", 8, 64, 0.0053},
                          {"q8g128", 8, 128, 0.0059}, {"bf16", 16, 0, 0.0}};

struct FakeTensor {
  std::string name, role;
  int layer = -1, expert = -1;
  int64_t rows = 64, cols = 64;
  double scale = 1.0;  // multiplies every NRMSE (heavier tails)
};

std::string Header(const std::string& schema = "moeq.sensitivity", int version = 1) {
  nlohmann::json h = {{"schema", schema},
                      {"version", version},
                      {"producer", {{"tool", "test"}}},
                      {"inputs", {{"model", "fake"}, {"model_fingerprint", "abc"}}},
                      {"options", nlohmann::json::object()}};
  return h.dump() + "\n";
}

std::string Lines(const std::vector<FakeTensor>& ts) {
  std::string out;
  for (const auto& t : ts) {
    const int64_t n = t.rows * t.cols;
    for (const auto& g : kGrid) {
      const double nrmse = g.nrmse * t.scale;
      const uint64_t bytes = g.bits == 16 ? 2 * n : n * g.bits / 8 + n / g.group * 4;
      nlohmann::json j = {{"tensor", t.name},
                          {"role", t.role},
                          {"layer", t.layer},
                          {"expert", t.expert},
                          {"shape", {t.rows, t.cols}},
                          {"params", n},
                          {"dtype", "BF16"},
                          {"format", g.format},
                          {"bits", g.bits},
                          {"group_size", g.group},
                          {"bytes", bytes},
                          {"nrmse", nrmse},
                          {"sqnr_db", nrmse > 0 ? std::min(200.0, -20 * std::log10(nrmse)) : 200.0},
                          {"features", {{"kurtosis", 0.1}}}};
      out += j.dump() + "\n";
    }
  }
  return out;
}

// A small MoE: embeddings, lm_head, and per layer attention q, router and experts' gate/up/down.
std::vector<FakeTensor> SmallMoe(int layers = 3, int experts = 4) {
  std::vector<FakeTensor> ts;
  ts.push_back({"model.embed_tokens.weight", "embedding", -1, -1, 128, 64});
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ts.push_back({p + "self_attn.q_proj.weight", "attn_q", l, -1, 64, 64, 1.0 + 0.1 * l});
    ts.push_back({p + "mlp.gate.weight", "router", l, -1, experts, 64});
    for (int e = 0; e < experts; ++e) {
      const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
      ts.push_back({ep + "gate_proj.weight", "expert_gate", l, e, 32, 64, 0.9 + 0.05 * e});
      ts.push_back({ep + "up_proj.weight", "expert_up", l, e, 32, 64, 0.9 + 0.03 * e});
      ts.push_back({ep + "down_proj.weight", "expert_down", l, e, 64, 32, 1.0 + 0.04 * e});
    }
  }
  ts.push_back({"lm_head.weight", "lm_head", -1, -1, 128, 64});
  return ts;
}

SensitivityFile Parse(const std::string& text) {
  auto f = ParseSensitivity(text, "sens.jsonl");
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? *f : SensitivityFile{};
}

const TensorDecision& DecisionOf(const SensitivityFile& f, const AllocationResult& r,
                                 const std::string& name) {
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    if (f.tensors[i].name == name) return r.decisions[i];
  }
  ADD_FAILURE() << "no tensor " << name;
  static TensorDecision none;
  return none;
}

std::string FormatOf(const SensitivityFile& f, const AllocationResult& r, const std::string& name) {
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    if (f.tensors[i].name == name) return f.tensors[i].configs[r.decisions[i].config].format;
  }
  return "";
}

RoutingProfile Profile(int layers, std::vector<int64_t> counts) {
  RoutingProfile p;
  p.num_experts = static_cast<int64_t>(counts.size());
  for (int l = 0; l < layers; ++l) {
    LayerProfile lp;
    lp.layer = l;
    lp.moe = true;
    for (int64_t c : counts) {
      ExpertUsage u;
      u.count = c;
      lp.experts.push_back(u);
    }
    p.layers.push_back(lp);
  }
  return p;
}

// ---------------------------------------------------------------- reader

TEST(AllocateSensitivity, ReadsTensorsAndConfigs) {
  auto f = Parse(Header() + Lines(SmallMoe(2, 2)));
  ASSERT_EQ(f.tensors.size(), 1u + 2 * (2 + 6) + 1);
  EXPECT_EQ(f.tensors[0].role, TensorRole::kEmbedding);
  EXPECT_EQ(f.tensors[0].configs.size(), 8u);
  EXPECT_EQ(f.tensors[0].configs[3].format, "q4g64");
  EXPECT_EQ(f.tensors[0].configs[3].bytes, 128u * 64 / 2 + 128 * 64 / 64 * 4);
  EXPECT_EQ(f.tensors[3].expert, 0);
  EXPECT_EQ(f.sha256.size(), 64u);
}

TEST(AllocateSensitivity, ErrorsNameTheFileLineAndField) {
  const std::string good = Lines({{"w", "attn_q", 0, -1}});
  struct Case {
    std::string text, expect1, expect2;
  } cases[] = {
      {Header("moeq.allocation") + good, "sens.jsonl:1", "schema"},
      {Header("moeq.sensitivity", 9) + good, "sens.jsonl:1", "version"},
      {Header() + "{\"tensor\": \"w\"}\n", "sens.jsonl:2", "field 'format'"},
      {Header() + "{nope\n", "sens.jsonl:2", "syntax"},
  };
  for (const auto& c : cases) {
    auto f = ParseSensitivity(c.text, "sens.jsonl");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find(c.expect1), std::string::npos) << f.status().message();
    EXPECT_NE(f.status().message().find(c.expect2), std::string::npos) << f.status().message();
  }
  // A wrong type and an unknown role name the line and the field.
  std::string bad = good;
  bad.replace(bad.find("\"nrmse\":"), 8, "\"nrmse\":\"x\",\"zz\":");
  auto f = ParseSensitivity(Header() + bad, "s.jsonl");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("s.jsonl:2: field 'nrmse'"), std::string::npos)
      << f.status().message();
  std::string role = good;
  role.replace(role.find("attn_q"), 6, "attn_zz");
  f = ParseSensitivity(Header() + role, "s.jsonl");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("field 'role'"), std::string::npos) << f.status().message();
  // The lines of one tensor must be consecutive.
  f = ParseSensitivity(
      Header() + Lines({{"a", "attn_q", 0}, {"b", "attn_k", 0}, {"a", "attn_q", 0}}), "s.jsonl");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("s.jsonl:18: field 'tensor'"), std::string::npos)
      << f.status().message();
}

// ---------------------------------------------------------------- priors and rules

TEST(AllocatePriors, CombineByMaxAndRepoConfigMatchesTheDefaults) {
  auto f = Parse(Header() + Lines(SmallMoe(3, 2)));
  PriorsConfig cfg;
  auto prior = [&](const std::string& name) {
    for (const auto& t : f.tensors) {
      if (t.name == name) return PriorOf(t, cfg, 2);
    }
    return -1.0;
  };
  EXPECT_EQ(prior("model.embed_tokens.weight"), 10.0);
  EXPECT_EQ(prior("lm_head.weight"), 10.0);
  EXPECT_EQ(prior("model.layers.0.mlp.gate.weight"),
            8.0);  // router (8) in the first layer (3): max
  EXPECT_EQ(prior("model.layers.0.self_attn.q_proj.weight"), 3.0);
  EXPECT_EQ(prior("model.layers.1.self_attn.q_proj.weight"), 1.0);
  EXPECT_EQ(prior("model.layers.2.mlp.experts.1.down_proj.weight"), 2.0);

  auto j = ReadJsonFile(std::string(kSourceDir) + "/configs/priors.json");
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  auto repo = PriorsFromJson(*j, "configs/priors.json");
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  EXPECT_EQ(PriorsToJson(*repo), PriorsToJson(PriorsConfig{}));

  nlohmann::json bad = *j;
  bad["roles"]["routr"] = 3;
  auto e = PriorsFromJson(bad, "p.json");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("p.json: field 'roles.routr'"), std::string::npos)
      << e.status().message();
  bad = *j;
  bad["rules"] = {{{"match", {{"role", "router"}}}, {"max_bits", "eight"}}};
  e = PriorsFromJson(bad, "p.json");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("field 'rules[0].max_bits'"), std::string::npos)
      << e.status().message();
}

TEST(AllocatePriors, PinsAndBitBoundsAreHonoured) {
  auto f = Parse(Header() + Lines(SmallMoe(2, 2)));
  PriorsConfig cfg;
  nlohmann::json rules = {
      {"schema", "moeq.allocate_rules"},
      {"version", 1},
      {"rules",
       {{{"match", {{"role", "router"}}}, {"format", "q8g64"}},
        {{"match", {{"role", {"expert_down"}}, {"layers", {1, 1}}, {"experts", {0}}}},
         {"min_bits", 8}},
        {{"match", {{"name", "lm_head.weight"}}}, {"max_bits", 4}}}}};
  ASSERT_TRUE(AppendRulesFromJson(rules, "rules.json", &cfg).ok());
  AllocationSettings s;
  s.priors = cfg;
  auto m = BuildAllocationModel(f, s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  // A budget just above the minimum: bounds and pins still hold.
  auto r = SolveAllocation(f, *m, m->problem.MinBytes() + 100, SolverKind::kAuto);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(FormatOf(f, *r, "model.layers.0.mlp.gate.weight"), "q8g64");
  EXPECT_EQ(DecisionOf(f, *r, "model.layers.0.mlp.gate.weight").reason, "pinned");
  EXPECT_EQ(FormatOf(f, *r, "model.layers.1.mlp.experts.0.down_proj.weight").substr(0, 2), "q8");
  // A large budget: lm_head may not go above 4 bits.
  auto big = SolveAllocation(f, *m, m->problem.MaxBytes(), SolverKind::kAuto);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(FormatOf(f, *big, "lm_head.weight"), "q4g32");
  EXPECT_EQ(FormatOf(f, *big, "model.embed_tokens.weight"), "bf16");

  // A pin to a format the tensor was not measured in names the rule and the tensor.
  PriorsConfig bad;
  nlohmann::json r2 = {{"schema", "moeq.allocate_rules"},
                       {"version", 1},
                       {"rules", {{{"match", {{"role", "attn_q"}}}, {"format", "q5g64"}}}}};
  ASSERT_TRUE(AppendRulesFromJson(r2, "rules.json", &bad).ok());
  s.priors = bad;
  auto e = BuildAllocationModel(f, s);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("rules.json: rules[0]"), std::string::npos)
      << e.status().message();
  EXPECT_NE(e.status().message().find("q_proj"), std::string::npos) << e.status().message();
}

// ---------------------------------------------------------------- veto, budget

TEST(AllocateVeto, VetoAndBudgetAreNeverViolated) {
  auto ts = SmallMoe(3, 4);
  ts[3].scale = 3.0;   // q2 at 1.2 NRMSE, q3 at 0.57 (< 9 dB): only 4-bit and up allowed
  ts[4].scale = 40.0;  // everything but 16-bit vetoed ... except 16-bit itself (200 dB)
  auto f = Parse(Header() + Lines(ts));
  AllocationSettings s;
  auto m = BuildAllocationModel(f, s);
  ASSERT_TRUE(m.ok());
  EXPECT_GT(m->vetoed_configs, 0);
  double prev = 1e300;
  for (uint64_t b = m->problem.MinBytes(); b <= m->problem.MaxBytes();
       b += (m->problem.MaxBytes() - m->problem.MinBytes()) / 23) {
    auto r = SolveAllocation(f, *m, b, SolverKind::kAuto);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LE(r->solution.bytes, b);
    EXPECT_LE(r->solution.objective, prev + 1e-12);
    prev = r->solution.objective;
    for (size_t i = 0; i < f.tensors.size(); ++i) {
      EXPECT_GE(r->decisions[i].sqnr_db, 9.0) << f.tensors[i].name << " at budget " << b;
    }
  }
  auto below = SolveAllocation(f, *m, m->problem.MinBytes() - 1, SolverKind::kAuto);
  ASSERT_FALSE(below.ok());
  EXPECT_NE(below.status().message().find(std::to_string(m->problem.MinBytes()) + " bytes"),
            std::string::npos);
}

TEST(AllocateVeto, AllConfigsVetoedForcesTheBestAndSaysSo) {
  auto f = Parse(Header() + Lines({{"a", "attn_q", 0}, {"b", "attn_k", 0}}));
  AllocationSettings s;
  s.min_sqnr = 250;  // above even the 16-bit config's capped 200 dB
  auto m = BuildAllocationModel(f, s);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->forced_tensors, 2);
  auto r = SolveAllocation(f, *m, m->problem.MinBytes(), SolverKind::kAuto);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->decisions[0].reason, "vetoed_forced");
  EXPECT_EQ(FormatOf(f, *r, "a"), "bf16");
}

TEST(AllocateVeto, AboveFullPrecisionKeeps16Bit) {
  auto f = Parse(Header() + Lines(SmallMoe(2, 2)));
  auto m = BuildAllocationModel(f, AllocationSettings{});
  ASSERT_TRUE(m.ok());
  auto r = SolveAllocation(f, *m, m->full_precision_bytes * 2, SolverKind::kAuto);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->above_full_precision);
  for (size_t i = 0; i < f.tensors.size(); ++i)
    EXPECT_EQ(f.tensors[i].configs[r->decisions[i].config].format, "bf16");
  EXPECT_EQ(r->solution.objective, 0.0);
}

// ---------------------------------------------------------------- hotness and tiers

TEST(AllocatePolicies, HotnessAlphaFollowsTheDocumentedFormula) {
  auto f = Parse(Header() + Lines(SmallMoe(1, 4)));
  AllocationSettings s;
  s.policy = Policy::kMckpHotness;
  s.profile = Profile(1, {1000, 100, 10, 0});  // mean 277.5
  auto m = BuildAllocationModel(f, s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto r = SolveAllocation(f, *m, (m->problem.MinBytes() + m->problem.MaxBytes()) / 3,
                           SolverKind::kAuto);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(DecisionOf(f, *r, "model.layers.0.mlp.experts.0.up_proj.weight").alpha,
              std::sqrt(1000 / 277.5), 1e-12);
  EXPECT_NEAR(DecisionOf(f, *r, "model.layers.0.mlp.experts.1.up_proj.weight").alpha,
              std::sqrt(100 / 277.5), 1e-12);
  EXPECT_EQ(DecisionOf(f, *r, "model.layers.0.mlp.experts.3.up_proj.weight").alpha,
            0.25);  // clamped
  EXPECT_EQ(DecisionOf(f, *r, "model.layers.0.self_attn.q_proj.weight").alpha, 1.0);
  // The hot expert gets at least as many bits as the cold one.
  const auto hot = FormatOf(f, *r, "model.layers.0.mlp.experts.0.up_proj.weight");
  const auto cold = FormatOf(f, *r, "model.layers.0.mlp.experts.3.up_proj.weight");
  EXPECT_GE(std::stoi(hot.substr(1)), std::stoi(cold.substr(1))) << hot << " vs " << cold;
  // Without a profile the policy is a usage error.
  s.profile.reset();
  auto e = BuildAllocationModel(f, s);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
}

TEST(AllocatePolicies, TiersGiveFormatsPruneOnlyWhenAllowedAndBumpVetoedFormats) {
  auto ts = SmallMoe(2, 10);
  for (auto& t : ts) {
    if (t.expert == 9 && t.role == "expert_gate") t.scale = 1.5;  // q2g32 at 4.4 dB: vetoed
  }
  auto f = Parse(Header() + Lines(ts));
  AllocationSettings s;
  s.policy = Policy::kTiered;
  s.profile = Profile(2, {900, 800, 700, 600, 500, 400, 300, 200, 100, 1});
  auto m = BuildAllocationModel(f, s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto r = SolveAllocation(f, *m, m->problem.MinBytes() + 4096, SolverKind::kAuto);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Tiers of 10 experts: 2 critical, 7 (round 6.5) standard, 1 deprioritized; expert 9 (count 1 <
  // 0.05·mean) prunable but not pruned without allow_prune: deprioritized format.
  const std::string p = "model.layers.1.mlp.experts.";
  EXPECT_EQ(FormatOf(f, *r, p + "0.up_proj.weight"), "q8g64");
  EXPECT_EQ(DecisionOf(f, *r, p + "0.up_proj.weight").tier, "critical");
  EXPECT_EQ(DecisionOf(f, *r, p + "0.up_proj.weight").reason, "tier");
  EXPECT_EQ(FormatOf(f, *r, p + "5.up_proj.weight"), "q4g64");
  EXPECT_EQ(DecisionOf(f, *r, p + "9.up_proj.weight").tier, "prunable");
  EXPECT_FALSE(DecisionOf(f, *r, p + "9.up_proj.weight").prune);
  // Expert 9's q2g32 is vetoed for gate_proj: bumped to the next admissible config with more bits.
  EXPECT_EQ(FormatOf(f, *r, p + "9.gate_proj.weight"), "q3g64");
  EXPECT_NE(DecisionOf(f, *r, p + "9.gate_proj.weight").note.find("bumped"), std::string::npos);
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    if (!r->decisions[i].prune) {
      EXPECT_GE(r->decisions[i].sqnr_db, 9.0) << f.tensors[i].name;
    }
  }
  s.allow_prune = true;
  auto m2 = BuildAllocationModel(f, s);
  ASSERT_TRUE(m2.ok());
  auto r2 = SolveAllocation(f, *m2, m2->problem.MinBytes() + 4096, SolverKind::kAuto);
  ASSERT_TRUE(r2.ok());
  EXPECT_TRUE(DecisionOf(f, *r2, p + "9.up_proj.weight").prune);
  EXPECT_FALSE(DecisionOf(f, *r2, p + "8.up_proj.weight").prune);
}

// ---------------------------------------------------------------- objectives

TEST(AllocateObjective, MseWeighsSquaredErrorByExposure) {
  // The header records top_k (moeq-analyze writes the model's routing shape there).
  nlohmann::json h = nlohmann::json::parse(Header());
  h["inputs"]["top_k"] = 2;
  auto f = Parse(h.dump() + "\n" + Lines(SmallMoe(2, 8)));
  AllocationSettings s;
  s.objective = Objective::kMse;
  auto m = BuildAllocationModel(f, s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  AllocationSettings sn;
  auto mn = BuildAllocationModel(f, sn);
  ASSERT_TRUE(mn.ok());
  int experts = 0, dense = 0;
  for (size_t ti = 0; ti < f.tensors.size(); ++ti) {
    const auto& t = f.tensors[ti];
    const double x = m->base[ti].exposure;
    if (t.expert >= 0) {
      EXPECT_DOUBLE_EQ(x, 2.0 / 8.0) << t.name;  // top_k / experts of the layer
      ++experts;
    } else {
      EXPECT_EQ(x, 1.0) << t.name;
      ++dense;
    }
    EXPECT_EQ(mn->base[ti].exposure, 1.0);
    // Every option's cost: prior^2 * alpha * exposure * NRMSE^2 (mse) against prior * alpha *
    // NRMSE.
    const uint32_t b = m->problem.offsets[ti];
    for (size_t k = 0; k < m->option_config[ti].size(); ++k) {
      const double e = t.configs[static_cast<size_t>(m->option_config[ti][k])].nrmse;
      const double pa = m->base[ti].prior * m->base[ti].alpha;
      EXPECT_NEAR(m->problem.cost[b + k], pa * m->base[ti].prior * x * e * e, 1e-13) << t.name;
      EXPECT_NEAR(mn->problem.cost[mn->problem.offsets[ti] + k], pa * e, 1e-15) << t.name;
    }
  }
  EXPECT_EQ(experts, 2 * 8 * 3);
  EXPECT_GT(dense, 0);
  // At the same budget the exposure moves bytes from the experts to the dense tensors.
  const uint64_t budget = (m->problem.MinBytes() + m->problem.MaxBytes()) / 4;
  auto r = SolveAllocation(f, *m, budget, SolverKind::kAuto);
  auto rn = SolveAllocation(f, *mn, budget, SolverKind::kAuto);
  ASSERT_TRUE(r.ok() && rn.ok());
  auto expert_bytes = [&](const AllocationResult& res) {
    uint64_t sum = 0;
    for (size_t ti = 0; ti < f.tensors.size(); ++ti) {
      if (f.tensors[ti].expert >= 0)
        sum += f.tensors[ti].configs[static_cast<size_t>(res.decisions[ti].config)].bytes;
    }
    return sum;
  };
  EXPECT_LE(r->solution.bytes, budget);
  EXPECT_LT(expert_bytes(*r), expert_bytes(*rn));
  // Without top_k in the header or a profile, mse cannot weigh the experts: a usage error.
  auto f2 = Parse(Header() + Lines(SmallMoe(1, 4)));
  auto e = BuildAllocationModel(f2, s);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("top_k"), std::string::npos) << e.status().message();
  EXPECT_FALSE(ParseObjective("l2").ok());
  EXPECT_EQ(ObjectiveName(*ParseObjective("mse")), "mse");
}

// ---------------------------------------------------------------- curve

TEST(AllocateCurve, MonotoneWithAKneeAndSelfContainedOutputs) {
  auto f = Parse(Header() + Lines(SmallMoe(3, 4)));
  auto m = BuildAllocationModel(f, AllocationSettings{});
  ASSERT_TRUE(m.ok());
  auto c = BudgetCurve(*m, 12, SolverKind::kLagrangian);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 12u);
  EXPECT_EQ(c->front().budget, m->problem.MinBytes());
  EXPECT_EQ(c->back().budget, m->problem.MaxBytes());
  for (size_t i = 1; i < c->size(); ++i) {
    EXPECT_LE((*c)[i].objective, (*c)[i - 1].objective + 1e-12);
    EXPECT_LE((*c)[i].bytes, (*c)[i].budget);
  }
  const size_t knee = CurveKnee(*c);
  EXPECT_GT(knee, 0u);
  EXPECT_LT(knee, c->size() - 1);
  const std::string svg = CurveSvg(*c, m->total_params, "t");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("knee"), std::string::npos);
  const std::string csv = CurveCsv(*c, m->total_params);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 13);
  // A convex elbow: the knee of a hand-made curve is the corner.
  std::vector<CurvePoint> elbow;
  for (int i = 0; i <= 10; ++i)
    elbow.push_back(
        {static_cast<uint64_t>(i * 100), 0, i < 3 ? 10.0 - 3.0 * i : 1.0 - 0.01 * i, 0, 0});
  EXPECT_EQ(CurveKnee(elbow), 3u);
}

// ---------------------------------------------------------------- the command

TEST(AllocateCommand, RefusesAProfileOfAnotherModelUnlessAllowed) {
  test::ScopedTempDir dir("moeq-allocate-match");
  const std::string sens = dir.Join("sensitivity.jsonl");
  std::ofstream(sens) << Header() + Lines(SmallMoe(2, 4));  // model_fingerprint "abc"
  RoutingProfile p = Profile(2, {400, 300, 200, 100});
  p.top_k = 2;
  const std::string prof = dir.Join("routing_profile.json");
  auto write_profile = [&](const std::string& fp) {
    const nlohmann::json header = {{"schema", "moeq.routing_profile"},
                                   {"version", 1},
                                   {"inputs", {{"model", "fake"}, {"model_fingerprint", fp}}}};
    std::ofstream(prof, std::ios::trunc)
        << artifacts::RoutingProfileToJson(RoutingProfileToArtifact(p, header)).dump();
  };
  write_profile("def");
  AllocateCommandOptions o;
  o.sensitivity = sens;
  o.profile = prof;
  o.policy = "mckp-hotness";
  o.bpw = 4.5;
  o.output = dir.Join("a.json");
  ArtifactContext ctx;
  ctx.tool = "moeq-allocate";
  ctx.progress = false;
  const Status s = RunAllocate(o, ctx);
  EXPECT_EQ(ExitCodeFor(s), 2) << s.ToString();
  for (const std::string& want :
       {sens, prof, std::string("model_fingerprint abc"), std::string("model_fingerprint def"),
        std::string("--allow-model-mismatch")}) {
    EXPECT_NE(s.message().find(want), std::string::npos) << want << " in " << s.message();
  }
  EXPECT_FALSE(std::filesystem::exists(o.output));
  o.allow_model_mismatch = true;
  const Status allowed = RunAllocate(o, ctx);
  EXPECT_TRUE(allowed.ok()) << allowed.ToString();
  write_profile("abc");
  o.allow_model_mismatch = false;
  ctx.force = true;
  const Status same = RunAllocate(o, ctx);
  EXPECT_TRUE(same.ok()) << same.ToString();
}

TEST(AllocateCommand, EndToEndIsDeterministicAndNamesTheSmallestFeasibleSize) {
  test::ScopedTempDir dir("moeq-allocate");
  const std::string sens = dir.Join("sensitivity.jsonl");
  std::ofstream(sens) << Header() + Lines(SmallMoe(2, 4));
  AllocateCommandOptions o;
  o.sensitivity = sens;
  o.bpw = 4.5;
  o.output = dir.Join("a.json");
  o.curve = 6;
  ArtifactContext ctx;
  ctx.tool = "moeq-allocate";
  ctx.progress = false;
  ASSERT_TRUE(RunAllocate(o, ctx).ok());
  auto first = ReadFile(o.output);
  ASSERT_TRUE(first.ok());
  auto j = nlohmann::json::parse(*first);
  EXPECT_EQ(j["schema"], "moeq.allocation");
  EXPECT_EQ(j["tensors"].size(), 1u + 2 * (2 + 12) + 1);
  EXPECT_LE(j["result"]["bytes"].get<uint64_t>(), j["budget"]["bytes"].get<uint64_t>());
  EXPECT_LE(j["result"]["bpw"].get<double>(), 4.5);
  EXPECT_EQ(j["inputs"]["model_fingerprint"], "abc");
  for (const auto& t : j["tensors"]) {
    EXPECT_TRUE(t.contains("name") && t.contains("format") && t.contains("prune"));
    EXPECT_GE(t["sqnr_db"].get<double>(), 9.0);
  }
  EXPECT_TRUE(j["totals"]["by_role"].contains("expert_down"));
  EXPECT_TRUE(std::filesystem::exists(dir.Join("a.curve.svg")));
  EXPECT_TRUE(std::filesystem::exists(dir.Join("a.curve.csv")));
  // Existing output without --force: refused; with it: byte-identical.
  EXPECT_EQ(RunAllocate(o, ctx).code(), StatusCode::kAlreadyExists);
  ctx.force = true;
  ASSERT_TRUE(RunAllocate(o, ctx).ok());
  EXPECT_EQ(*ReadFile(o.output), *first);
  // Too small a budget: a runtime error naming the smallest feasible size in bytes and GiB.
  o.bpw = 0;
  o.budget = "1KB";
  o.curve = 0;
  Status st = RunAllocate(o, ctx);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ExitCodeFor(st), 1);
  EXPECT_NE(st.message().find("smallest feasible size"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("GiB"), std::string::npos) << st.message();
  // --budget min: the smallest feasible plan, exactly.
  o.budget = "min";
  o.output = dir.Join("min.json");
  ASSERT_TRUE(RunAllocate(o, ctx).ok());
  {
    auto mj = nlohmann::json::parse(*ReadFile(o.output));
    EXPECT_EQ(mj["budget"]["bytes"], mj["budget"]["min_feasible_bytes"]);
    EXPECT_EQ(mj["result"]["bytes"], mj["budget"]["min_feasible_bytes"]);
  }
  // Usage errors: no budget, tiered without a profile.
  o.budget.clear();
  EXPECT_EQ(ExitCodeFor(RunAllocate(o, ctx)), 2);
  o.budget = "1GB";
  o.policy = "tiered";
  EXPECT_EQ(ExitCodeFor(RunAllocate(o, ctx)), 2);
}

TEST(AllocateCommand, BinaryExitCodes) {
  const char* env = std::getenv("MOEQ_BIN_DIR");
  const std::string bin = std::string(env ? env : MOEQ_BIN_DIR) + "/moeq-allocate";
  ASSERT_TRUE(std::filesystem::exists(bin))
      << bin << " is not built (the tools are built with the tests)";
  test::ScopedTempDir dir("moeq-allocate-bin");
  const std::string sens = dir.Join("s.jsonl");
  std::ofstream(sens) << Header() + Lines(SmallMoe(1, 2));
  auto run = [&](const std::string& args) {
    const std::string cmd =
        bin + " " + sens + " -q -o " + dir.Join("a.json") + " --force " + args + " >/dev/null 2>&1";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  EXPECT_EQ(run("--bpw 5"), 0);
  EXPECT_EQ(run("--budget 10B"), 1);
  EXPECT_EQ(run("--budget 1GB --policy nonsense"), 2);
}

}  // namespace
}  // namespace moeq::alloc
