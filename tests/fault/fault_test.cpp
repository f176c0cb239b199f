// Fault tests (ctest label "fault", docs/reliability.md): the tools killed with SIGKILL at several
// moments, a file-size limit (disk full), symbolic links planted at temporary names, and two
// concurrent writers of one output. Whatever happens, an output is either absent or complete,
// an input is never touched, and the next run succeeds and removes the dead run's leftovers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

/// A tool process started with fork/exec; stdout to /dev/null, stderr to `err`.
struct Proc {
  pid_t pid = -1;
};

Proc Start(const std::vector<std::string>& args, const std::string& err,
           rlim_t fsize_limit = RLIM_INFINITY) {
  Proc p;
  p.pid = ::fork();
  if (p.pid == 0) {
    if (fsize_limit != RLIM_INFINITY) {
      struct rlimit rl {
        fsize_limit, fsize_limit
      };
      ::setrlimit(RLIMIT_FSIZE, &rl);
    }
    const int out = ::open("/dev/null", O_WRONLY);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(e, 2);
    std::vector<char*> argv;
    const std::string bin = test::ToolBinDir() + "/" + args[0];
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (size_t i = 1; i < args.size(); ++i) argv.push_back(const_cast<char*>(args[i].c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return p;
}

/// Exit status, or 128 + signal.
int Wait(const Proc& p) {
  int st = 0;
  ::waitpid(p.pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int RunTool(const std::vector<std::string>& args, const std::string& err,
            rlim_t fsize_limit = RLIM_INFINITY) {
  return Wait(Start(args, err, fsize_limit));
}

/// SIGKILL after `delay`; returns the exit status (128 + 9 when killed, else the tool's own).
int KillAfter(const std::vector<std::string>& args, const std::string& err,
              std::chrono::microseconds delay) {
  const Proc p = Start(args, err);
  std::this_thread::sleep_for(delay);
  ::kill(p.pid, SIGKILL);
  return Wait(p);
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

/// Every regular file under `dir` (relative path -> bytes).
std::map<std::string, std::string> Tree(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file())
      out[fs::relative(e.path(), dir).string()] = *ReadFile(e.path().string());
  }
  return out;
}

bool HaveTools() {
  return fs::exists(test::ToolBinDir() + "/moeq-quantize") &&
         fs::exists(test::ToolBinDir() + "/moeq-analyze");
}

class Fault : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveTools()) GTEST_FAIL() << "moeq tools not built in " << test::ToolBinDir();
    test::SyntheticCheckpointOptions o;
    o.layers = 4;
    o.hidden = 256;
    o.experts = 8;
    o.moe_ff = 128;
    o.vocab = 512;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(model_.path(), o).ok());
  }
  std::string Model() const { return model_.path(); }
  /// GGUF needs a real tokenizer: the bundled tiny model (skips when absent).
  static std::string GgufModel() { return std::string(kSourceDir) + "/models/tiny-qwen3moe"; }
  std::string Err() const { return out_.Join("stderr.txt"); }

  /// Kills `args` (which writes `output` inside the scratch directory) at fractions of a full
  /// run's duration; after each kill nothing complete-looking may exist, and a rerun succeeds
  /// and leaves exactly `output` in the directory.
  void KillAtSeveralMoments(std::vector<std::string> args, const std::string& output,
                            const std::function<void(const std::string&)>& check_complete) {
    const auto t0 = Clock::now();
    ASSERT_EQ(RunTool(args, Err()), 0) << *ReadFile(Err());
    const auto full = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
    check_complete(output);
    std::error_code ec;
    fs::remove_all(output, ec);
    int killed = 0;
    for (double f : {0.05, 0.2, 0.4, 0.6, 0.8, 0.95}) {
      const int rc =
          KillAfter(args, Err(), std::chrono::microseconds(static_cast<int64_t>(full.count() * f)));
      if (rc == 128 + SIGKILL) {
        ++killed;
        // Killed before its commit, a run leaves nothing in place; killed after it (a run that
        // happened to be faster this time), the output is complete. Never anything in between.
        if (fs::exists(output)) {
          check_complete(output);
          fs::remove_all(output, ec);
          std::error_code ec2;
          if (fs::path(output).extension() == ".gguf") {
            fs::remove(fs::path(output).replace_extension(".README.md"), ec2);
          }
        }
      } else {
        ASSERT_EQ(rc, 0) << *ReadFile(Err());
        check_complete(output);
        fs::remove_all(output, ec);
      }
    }
    EXPECT_GE(killed, 3) << "the run was too fast to be killed mid-way (" << full.count() << " us)";
    // Leftovers of the killed runs exist now; the next run removes them.
    ASSERT_EQ(RunTool(args, Err()), 0) << *ReadFile(Err());
    check_complete(output);
    // A GGUF output has its model card beside it ("<stem>.README.md").
    std::vector<std::string> want = {fs::path(output).filename().string(), "stderr.txt"};
    if (fs::path(output).extension() == ".gguf")
      want.push_back(fs::path(output).stem().string() + ".README.md");
    std::sort(want.begin(), want.end());
    EXPECT_EQ(Entries(out_.path()), want);
  }

  test::ScopedTempDir model_{"moeq-fault-model"};
  test::ScopedTempDir out_{"moeq-fault-out"};
};

void CheckMlx(const std::string& dir) {
  ASSERT_TRUE(fs::exists(dir + "/quant_manifest.json")) << dir;
  ASSERT_TRUE(fs::exists(dir + "/config.json")) << dir;
  auto m = ReadJsonFile(dir + "/quant_manifest.json");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
}

void CheckGguf(const std::string& path) {
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  ASSERT_GE(bytes->size(), 4u);
  EXPECT_EQ(bytes->substr(0, 4), "GGUF");
}

void CheckJsonl(const std::string& path) {
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  ASSERT_FALSE(text->empty());
  EXPECT_EQ(text->back(), '\n');
  size_t lines = 0;
  for (char c : *text) lines += c == '\n';
  EXPECT_GT(lines, 1u);
}

TEST_F(Fault, KillQuantizeMlx) {
  const std::string out = out_.Join("q4");
  KillAtSeveralMoments(
      {"moeq-quantize", Model(), "-o", out, "--uniform", "4", "--group", "32", "-q"}, out,
      CheckMlx);
}

TEST_F(Fault, KillQuantizeGguf) {
  const std::string out = out_.Join("m.gguf");
  if (!fs::exists(GgufModel() + "/config.json")) GTEST_FAIL() << "bundled model not found";
  KillAtSeveralMoments({"moeq-quantize", GgufModel(), "-o", out, "--format", "gguf", "--uniform",
                        "8", "--group", "32", "-q"},
                       out, CheckGguf);
}

TEST_F(Fault, KillAnalyze) {
  const std::string out = out_.Join("sens.jsonl");
  KillAtSeveralMoments({"moeq-analyze", Model(), "--rank", "8", "-q", "-o", out}, out, CheckJsonl);
}

TEST_F(Fault, DiskFullLeavesNothingAndSaysWhy) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"moeq-quantize", Model(), "-o", out_.Join("q4"), "--uniform", "4", "--group", "32",
            "-q"},
           {"moeq-analyze", Model(), "--rank", "8", "-q", "-o", out_.Join("sens.jsonl")}}) {
    EXPECT_EQ(RunTool(args, Err(), 16 * 1024), 1) << args[0];
    const std::string err = *ReadFile(Err());
    EXPECT_NE(err.find("File too large"), std::string::npos) << args[0] << ": " << err;
    EXPECT_EQ(Entries(out_.path()), std::vector<std::string>{"stderr.txt"}) << args[0];
  }
}

TEST_F(Fault, SymlinksAtTemporaryNamesAreNeverFollowed) {
  // The names moeq <= 0.1 used, and a dead process's temporary name pointing at the input.
  const std::string victim = Model() + "/model.safetensors";
  const std::string before = *ReadFile(victim);
  fs::create_symlink(victim, out_.Join("m.gguf.tmp"));
  fs::create_symlink(victim, out_.Join("sens.jsonl.tmp"));
  fs::create_symlink(victim, out_.Join(".m.gguf.moeq-tmp-999999999-0000000000000000"));
  if (!fs::exists(GgufModel() + "/config.json")) GTEST_FAIL() << "bundled model not found";
  ASSERT_EQ(RunTool({"moeq-quantize", GgufModel(), "-o", out_.Join("m.gguf"), "--format", "gguf",
                     "--uniform", "8", "--group", "32", "-q"},
                    Err()),
            0)
      << *ReadFile(Err());
  ASSERT_EQ(
      RunTool({"moeq-analyze", Model(), "--rank", "8", "-q", "-o", out_.Join("sens.jsonl")}, Err()),
      0)
      << *ReadFile(Err());
  EXPECT_EQ(*ReadFile(victim), before);
  EXPECT_TRUE(fs::is_symlink(out_.Join("m.gguf.tmp")));
  CheckGguf(out_.Join("m.gguf"));
  CheckJsonl(out_.Join("sens.jsonl"));
}

TEST_F(Fault, ConcurrentWritersLastRenameWinsNeverAMix) {
  if (!fs::exists(GgufModel() + "/config.json")) GTEST_FAIL() << "bundled model not found";
  const std::string out = out_.Join("m.gguf");
  auto args = [&](const char* bits) {
    return std::vector<std::string>{"moeq-quantize", GgufModel(), "-o",        out,
                                    "--format",      "gguf",      "--uniform", bits,
                                    "--group",       "32",        "-q",        "--force"};
  };
  ASSERT_EQ(RunTool(args("8"), Err()), 0) << *ReadFile(Err());
  const std::string a = *ReadFile(out);
  ASSERT_EQ(RunTool(args("4"), Err()), 0) << *ReadFile(Err());
  const std::string b = *ReadFile(out);
  ASSERT_NE(a, b);
  for (int round = 0; round < 3; ++round) {
    const Proc p1 = Start(args("8"), out_.Join("e1.txt"));
    const Proc p2 = Start(args("4"), out_.Join("e2.txt"));
    EXPECT_EQ(Wait(p1), 0) << *ReadFile(out_.Join("e1.txt"));
    EXPECT_EQ(Wait(p2), 0) << *ReadFile(out_.Join("e2.txt"));
    const std::string got = *ReadFile(out);
    EXPECT_TRUE(got == a || got == b) << "round " << round << ": the output matches neither run";
  }
  EXPECT_EQ(Entries(out_.path()),
            (std::vector<std::string>{"e1.txt", "e2.txt", "m.README.md", "m.gguf", "stderr.txt"}));

  // MLX directories: the same, compared file by file.
  const std::string dir = out_.Join("q");
  auto margs = [&](const char* bits) {
    return std::vector<std::string>{"moeq-quantize", Model(), "-o", dir,      "--uniform", bits,
                                    "--group",       "32",    "-q", "--force"};
  };
  ASSERT_EQ(RunTool(margs("8"), Err()), 0) << *ReadFile(Err());
  const auto ta = Tree(dir);
  ASSERT_EQ(RunTool(margs("4"), Err()), 0) << *ReadFile(Err());
  const auto tb = Tree(dir);
  const Proc p1 = Start(margs("8"), out_.Join("e1.txt"));
  const Proc p2 = Start(margs("4"), out_.Join("e2.txt"));
  EXPECT_EQ(Wait(p1), 0) << *ReadFile(out_.Join("e1.txt"));
  EXPECT_EQ(Wait(p2), 0) << *ReadFile(out_.Join("e2.txt"));
  const auto got = Tree(dir);
  EXPECT_TRUE(got == ta || got == tb) << "the output directory matches neither run";
}

}  // namespace
}  // namespace moeq
