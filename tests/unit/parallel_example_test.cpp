// examples/parallel/analyze.sh: moeq-analyze shards run by GNU parallel and merged give the
// same bytes as one process. Skipped where GNU parallel is not installed (apt: parallel).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

TEST(ParallelExample, ShardedAnalyzeMergesToTheSingleProcessBytes) {
  if (std::system("command -v parallel >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "GNU parallel is not installed (apt-get install parallel)";
  }
  test::ScopedTempDir dir;
  test::SyntheticCheckpointOptions so;
  so.layers = 3;
  so.moe_ff = 64;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("m"), so).ok());
  const std::string bin = test::ToolBinDir();
  ASSERT_EQ(test::RunToolCommand("moeq-analyze " + dir.Join("m") + " --rank 8 -o " +
                                 dir.Join("one.jsonl")),
            0);
  const std::string script = std::string(kSourceDir) + "/examples/parallel/analyze.sh";
  const std::string cmd = "TMPDIR=" + dir.path() + " timeout 120 " + script + " " + bin + " " +
                          dir.Join("m") + " " + dir.Join("merged.jsonl") +
                          " 3 --rank 8 >/dev/null 2>" + dir.Join("err.txt");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << *ReadFile(dir.Join("err.txt"));
  auto one = ReadFile(dir.Join("one.jsonl"));
  auto merged = ReadFile(dir.Join("merged.jsonl"));
  ASSERT_TRUE(one.ok() && merged.ok());
  EXPECT_GT(one->size(), 1000u);
  EXPECT_EQ(*one, *merged);
}

}  // namespace
}  // namespace moeq
