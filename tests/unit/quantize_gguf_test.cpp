// moeq-quantize --format gguf: the command writes one GGUF file that reads back and decodes,
// refuses an existing output without --force and a directory, replaces with --force, and a
// file-size limit leaves nothing complete-looking behind.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "moeq-quantize/quantize_command.h"
#include "moeq/base/build_info.h"
#include "moeq/export/gguf_writer.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

const std::string kModel = std::string(kSourceDir) + "/models/tiny-qwen3moe";

std::string BinDir() { return test::ToolBinDir(); }

ArtifactContext Quiet(bool force = false) {
  ArtifactContext ctx;
  ctx.tool = "moeq-quantize";
  ctx.progress = false;
  ctx.force = force;
  return ctx;
}

TEST(QuantizeGguf, CommandWritesAFileThatDecodes) {
  if (!fs::exists(kModel + "/config.json")) GTEST_FAIL() << "bundled model not found at " << kModel;
  test::ScopedTempDir tmp("moeq-quantize-gguf");
  QuantizeCommandOptions o;
  o.model_dir = kModel;
  o.output = tmp.Join("m.gguf");
  o.format = "gguf";
  o.uniform_bits = 8;
  o.group_size = 32;
  ASSERT_TRUE(RunQuantize(o, Quiet()).ok());
  auto g = GgufFile::Open(o.output);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  int q8 = 0;
  for (const auto& t : (*g)->tensors()) {
    q8 += t.type == GgmlType::kQ8_0;
    auto d = (*g)->DequantizeTensor(t.name);
    ASSERT_TRUE(d.ok()) << t.name << ": " << d.status().ToString();
    for (float v : *d) ASSERT_TRUE(std::isfinite(v)) << t.name;
  }
  EXPECT_EQ(q8, 30);  // embeddings, lm_head, 4 x (q, k, v, o, 3 merged expert tensors)
  EXPECT_FALSE(fs::exists(o.output + ".tmp"));

  // Existing output: refused without --force, replaced with it; a directory is refused.
  EXPECT_EQ(RunQuantize(o, Quiet()).code(), StatusCode::kAlreadyExists);
  o.uniform_bits = 4;
  o.group_size = 64;
  ASSERT_TRUE(RunQuantize(o, Quiet(true)).ok());
  EXPECT_LT(fs::file_size(o.output), 10u << 20);
  o.output = tmp.path();
  EXPECT_EQ(RunQuantize(o, Quiet(true)).code(), StatusCode::kInvalidArgument);
  o.output = kModel + "/x.gguf";
  EXPECT_EQ(RunQuantize(o, Quiet(true)).code(), StatusCode::kInvalidArgument);
}

TEST(QuantizeGguf, FileSizeLimitLeavesNothingCompleteLooking) {
  ASSERT_TRUE(test::ToolBuilt("moeq-quantize"));
  if (!fs::exists(kModel + "/config.json")) GTEST_FAIL() << "bundled model not found at " << kModel;
  test::ScopedTempDir tmp("moeq-quantize-gguf");
  const std::string out = tmp.Join("m.gguf");
  const std::string cmd = "/bin/sh -c \"ulimit -f 512; exec " + BinDir() + "/moeq-quantize " +
                          kModel + " -o " + out +
                          " --format gguf --uniform 8 --group 32 -q\" >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 1);
  EXPECT_TRUE(fs::is_empty(tmp.path()))
      << "left behind: " << fs::directory_iterator(tmp.path())->path();
}

}  // namespace
}  // namespace moeq
