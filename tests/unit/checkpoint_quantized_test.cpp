// Checkpoint::Open on MLX-quantized directories: logical tensors, ReadF32 = Dequantize,
// inconsistent "quantization" blocks are errors naming the file and the field, and
// moeq-inspect's report shows formats and bits per weight.
#include <gtest/gtest.h>

#include "moeq-quantize/quantize_command.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/quant/quantizer.h"
#include "moeq/report/inspect.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

struct Quantized {
  test::ScopedTempDir tmp{"moeq-ckpt-quant"};
  std::string model = tmp.Join("model");
  std::string out = tmp.Join("out");

  explicit Quantized(int bits = 4, int group = 32) {
    test::SyntheticCheckpointOptions o;
    o.layers = 1;
    o.hidden = 64;
    o.experts = 2;
    o.moe_ff = 32;
    o.vocab = 64;
    EXPECT_TRUE(test::WriteSyntheticCheckpoint(model, o).ok());
    QuantizeCommandOptions q;
    q.model_dir = model;
    q.output = out;
    q.uniform_bits = bits;
    q.group_size = group;
    ArtifactContext ctx;
    ctx.progress = false;
    EXPECT_TRUE(RunQuantize(q, ctx).ok());
  }
};

TEST(CheckpointQuantized, PresentsLogicalTensorsAndDequantizesOnRead) {
  Quantized q;
  auto src = Checkpoint::Open(q.model);
  auto out = Checkpoint::Open(q.out);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE((*out)->is_quantized());
  EXPECT_FALSE((*src)->is_quantized());
  const std::string name = "model.layers.0.mlp.experts.1.down_proj.weight";
  const CheckpointTensor* t = (*out)->Find(name);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->info.shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(t->info.dtype, DType::kBF16);
  EXPECT_EQ(t->id.role, TensorRole::kExpertDown);
  EXPECT_EQ(t->id.expert, 1);
  EXPECT_EQ(t->quant.bits, 4);
  EXPECT_EQ(t->quant.group_size, 32);
  EXPECT_EQ(t->quant.scales, "model.layers.0.mlp.experts.1.down_proj.scales");
  EXPECT_EQ(t->quant.stored_bytes, 64u * 32 * 4 / 8 + 2 * 64 * (32 / 32) * 2);
  EXPECT_EQ((*out)->Find("model.layers.0.mlp.experts.1.down_proj.scales"), nullptr);
  EXPECT_FALSE((*out)->View(name).ok());  // no float bytes to view

  std::vector<float> got;
  ASSERT_TRUE((*out)->ReadF32(name, &got).ok());
  auto view = (*src)->View(name);
  auto want = quant::Dequantize(*quant::QuantizeTensor(*view, *quant::FindAffineFormat(4, 32)));
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(got, *want);
  // Float tensors read as before.
  std::vector<float> norm;
  ASSERT_TRUE((*out)->ReadF32("model.norm.weight", &norm).ok());
  EXPECT_EQ(norm, *ToF32(*(*src)->View("model.norm.weight")));
}

TEST(CheckpointQuantized, InconsistentQuantizationConfigIsAnError) {
  Quantized q;
  const std::string cfg_path = q.out + "/config.json";
  nlohmann::json cfg = *ReadJsonFile(cfg_path);
  cfg["quantization"]["bits"] = 8;  // packed widths no longer fit
  ASSERT_TRUE(WriteFileAtomic(cfg_path, cfg.dump()).ok());
  auto out = Checkpoint::Open(q.out);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("bits 8"), std::string::npos) << out.status().message();
  EXPECT_NE(out.status().message().find("model.safetensors"), std::string::npos)
      << out.status().message();

  cfg.erase("quantization");
  ASSERT_TRUE(WriteFileAtomic(cfg_path, cfg.dump()).ok());
  out = Checkpoint::Open(q.out);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("'quantization'"), std::string::npos)
      << out.status().message();
}

TEST(CheckpointQuantized, InspectReportsFormatsAndBitsPerWeight) {
  Quantized q(8, 64);
  auto out = Checkpoint::Open(q.out);
  ASSERT_TRUE(out.ok());
  auto r = InspectCheckpoint(**out);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)["quantized"].get<bool>());
  ASSERT_TRUE((*r)["by_format"].contains("q8g64"));
  ASSERT_TRUE((*r)["by_format"].contains("bf16"));  // norms
  const auto& tensors = (*r)["quantized_tensors"];
  ASSERT_FALSE(tensors.empty());
  for (const auto& t : tensors) EXPECT_DOUBLE_EQ(t["bits_per_weight"].get<double>(), 8.5);
  const double bpw = (*r)["bits_per_weight"].get<double>();
  EXPECT_GT(bpw, 8.5);
  EXPECT_LT(bpw, 10.0);
  const std::string text = FormatInspectTable(*r);
  EXPECT_NE(text.find("q8g64"), std::string::npos);
  EXPECT_NE(text.find("bits per weight"), std::string::npos);
}

}  // namespace
}  // namespace moeq
