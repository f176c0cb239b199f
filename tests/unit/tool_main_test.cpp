// The tool driver: option precedence (defaults < --config < flags), unknown keys, exit codes.
#include "tool_main.h"

#include <gtest/gtest.h>

#include <fstream>

#include "testing/file_testing.h"
#include "testing/temp_dir.h"

namespace moeq::tool {
namespace {

struct Fake {
  int alpha = 1;
  std::string name = "default";
  bool flag = false;
  std::vector<int> list;
  nlohmann::json effective;
};

int RunFake(std::vector<std::string> args, Fake* f, Status result = Status::Ok()) {
  args.insert(args.begin(), "moeq-fake");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return RunTool(
      static_cast<int>(argv.size()), argv.data(), "moeq-fake", "test tool",
      [&](CLI::App& app) {
        app.add_option("--alpha", f->alpha, "an int");
        app.add_option("--name", f->name, "a string");
        app.add_flag("--flag", f->flag, "a flag");
        app.add_option("--list", f->list, "ints");
      },
      [&](const ToolContext& ctx) {
        f->effective = ctx.effective_options;
        return result;
      });
}

TEST(RunTool, ConfigFileOverridesDefaultsAndFlagsOverrideConfig) {
  test::ScopedTempDir dir;
  const std::string cfg = dir.path() + "/c.json";
  std::ofstream(cfg) << R"({"alpha": 5, "name": "from-config", "flag": true, "list": [1, 2]})";
  Fake f;
  ASSERT_EQ(RunFake({"--config", cfg, "--name", "from-flag"}, &f), 0);
  EXPECT_EQ(f.alpha, 5);
  EXPECT_EQ(f.name, "from-flag");
  EXPECT_TRUE(f.flag);
  EXPECT_EQ(f.list, (std::vector<int>{1, 2}));
  EXPECT_EQ(f.effective["alpha"], 5);
  EXPECT_EQ(f.effective["name"], "from-flag");
  EXPECT_EQ(f.effective["flag"], true);
  EXPECT_EQ(f.effective["threads"], 0);
}

TEST(RunTool, DefaultsAreRecordedInEffectiveOptions) {
  Fake f;
  ASSERT_EQ(RunFake({}, &f), 0);
  EXPECT_EQ(f.effective["alpha"], 1);
  EXPECT_EQ(f.effective["name"], "default");
  EXPECT_EQ(f.effective["flag"], false);
}

TEST(RunTool, UnknownConfigKeyIsAUsageError) {
  test::ScopedTempDir dir;
  const std::string cfg = dir.path() + "/c.json";
  std::ofstream(cfg) << R"({"alpah": 5})";
  Fake f;
  EXPECT_EQ(RunFake({"--config", cfg}, &f), 2);
}

TEST(RunTool, InvalidConfigJsonIsAUsageError) {
  test::ScopedTempDir dir;
  const std::string cfg = dir.path() + "/c.json";
  std::ofstream(cfg) << R"({"alpha": )";
  Fake f;
  EXPECT_EQ(RunFake({"--config", cfg}, &f), 2);
}

TEST(RunTool, MapsStatusToExitCodes) {
  Fake f;
  EXPECT_EQ(RunFake({"--bogus"}, &f), 2);
  EXPECT_EQ(RunFake({"--alpha", "x"}, &f), 2);
  EXPECT_EQ(RunFake({"--help"}, &f), 0);
  EXPECT_EQ(RunFake({}, &f, Status::Corruption("x")), 1);
  EXPECT_EQ(RunFake({}, &f, Status::InvalidArgument("x")), 2);
  EXPECT_EQ(RunFake({}, &f, Status::GateFailed("x")), 3);
}

}  // namespace
}  // namespace moeq::tool
