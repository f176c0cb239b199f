// moeq-quantize writes a model card: README.md in an MLX output directory, MODEL.README.md beside
// a .gguf, with Hugging Face front matter, the allocation summary, the command and (--eval) the
// quality figures.
#include <gtest/gtest.h>

#include <filesystem>

#include "moeq-quantize/quantize_command.h"
#include "moeq/artifacts/eval.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

ArtifactContext Ctx() {
  ArtifactContext ctx;
  ctx.tool = "moeq-quantize";
  ctx.command_line = "moeq-quantize m --uniform 4 -o out";
  ctx.progress = false;
  return ctx;
}

TEST(ModelCard, MlxOutputHasReadmeWithFrontMatterSummaryAndQuality) {
  test::ScopedTempDir tmp("moeq-card");
  test::SyntheticCheckpointOptions so;
  so.layers = 2;
  so.hidden = 64;
  so.experts = 2;
  so.moe_ff = 32;
  so.vocab = 64;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(tmp.Join("m"), so).ok());
  // eval.json as moeq-eval writes it (moeq/artifacts/eval.h).
  artifacts::EvalArtifact e;
  e.header = {{"schema", "moeq.eval"}, {"version", 1}};
  e.ppl = 12.345;
  e.ppl_stderr = 0.5;
  e.tokens_scored = 1000;
  e.protocol = {{"name", "reference"}};
  e.text_sha256 = "00";
  e.reference = artifacts::EvalReference{};
  e.reference->ppl = 12.0;
  e.reference->ppl_delta_pct = 2.875;
  e.reference->kl_mean = 0.01234;
  e.reference->kl_p99 = 0.1;
  e.reference->top1_agreement = 0.9;
  const nlohmann::json eval = artifacts::EvalToJson(e);
  ASSERT_TRUE(WriteFileAtomic(tmp.Join("eval.json"), eval.dump()).ok());
  QuantizeCommandOptions o;
  o.model_dir = tmp.Join("m");
  o.output = tmp.Join("out");
  o.uniform_bits = 4;
  o.group_size = 32;
  o.eval = tmp.Join("eval.json");
  ASSERT_TRUE(RunQuantize(o, Ctx()).ok());
  auto card = ReadFile(o.output + "/README.md");
  ASSERT_TRUE(card.ok());
  const std::string& c = *card;
  EXPECT_EQ(c.rfind("---\nbase_model: \"m\"\nquantized_by: moeq\nlibrary_name: mlx\n", 0), 0u)
      << c.substr(0, 200);
  for (const char* want :
       {"  - mlx\n", "## Allocation", "| expert_down |", "q4g32 ×", "| router |",
        "q8g64 ×",  // mlx-lm rule
        "moeq-quantize m --uniform 4 -o out", "## Quality", "12.345", "0.01234", "2.88"}) {
    EXPECT_NE(c.find(want), std::string::npos) << "missing '" << want << "' in\n" << c;
  }
  // Without --eval there is no quality section; with --no-model-card no README.
  o.eval.clear();
  o.output = tmp.Join("out2");
  ASSERT_TRUE(RunQuantize(o, Ctx()).ok());
  EXPECT_EQ(ReadFile(o.output + "/README.md")->find("## Quality"), std::string::npos);
  o.output = tmp.Join("out3");
  o.no_model_card = true;
  ASSERT_TRUE(RunQuantize(o, Ctx()).ok());
  EXPECT_FALSE(fs::exists(o.output + "/README.md"));
}

TEST(ModelCard, GgufCardLiesBesideTheFile) {
  const std::string model = std::string(kSourceDir) + "/models/tiny-qwen3moe";
  if (!fs::exists(model + "/config.json")) GTEST_FAIL() << "bundled model not found at " << model;
  test::ScopedTempDir tmp("moeq-card");
  QuantizeCommandOptions o;
  o.model_dir = model;
  o.output = tmp.Join("q.gguf");
  o.format = "gguf";
  o.gguf_type = "q4_K";
  ASSERT_TRUE(RunQuantize(o, Ctx()).ok());
  auto card = ReadFile(tmp.Join("q.README.md"));
  ASSERT_TRUE(card.ok());
  EXPECT_NE(card->find("library_name: gguf\n"), std::string::npos);
  EXPECT_NE(card->find("base_model: \"tiny-qwen3moe\""), std::string::npos);
  EXPECT_NE(card->find("`q.gguf`"), std::string::npos);
  EXPECT_NE(card->find(std::to_string(fs::file_size(o.output))), std::string::npos);
  // Without its .gguf, a card left by an earlier (killed or removed) output is a leftover: the
  // next run replaces it with its own card.
  fs::remove(o.output);
  ASSERT_TRUE(fs::exists(tmp.Join("q.README.md")));
  o.gguf_type = "q8_0";
  ASSERT_TRUE(RunQuantize(o, Ctx()).ok());
  auto card2 = ReadFile(tmp.Join("q.README.md"));
  ASSERT_TRUE(card2.ok());
  EXPECT_NE(*card2, *card);
  EXPECT_NE(card2->find(std::to_string(fs::file_size(o.output))), std::string::npos);
  // With the .gguf present, nothing is replaced without --force.
  EXPECT_EQ(RunQuantize(o, Ctx()).code(), StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace moeq
