#include "moeq/profile/expert_tiers.h"

#include <gtest/gtest.h>

#include "moeq/base/build_info.h"

namespace moeq {
namespace {

TEST(ExpertTiers, RanksByCountWithDynaMintShares) {
  // 20 experts: counts 100, 99, ..., 81 → 4 critical, 13 standard, 3 deprioritized.
  std::vector<int64_t> counts;
  for (int e = 0; e < 20; ++e) counts.push_back(100 - e);
  auto tiers = AssignTiers(counts, TierThresholds{});
  int n[4] = {0, 0, 0, 0};
  for (auto t : tiers) ++n[static_cast<int>(t)];
  EXPECT_EQ(n[0], 4);
  EXPECT_EQ(n[1], 13);
  EXPECT_EQ(n[2], 3);
  EXPECT_EQ(n[3], 0);
  EXPECT_EQ(tiers[0], ExpertTier::kCritical);
  EXPECT_EQ(tiers[19], ExpertTier::kDeprioritized);
}

TEST(ExpertTiers, NearlyUnusedExpertsArePrunableAndTiesGoToLowerIndex) {
  std::vector<int64_t> counts = {50, 50, 0, 50, 1};
  auto tiers = AssignTiers(counts, TierThresholds{});
  EXPECT_EQ(tiers[0], ExpertTier::kCritical);  // tie with 1 and 3: lowest index wins
  EXPECT_EQ(tiers[2], ExpertTier::kPrunable);
  EXPECT_EQ(tiers[4], ExpertTier::kPrunable);  // 1 < 0.05 * 30.2
  EXPECT_EQ(tiers[1], ExpertTier::kStandard);
}

TEST(ExpertTiers, JsonRoundTripAndUnknownKeysRejected) {
  TierThresholds t;
  t.critical_fraction = 0.3;
  t.standard_format = "q4g32";
  auto back = TierThresholdsFromJson(TierThresholdsToJson(t), "x.json");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_DOUBLE_EQ(back->critical_fraction, 0.3);
  EXPECT_EQ(back->standard_format, "q4g32");
  auto bad = TierThresholdsFromJson({{"critical_fractoin", 0.2}}, "x.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("critical_fractoin"), std::string::npos);
  auto range = TierThresholdsFromJson({{"standard_fraction", 1.5}}, "x.json");
  EXPECT_FALSE(range.ok());
  auto fmt = TierThresholdsFromJson({{"formats", {{"critical", "q7g64"}}}}, "x.json");
  EXPECT_FALSE(fmt.ok());
}

TEST(ExpertTiers, ShippedConfigParses) {
  auto t = LoadTierThresholds(std::string(kSourceDir) + "/configs/tiers.json");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_DOUBLE_EQ(t->critical_fraction, 0.20);
  EXPECT_DOUBLE_EQ(t->standard_fraction, 0.65);
}

}  // namespace
}  // namespace moeq
