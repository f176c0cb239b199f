// Routing profiles: the bundled model's counts against its independent reference, determinism
// across thread counts, and the JSON/safetensors outputs.
#include "moeq/profile/routing_profile.h"

#include <gtest/gtest.h>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/formats/safetensors.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

const std::string kModel = std::string(kSourceDir) + "/models/tiny-qwen3moe";

TEST(RoutingProfile, BundledModelMatchesReferenceRoutingCounts) {
  auto ref = ReadJsonFile(kModel + "/reference_routing.json");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  std::vector<int32_t> ids = (*ref)["input_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(ids.size(), 4096u);
  auto ckpt = Checkpoint::Open(kModel);
  ASSERT_TRUE(ckpt.ok());
  auto engine = Engine::Load(**ckpt);
  ASSERT_TRUE(engine.ok());
  ProfileOptions po;
  po.context = 512;
  po.progress = false;
  po.activations = false;
  auto prof = ProfileRouting(**engine, ids, po);
  ASSERT_TRUE(prof.ok()) << prof.status().ToString();
  EXPECT_EQ(prof->windows, 8);
  const auto& counts = (*ref)["counts"];
  int64_t total_diff = 0, total = 0, allowed = 0;
  for (size_t l = 0; l < prof->layers.size(); ++l) {
    allowed +=
        2 * (*ref)["per_layer_summary"][l]["near_tie_tokens_kth_vs_next_lt_1e-5"].get<int64_t>();
    for (size_t e = 0; e < prof->layers[l].experts.size(); ++e) {
      total_diff += std::abs(prof->layers[l].experts[e].count - counts[l][e].get<int64_t>());
      total += prof->layers[l].experts[e].count;
    }
  }
  std::printf(
      "routing assignments: %lld, |count - reference| summed: %lld (near-tie allowance %lld)\n",
      static_cast<long long>(total), static_cast<long long>(total_diff),
      static_cast<long long>(allowed));
  EXPECT_EQ(total, 4096 * 4 * 4);
  EXPECT_LE(total_diff, allowed);
}

TEST(RoutingProfile, IdenticalForOneAndTwoThreadsAndWritesOutputs) {
  test::ScopedTempDir dir;
  test::SyntheticCheckpointOptions so;
  so.experts = 8;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.path() + "/m", so).ok());
  auto ckpt = Checkpoint::Open(dir.path() + "/m");
  ASSERT_TRUE(ckpt.ok());
  auto engine = Engine::Load(**ckpt);
  ASSERT_TRUE(engine.ok());
  std::vector<int32_t> ids(64 * 5);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 31 + 7) % 256);
  ProfileOptions po;
  po.context = 64;
  po.progress = false;
  std::string text[2];
  for (int t = 1; t <= 2; ++t) {
    po.threads = t;
    auto prof = ProfileRouting(**engine, ids, po);
    ASSERT_TRUE(prof.ok());
    EXPECT_EQ(prof->windows, 5);
    text[t - 1] =
        artifacts::RoutingProfileToJson(
            RoutingProfileToArtifact(*prof, {{"schema", "moeq.routing_profile"}, {"version", 1}}))
            .dump();
    if (t == 2) {
      const std::string path = dir.path() + "/act.safetensors";
      ASSERT_TRUE(WriteActivationStats(path, *prof, (*ckpt)->adapter()).ok());
      auto f = SafetensorsFile::Open(path);
      ASSERT_TRUE(f.ok());
      const std::string name = "model.layers.0.mlp.experts.3.down_proj.weight.in_sq_mean";
      ASSERT_NE((*f)->Find(name), nullptr);
      EXPECT_EQ((*f)->Find(name)->shape[0], so.moe_ff);
      auto j = artifacts::RoutingProfileToJson(
          RoutingProfileToArtifact(*prof, {{"schema", "moeq.routing_profile"}, {"version", 1}}));
      auto parsed = artifacts::ParseRoutingProfile(j, "x");
      ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
      auto back = RoutingProfileFromArtifact(*parsed, "x");
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      EXPECT_EQ(back->layers[1].experts[2].count, prof->layers[1].experts[2].count);
      int64_t sum = 0;
      for (const auto& e : prof->layers[0].experts) sum += e.count;
      EXPECT_EQ(sum, 5 * 64 * so.top_k);
    }
  }
  EXPECT_EQ(text[0], text[1]);
}

}  // namespace
}  // namespace moeq
