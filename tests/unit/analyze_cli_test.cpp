// moeq-analyze as a program: --shard outputs merged with `moeq-analyze merge OUT SHARD... --force`
// (options after the subcommand, as a job array's last step writes them) equal the unsharded file.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

#include "moeq/base/file_util.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

int RunBin(const std::string& args) { return test::RunToolCommand(args); }

TEST(AnalyzeCli, MergeAcceptsOptionsAfterTheSubcommandAndEqualsUnsharded) {
  ASSERT_TRUE(test::ToolBuilt("moeq-analyze"));
  test::ScopedTempDir tmp("moeq-analyze-cli");
  test::SyntheticCheckpointOptions so;
  so.layers = 3;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(tmp.Join("m"), so).ok());
  const std::string m = tmp.Join("m");
  ASSERT_EQ(RunBin("moeq-analyze " + m + " --rank 8 -q -o " + tmp.Join("full.jsonl")), 0);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(RunBin("moeq-analyze " + m + " --rank 8 -q --shard " + std::to_string(i) + "/2 -o " +
                     tmp.Join("s" + std::to_string(i) + ".jsonl")),
              0);
  }
  const std::string merged = tmp.Join("merged.jsonl");
  ASSERT_TRUE(WriteFileAtomic(merged, "old").ok());
  EXPECT_EQ(RunBin("moeq-analyze merge " + merged + " " + tmp.Join("s1.jsonl") + " " +
                   tmp.Join("s0.jsonl")),
            1);
  ASSERT_EQ(RunBin("moeq-analyze merge " + merged + " " + tmp.Join("s1.jsonl") + " " +
                   tmp.Join("s0.jsonl") + " --force -q"),
            0);
  EXPECT_EQ(*ReadFile(merged), *ReadFile(tmp.Join("full.jsonl")));
}

}  // namespace
}  // namespace moeq
