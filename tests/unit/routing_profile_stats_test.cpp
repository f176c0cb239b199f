// Routing statistics beyond counts: rank, co-activation, domains, hotness, tiers and routing
// traces, checked against a brute-force recomputation from the raw per-token routing.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/profile/routing_profile.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

// Records the raw routing of one window: layer → [tokens, top_k] ids and weights.
class RawRouting : public ForwardObserver {
 public:
  void OnRouting(int layer, int64_t tokens, int top_k, std::span<const int32_t> experts,
                 std::span<const float> weights, std::span<const float>,
                 std::span<const float>) override {
    ids[layer].assign(experts.begin(), experts.begin() + tokens * top_k);
    w[layer].assign(weights.begin(), weights.begin() + tokens * top_k);
  }
  std::map<int, std::vector<int32_t>> ids;
  std::map<int, std::vector<float>> w;
};

class RoutingStats : public ::testing::Test {
 protected:
  void SetUp() override {
    so_.experts = 8;
    so_.top_k = 2;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir_.path() + "/m", so_).ok());
    auto c = Checkpoint::Open(dir_.path() + "/m");
    ASSERT_TRUE(c.ok());
    ckpt_ = std::move(*c);
    auto e = Engine::Load(*ckpt_);
    ASSERT_TRUE(e.ok());
    engine_ = std::move(*e);
    a_.resize(32 * 6);
    b_.resize(32 * 4);
    for (size_t i = 0; i < a_.size(); ++i) a_[i] = static_cast<int32_t>((i * 31 + 7) % 256);
    for (size_t i = 0; i < b_.size(); ++i) b_[i] = static_cast<int32_t>((i * i * 13 + 5) % 256);
    po_.context = 32;
    po_.progress = false;
    po_.activations = false;
    po_.hotness.window = 40;
    po_.hotness.update_every = 8;
    po_.hotness.promote_above = 1.2;
    po_.hotness.demote_below = 0.9;
    po_.top_pairs = 5;
  }
  std::vector<CalibrationText> Texts() const {
    CalibrationText ta, tb;
    ta.domain = "code";
    ta.tokens = a_;
    tb.domain = "prose";
    tb.tokens = b_;
    return {ta, tb};
  }
  test::ScopedTempDir dir_;
  test::SyntheticCheckpointOptions so_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> a_, b_;
  ProfileOptions po_;
};

TEST_F(RoutingStats, MatchesBruteForceRecomputation) {
  const auto texts = Texts();
  auto prof = ProfileRouting(*engine_, texts, po_);
  ASSERT_TRUE(prof.ok()) << prof.status().ToString();
  const int E = so_.experts, k = so_.top_k;
  // Raw routing of every window in text order.
  std::map<int, std::vector<int32_t>> ids;
  std::map<int, std::vector<float>> w;
  std::vector<int> domain_of_token;
  for (size_t t = 0; t < texts.size(); ++t) {
    for (size_t s = 0; s + 32 <= texts[t].tokens.size(); s += 32) {
      RawRouting raw;
      std::vector<float> logits;
      ASSERT_TRUE(engine_->Forward(texts[t].tokens.subspan(s, 32), &logits, &raw).ok());
      for (auto& [l, v] : raw.ids) ids[l].insert(ids[l].end(), v.begin(), v.end());
      for (auto& [l, v] : raw.w) w[l].insert(w[l].end(), v.begin(), v.end());
      domain_of_token.insert(domain_of_token.end(), 32, static_cast<int>(t));
    }
  }
  const int64_t T = static_cast<int64_t>(domain_of_token.size());
  EXPECT_EQ(prof->tokens, T);
  ASSERT_EQ(prof->domains.size(), 2u);
  EXPECT_EQ(prof->domains[0].name, "code");
  for (int l = 0; l < so_.layers; ++l) {
    const LayerProfile& lp = prof->layers[static_cast<size_t>(l)];
    ASSERT_TRUE(lp.moe);
    std::vector<int64_t> count(E), rank(E), dom(2 * E);
    std::vector<double> gate(E);
    std::map<std::pair<int, int>, int64_t> pairs;
    for (int64_t t = 0; t < T; ++t) {
      for (int j = 0; j < k; ++j) {
        const int e = ids[l][t * k + j];
        ++count[e];
        rank[e] += j;
        gate[e] += w[l][t * k + j];
        ++dom[domain_of_token[t] * E + e];
        for (int j2 = j + 1; j2 < k; ++j2)
          ++pairs[{std::min(e, ids[l][t * k + j2]), std::max(e, ids[l][t * k + j2])}];
      }
    }
    for (int e = 0; e < E; ++e) {
      const ExpertUsage& u = lp.experts[static_cast<size_t>(e)];
      EXPECT_EQ(u.count, count[e]);
      EXPECT_EQ(u.rank_sum, rank[e]);
      EXPECT_NEAR(u.gate_mass, gate[e], 1e-9 * (1 + gate[e]));
      EXPECT_EQ(u.domain_counts[0], dom[e]);
      EXPECT_EQ(u.domain_counts[1], dom[E + e]);
      EXPECT_EQ(u.domain_counts[0] + u.domain_counts[1], u.count);
    }
    // Top pairs: by count, ties by index; lift = n·T / (n_a·n_b).
    std::vector<std::pair<int64_t, std::pair<int, int>>> sorted;
    for (auto& [ab, n] : pairs) sorted.push_back({-n, ab});
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(lp.top_pairs.size(), std::min<size_t>(5, sorted.size()));
    for (size_t i = 0; i < lp.top_pairs.size(); ++i) {
      EXPECT_EQ(lp.top_pairs[i].a, sorted[i].second.first);
      EXPECT_EQ(lp.top_pairs[i].b, sorted[i].second.second);
      EXPECT_EQ(lp.top_pairs[i].count, -sorted[i].first);
      const double expect = static_cast<double>(-sorted[i].first) * static_cast<double>(T) /
                            (static_cast<double>(count[sorted[i].second.first]) *
                             static_cast<double>(count[sorted[i].second.second]));
      EXPECT_NEAR(lp.top_pairs[i].lift, expect, 1e-12 * expect);
    }
    // Hotness: recount each update's window from scratch.
    const double share = static_cast<double>(k) / E;
    std::vector<bool> hot(E, false);
    std::vector<int64_t> hot_updates(E), promotions(E), demotions(E);
    int64_t updates = 0;
    for (int64_t t = po_.hotness.window; t <= T; t += po_.hotness.update_every) {
      std::vector<int64_t> c(E);
      for (int64_t s = t - po_.hotness.window; s < t; ++s) {
        for (int j = 0; j < k; ++j) ++c[ids[l][s * k + j]];
      }
      for (int e = 0; e < E; ++e) {
        const double f = static_cast<double>(c[e]) / po_.hotness.window;
        if (updates == 0) {
          hot[e] = f > po_.hotness.promote_above * share;
        } else if (!hot[e] && f > po_.hotness.promote_above * share) {
          hot[e] = true;
          ++promotions[e];
        } else if (hot[e] && f < po_.hotness.demote_below * share) {
          hot[e] = false;
          ++demotions[e];
        }
        hot_updates[e] += hot[e];
      }
      ++updates;
    }
    EXPECT_EQ(lp.hotness_updates, updates);
    EXPECT_GT(updates, 10);
    for (int e = 0; e < E; ++e) {
      const ExpertHotness& h = lp.experts[static_cast<size_t>(e)].hotness;
      EXPECT_EQ(h.hot_updates, hot_updates[e]) << "layer " << l << " expert " << e;
      EXPECT_EQ(h.promotions, promotions[e]);
      EXPECT_EQ(h.demotions, demotions[e]);
      EXPECT_EQ(h.hot, hot[e]);
    }
    // Tiers: AssignTiers on the combined counts.
    const auto tiers = AssignTiers(count, po_.tiers);
    for (int e = 0; e < E; ++e) EXPECT_EQ(lp.experts[static_cast<size_t>(e)].tier, tiers[e]);
  }
}

TEST_F(RoutingStats, DomainCountsEqualSeparateRunsAndSumToCombined) {
  const auto texts = Texts();
  auto both = ProfileRouting(*engine_, texts, po_);
  auto a = ProfileRouting(*engine_, std::span(texts).subspan(0, 1), po_);
  auto b = ProfileRouting(*engine_, std::span(texts).subspan(1, 1), po_);
  ASSERT_TRUE(both.ok() && a.ok() && b.ok());
  EXPECT_EQ(both->domains[0].tokens, a->tokens);
  EXPECT_EQ(both->domains[1].tokens, b->tokens);
  for (size_t l = 0; l < both->layers.size(); ++l) {
    for (size_t e = 0; e < both->layers[l].experts.size(); ++e) {
      const ExpertUsage& u = both->layers[l].experts[e];
      EXPECT_EQ(u.domain_counts[0], a->layers[l].experts[e].count);
      EXPECT_EQ(u.domain_counts[1], b->layers[l].experts[e].count);
      EXPECT_EQ(u.count, a->layers[l].experts[e].count + b->layers[l].experts[e].count);
    }
  }
  // The JSON carries them and reads back.
  auto j = artifacts::RoutingProfileToJson(
      RoutingProfileToArtifact(*both, {{"schema", "moeq.routing_profile"}, {"version", 1}}));
  EXPECT_EQ(j["layers"][0]["experts"][3]["domain_counts"]["prose"].get<int64_t>(),
            both->layers[0].experts[3].domain_counts[1]);
  auto parsed = artifacts::ParseRoutingProfile(j, "x");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  auto back = RoutingProfileFromArtifact(*parsed, "x");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->layers[1].experts[5].domain_counts, both->layers[1].experts[5].domain_counts);
  EXPECT_EQ(back->layers[1].experts[5].rank_sum, both->layers[1].experts[5].rank_sum);
  EXPECT_EQ(back->layers[1].experts[5].tier, both->layers[1].experts[5].tier);
  EXPECT_EQ(back->layers[0].top_pairs.size(), both->layers[0].top_pairs.size());
}

TEST_F(RoutingStats, IdenticalForAnyThreadCount) {
  const auto texts = Texts();
  std::string out[3];
  for (int t = 1; t <= 3; ++t) {
    po_.threads = t;
    auto p = ProfileRouting(*engine_, texts, po_);
    ASSERT_TRUE(p.ok());
    out[t - 1] = artifacts::RoutingProfileToJson(RoutingProfileToArtifact(*p, {})).dump();
  }
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(out[0], out[2]);
}

TEST_F(RoutingStats, TraceOfTheEngineRoutingGivesTheSameProfile) {
  const auto texts = Texts();
  po_.trace_output = dir_.path() + "/trace.jsonl";
  po_.trace_header = {{"schema", "moeq.routing_trace"}, {"version", 1}};
  auto direct = ProfileRouting(*engine_, texts, po_);
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  TraceInput in{po_.trace_output, "ignored"};  // every line names its domain
  auto traced = ProfileRoutingTraces((*ckpt_).config(), std::span(&in, 1), po_);
  ASSERT_TRUE(traced.ok()) << traced.status().ToString();
  EXPECT_EQ(traced->source, "trace");
  EXPECT_FALSE(traced->has_prob_mass);
  EXPECT_EQ(traced->tokens, direct->tokens);
  for (size_t l = 0; l < direct->layers.size(); ++l) {
    const LayerProfile& x = direct->layers[l];
    const LayerProfile& y = traced->layers[l];
    EXPECT_EQ(y.tokens, x.tokens);
    EXPECT_EQ(y.hotness_updates, x.hotness_updates);
    for (size_t e = 0; e < x.experts.size(); ++e) {
      EXPECT_EQ(y.experts[e].count, x.experts[e].count);
      EXPECT_EQ(y.experts[e].gate_mass, x.experts[e].gate_mass);  // %.9g round-trips floats
      EXPECT_EQ(y.experts[e].rank_sum, x.experts[e].rank_sum);
      EXPECT_EQ(y.experts[e].tier, x.experts[e].tier);
      EXPECT_EQ(y.experts[e].hotness.hot_updates, x.experts[e].hotness.hot_updates);
      EXPECT_EQ(y.experts[e].hotness.promotions, x.experts[e].hotness.promotions);
    }
    ASSERT_EQ(y.top_pairs.size(), x.top_pairs.size());
    for (size_t i = 0; i < x.top_pairs.size(); ++i)
      EXPECT_EQ(y.top_pairs[i].count, x.top_pairs[i].count);
  }
  // Domains come from the lines' "domain" (which wins over the file's).
  ASSERT_EQ(traced->domains.size(), 2u);
  EXPECT_EQ(traced->domains[0].name, "code");
  EXPECT_EQ(traced->domains[1].tokens, direct->domains[1].tokens);
  EXPECT_EQ(traced->layers[0].experts[2].domain_counts, direct->layers[0].experts[2].domain_counts);
}

TEST_F(RoutingStats, BadTraceLinesNameFileLineAndField) {
  const std::string path = dir_.path() + "/bad.jsonl";
  struct Case {
    std::string line, expect;
  } cases[] = {
      {R"({"layer":0,"token":0,"experts":[1,2],"weights":[0.5,0.5]})"
       "\n"
       R"({"layer":0,"token":1,"experts":[1,9],"weights":[0.5,0.5]})",
       ":2: field 'experts'"},
      {R"({"layer":0,"token":0,"experts":[1],"weights":[1.0]})", ":1: field 'experts'"},
      {R"({"layer":7,"token":0,"experts":[1,2],"weights":[0.5,0.5]})", ":1: field 'layer'"},
      {R"({"token":0,"experts":[1,2],"weights":[0.5,0.5]})", ":1: missing field 'layer'"},
      {R"({"layer":0,"token":"a","experts":[1,2],"weights":[0.5,0.5]})", ":1: field 'token'"},
      {R"({"layer":0,"token":0,"experts":[1,2],"weights":[0.5]})", ":1: field 'weights'"},
      {R"({"layer":0,"token":0,"experts":[3,3],"weights":[0.5,0.5]})", ":1: field 'experts'"},
      {"{\"layer\":0,", ":1: invalid JSON"},
      {R"({"layer":1,"token":4,"experts":[1,2],"weights":[0.5,0.5]})"
       "\n\n"
       R"({"layer":1,"token":4,"experts":[1,3],"weights":[0.5,0.5]})",
       ":3: field 'token'"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(WriteFileAtomic(path, c.line + "\n").ok());
    TraceInput in{path, "default"};
    auto r = ProfileRoutingTraces((*ckpt_).config(), std::span(&in, 1), po_);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_NE(r.status().message().find(path + c.expect), std::string::npos)
        << r.status().message();
  }
}

TEST(HotnessTracker, HysteresisOnAHandMadeSequence) {
  // 4 experts, top-1: uniform share 0.25; promote above 0.375, demote below 0.25.
  HotnessOptions h;
  h.window = 8;
  h.update_every = 4;
  h.promote_above = 1.5;
  h.demote_below = 1.0;
  HotnessTracker tr(4, 1, h);
  auto feed = [&](std::initializer_list<int32_t> seq) {
    for (int32_t e : seq) tr.AddToken(std::span<const int32_t>(&e, 1));
  };
  // Tokens 1..8: expert 0 has 4/8 = 0.5 > 0.375 → initially hot (not a promotion); expert 1 has
  // 2/8.
  feed({0, 0, 1, 0, 2, 0, 1, 3});
  EXPECT_EQ(tr.updates(), 1);
  EXPECT_TRUE(tr.experts()[0].hot);
  EXPECT_FALSE(tr.experts()[1].hot);
  EXPECT_EQ(tr.experts()[0].promotions, 0);
  // Tokens 9..12: window = {2,0,1,3,1,1,1,2}: expert 0 at 1/8 < 0.25 → demoted; expert 1 at 4/8 →
  // promoted.
  feed({1, 1, 1, 2});
  EXPECT_EQ(tr.updates(), 2);
  EXPECT_FALSE(tr.experts()[0].hot);
  EXPECT_EQ(tr.experts()[0].demotions, 1);
  EXPECT_TRUE(tr.experts()[1].hot);
  EXPECT_EQ(tr.experts()[1].promotions, 1);
  // Tokens 13..16: window = {1,1,1,2,0,2,2,3}: expert 1 at 3/8 = 0.375 is inside the hysteresis
  // band [0.25, 0.375] and stays hot; expert 2 at 3/8 is not above 0.375 and stays cold.
  feed({0, 2, 2, 3});
  EXPECT_TRUE(tr.experts()[1].hot);
  EXPECT_FALSE(tr.experts()[2].hot);
  // Tokens 17..20: window = {0,2,2,3,2,3,3,0}: expert 1 at 0 is demoted; 2 and 3 at 3/8 stay cold.
  feed({2, 3, 3, 0});
  EXPECT_FALSE(tr.experts()[1].hot);
  EXPECT_EQ(tr.experts()[1].demotions, 1);
  EXPECT_FALSE(tr.experts()[3].hot);
  EXPECT_EQ(tr.updates(), 4);
  EXPECT_EQ(tr.experts()[0].hot_updates, 1);
  EXPECT_EQ(tr.experts()[1].hot_updates, 2);
  EXPECT_DOUBLE_EQ(tr.experts()[0].freq_max, 0.5);
  EXPECT_DOUBLE_EQ(tr.experts()[0].freq_min, 0.125);
  EXPECT_EQ(tr.hot_set_sum(), 3);
}

TEST(HotnessOptions, ParsesTheShippedConfigAndRejectsBadFields) {
  auto h = LoadHotnessOptions(std::string(kSourceDir) + "/configs/hotness.json");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  const HotnessOptions d;
  EXPECT_EQ(h->window, d.window);
  EXPECT_EQ(h->update_every, d.update_every);
  EXPECT_EQ(h->promote_above, d.promote_above);
  EXPECT_EQ(h->demote_below, d.demote_below);
  auto bad = HotnessOptionsFromJson({{"window", 0}}, "h.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("h.json: field 'window'"), std::string::npos)
      << bad.status().message();
  EXPECT_FALSE(HotnessOptionsFromJson({{"windw", 10}}, "h.json").ok());
  EXPECT_FALSE(
      HotnessOptionsFromJson({{"promote_above", 1.0}, {"demote_below", 2.0}}, "h.json").ok());
}

}  // namespace
}  // namespace moeq
