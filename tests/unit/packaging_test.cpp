// Defaults compiled into the binaries (an installed tool never reads the source tree) and the
// build's version information.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "moeq-analyze/analyze_command.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/base/git_version.h"
#include "moeq/sensitivity/default_grid.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

TEST(BuiltInDefaults, GridIsConfigsMintGridJson) {
  auto file = ReadFile(std::string(kSourceDir) + "/configs/mint_grid.json");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(std::string(kDefaultMintGridJson), *file);
  EXPECT_EQ(Sha256Hex(std::string_view(kDefaultMintGridJson)),
            *Sha256File(std::string(kSourceDir) + "/configs/mint_grid.json"));
}

TEST(BuiltInDefaults, AnalyzeWithoutGridUsesTheBuiltInGridAndSaysSo) {
  test::ScopedTempDir dir("moeq-builtin-grid");
  test::SyntheticCheckpointOptions so;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("m"), so).ok());
  AnalyzeCommandOptions o;
  o.model_dir = dir.Join("m");
  o.output = dir.Join("s.jsonl");
  o.rank = 8;
  o.probes = 4;
  ArtifactContext ctx;
  ctx.threads = 1;
  ctx.progress = false;
  ASSERT_TRUE(RunAnalyze(o, ctx).ok());
  auto text = ReadFile(o.output);
  ASSERT_TRUE(text.ok());
  const nlohmann::json header = nlohmann::json::parse(text->substr(0, text->find('\n')));
  EXPECT_EQ(header["inputs"]["grid"], kDefaultMintGridLabel);
  EXPECT_EQ(header["inputs"]["grid_sha256"],
            *Sha256File(std::string(kSourceDir) + "/configs/mint_grid.json"));
  EXPECT_EQ(header["options"]["grid"].size(), 8u);
}

TEST(BuildInfo, GitDescribeIsRecorded) {
  const std::string d = kGitDescribe;
  EXPECT_FALSE(d.empty());
  EXPECT_EQ(d.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace moeq
