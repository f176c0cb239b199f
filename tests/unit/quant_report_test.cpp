// Uniform-quantization report: byte totals, monotone error, and the 16-bit passthrough.
#include "moeq/report/quant_report.h"

#include <gtest/gtest.h>

#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

TEST(QuantReport, TotalsAndOrderingOnASyntheticModel) {
  test::ScopedTempDir dir;
  test::SyntheticCheckpointOptions so;
  so.experts = 4;
  so.hidden = 128;  // every row length a multiple of 128: every format applies
  so.moe_ff = 128;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.path(), so).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok());
  QuantReportOptions o;
  o.progress = false;
  auto rep = QuantReport(**ckpt, o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  const auto& rows = (*rep)["formats"];
  ASSERT_EQ(rows.size(), 8u);
  std::map<std::string, nlohmann::json> by;
  for (const auto& r : rows) by[r["format"].get<std::string>()] = r;
  // Error falls as bits rise (same group) and as the group shrinks (same bits).
  EXPECT_GT(by["q2g32"]["nrmse"].get<double>(), by["q4g32"]["nrmse"].get<double>());
  EXPECT_GT(by["q4g64"]["nrmse"].get<double>(), by["q8g64"]["nrmse"].get<double>());
  EXPECT_GT(by["q4g128"]["nrmse"].get<double>(), by["q4g32"]["nrmse"].get<double>());
  // bf16 weights kept in bf16: no error, and the model's bytes unchanged.
  EXPECT_EQ(by["bf16"]["nrmse"].get<double>(), 0.0);
  EXPECT_EQ(by["bf16"]["model_bytes"], (*rep)["source_bytes"]);
  // q4g64 with bf16 scales and biases: 4.5 bits per quantized weight.
  EXPECT_NEAR(by["q4g64"]["quantized_bpw"].get<double>(), 4.5, 1e-9);
  const int64_t qparams = (*rep)["quantizable_parameters"].get<int64_t>();
  EXPECT_EQ(by["q4g64"]["bytes"].get<uint64_t>(), static_cast<uint64_t>(qparams) * 45 / 80);
  EXPECT_FALSE(FormatQuantReportTable(*rep).empty());
}

}  // namespace
}  // namespace moeq
