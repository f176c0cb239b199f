// The CI gate end to end: a deliberately degraded model (the bundled model quantized to 2 bits
// by moeq-quantize) makes moeq-eval exit 3 against the original's eval.json (--max-ppl-delta)
// and against the original as reference (--max-kl); the original passes its own gate.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

int RunBin(const std::string& args, const std::string& err_file) {
  return test::RunToolCommand(args, err_file);
}

TEST(EvalGateCli, DegradedModelFailsTheGateWithExitCode3) {
  const std::string model = std::string(kSourceDir) + "/models/tiny-qwen3moe";
  if (!fs::exists(model + "/config.json")) GTEST_FAIL() << "bundled model not found at " << model;
  ASSERT_TRUE(test::ToolBuilt("moeq-eval"));
  ASSERT_TRUE(test::ToolBuilt("moeq-quantize"));
  test::ScopedTempDir tmp("moeq-gate");
  const std::string err = tmp.Join("err.txt");
  const std::string text = tmp.Join("text.txt");
  std::string s;
  for (int i = 0; i < 40; ++i) {
    s += "In the beginning God created the heaven and the earth. The man page describes the "
         "options of "
         "the command; see also printf(3) and the GNU C library manual. ";
  }
  ASSERT_TRUE(WriteFileAtomic(text, s).ok());
  const std::string degraded = tmp.Join("q2");
  ASSERT_EQ(RunBin("moeq-quantize " + model + " --uniform 2 --group 64 -q -o " + degraded, err), 0)
      << *ReadFile(err);
  const std::string base = tmp.Join("base.json");
  ASSERT_EQ(RunBin("moeq-eval " + model + " --text " + text + " --context 256 -q -o " + base, err),
            0)
      << *ReadFile(err);
  // The original passes its own gate.
  EXPECT_EQ(RunBin("moeq-eval " + model + " --text " + text + " --context 256 -q --baseline " +
                       base + " --max-ppl-delta 2%",
                   err),
            0)
      << *ReadFile(err);
  // The degraded model fails it, with both perplexities in the message.
  EXPECT_EQ(RunBin("moeq-eval " + degraded + " --text " + text + " --context 256 -q --baseline " +
                       base + " --max-ppl-delta 2%",
                   err),
            3);
  const std::string msg = *ReadFile(err);
  EXPECT_NE(msg.find("quality gate failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("baseline"), std::string::npos) << msg;
  EXPECT_EQ(RunBin("moeq-eval " + degraded + " --text " + text + " --context 256 -q --reference " +
                       model + " --max-kl 0.01",
                   err),
            3)
      << *ReadFile(err);
  EXPECT_NE(ReadFile(err)->find("KL"), std::string::npos) << *ReadFile(err);
}

// Int8 activations (moeq-eval --packed --int8-activations) on the bundled model quantized to
// q4g64: the activation rounding adds a few percent to the KL the 4-bit weights cost
// (docs/inference.md measures +2.0 % on the whole corpus), and the flag needs --packed.
TEST(EvalGateCli, Int8ActivationsAddLittleKl) {
  const std::string model = std::string(kSourceDir) + "/models/tiny-qwen3moe";
  const std::string text = std::string(kSourceDir) + "/data/moe-corpus/valid.txt";
  if (!fs::exists(model + "/config.json")) GTEST_FAIL() << "bundled model not found at " << model;
  ASSERT_TRUE(test::ToolBuilt("moeq-eval"));
  ASSERT_TRUE(test::ToolBuilt("moeq-quantize"));
  test::ScopedTempDir tmp("moeq-int8");
  const std::string err = tmp.Join("err.txt");
  const std::string q4 = tmp.Join("q4");
  ASSERT_EQ(RunBin("moeq-quantize " + model + " --uniform 4 --group 64 -q -o " + q4, err), 0)
      << *ReadFile(err);
  auto eval = [&](const std::string& flags, const std::string& out) {
    EXPECT_EQ(RunBin("moeq-eval " + q4 + " --text " + text + " --chunks 6 -q --reference " + model +
                         " " + flags + " -o " + out,
                     err),
              0)
        << *ReadFile(err);
    auto j = nlohmann::json::parse(*ReadFile(out));
    return std::pair<double, double>(j["reference"]["kl_mean"].get<double>(),
                                     j["ppl"].get<double>());
  };
  const auto [kl_f32, ppl_f32] = eval("--packed", tmp.Join("f32.json"));
  const auto [kl_i8, ppl_i8] = eval("--packed --int8-activations", tmp.Join("i8.json"));
  EXPECT_GT(kl_f32, 1e-4);
  EXPECT_NE(kl_i8, kl_f32);  // the int8 path ran
  EXPECT_LT(kl_i8, 1.10 * kl_f32) << "float32 activations " << kl_f32;
  EXPECT_LT(std::abs(ppl_i8 / ppl_f32 - 1), 0.005);
  EXPECT_EQ(RunBin("moeq-eval " + q4 + " --text " + text + " --int8-activations -q", err), 2);
}

}  // namespace
}  // namespace moeq
