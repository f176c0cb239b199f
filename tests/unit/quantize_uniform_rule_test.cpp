// moeq-quantize --uniform follows mlx-lm's MoE rule (routers and shared-expert gates at 8 bits,
// group 64); --uniform-all quantizes them at BITS too.
#include <gtest/gtest.h>

#include "moeq-quantize/quantize_command.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

struct UniformRun {
  test::ScopedTempDir tmp{"moeq-uniform-rule"};
  std::unique_ptr<Checkpoint> out;
  nlohmann::json manifest;

  UniformRun(bool uniform_all, int bits) {
    test::SyntheticCheckpointOptions o;
    o.model_type = "qwen2_moe";
    o.layers = 1;
    o.hidden = 64;
    o.experts = 2;
    o.moe_ff = 32;
    o.shared_experts = 1;
    o.vocab = 64;
    EXPECT_TRUE(test::WriteSyntheticCheckpoint(tmp.Join("m"), o).ok());
    QuantizeCommandOptions q;
    q.model_dir = tmp.Join("m");
    q.output = tmp.Join("out");
    q.uniform_bits = bits;
    q.group_size = 32;
    q.uniform_all = uniform_all;
    ArtifactContext ctx;
    ctx.progress = false;
    const Status s = RunQuantize(q, ctx);
    EXPECT_TRUE(s.ok()) << s.ToString();
    auto c = Checkpoint::Open(q.output);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (c.ok()) out = std::move(c).value();
    auto m = ReadJsonFile(q.output + "/quant_manifest.json");
    if (m.ok()) manifest = *m;
  }
  const CheckpointTensor& Role(TensorRole role) const {
    for (const auto& t : out->tensors()) {
      if (t.id.role == role) return t;
    }
    ADD_FAILURE() << "no tensor of role " << RoleName(role);
    return out->tensors().front();
  }
};

TEST(QuantizeUniformRule, RoutersAndSharedExpertGatesStayAt8BitsLikeMlxLm) {
  UniformRun r(false, 3);
  ASSERT_NE(r.out, nullptr);
  EXPECT_EQ(r.Role(TensorRole::kRouter).quant.bits, 8);
  EXPECT_EQ(r.Role(TensorRole::kRouter).quant.group_size, 64);
  EXPECT_EQ(r.Role(TensorRole::kSharedExpertGate).quant.bits, 8);
  EXPECT_EQ(r.Role(TensorRole::kExpertDown).quant.bits, 3);
  EXPECT_EQ(r.Role(TensorRole::kSharedDown).quant.bits, 3);
  EXPECT_NE(r.manifest.dump().find("mlx-lm rule"), std::string::npos);
}

TEST(QuantizeUniformRule, UniformAllQuantizesRoutersAtBits) {
  UniformRun r(true, 3);
  ASSERT_NE(r.out, nullptr);
  EXPECT_EQ(r.Role(TensorRole::kRouter).quant.bits, 3);
  EXPECT_EQ(r.Role(TensorRole::kRouter).quant.group_size, 32);
  // A plain uniform plan leaves the [1, H] shared-expert gate (not a quantizable role) unquantized.
  EXPECT_EQ(r.Role(TensorRole::kSharedExpertGate).quant.bits, 0);
  EXPECT_EQ(r.manifest.dump().find("mlx-lm rule"), std::string::npos);
}

TEST(QuantizeUniformRule, UniformAllNeedsUniform) {
  test::ScopedTempDir tmp("moeq-uniform-rule");
  QuantizeCommandOptions q;
  q.model_dir = tmp.Join("m");
  q.output = tmp.Join("out");
  q.allocation = tmp.Join("a.json");
  q.uniform_all = true;
  ArtifactContext ctx;
  ctx.progress = false;
  EXPECT_EQ(RunQuantize(q, ctx).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moeq
