// Helpers for tests that run the built moeq-* executables (header-only: MOEQ_BIN_DIR is a
// compile definition of the test target, overridable by the environment variable of that name).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace moeq::test {

/// Where the moeq-* executables are: $MOEQ_BIN_DIR, else the build's bin directory.
inline std::string ToolBinDir() {
  const char* env = std::getenv("MOEQ_BIN_DIR");
  return env ? env : MOEQ_BIN_DIR;
}

/// Success when BIN_DIR/<tool> exists. Tests that run a tool ASSERT this: the tools are built
/// with the test target (a missing tool is a failure, not a skip).
inline ::testing::AssertionResult ToolBuilt(const std::string& tool) {
  const std::string path = ToolBinDir() + "/" + tool;
  if (access(path.c_str(), X_OK) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << path << " is not built (build the tools with the tests, or set MOEQ_BIN_DIR)";
}

/// Runs "BIN_DIR/<args>" through the shell with a time limit, stdout discarded and stderr sent
/// to `err_file`; returns the exit status (128 + signal when killed).
inline int RunToolCommand(const std::string& args, const std::string& err_file = "/dev/null",
                          int timeout_s = 120) {
  const std::string cmd = "timeout " + std::to_string(timeout_s) + " " + ToolBinDir() + "/" + args +
                          " >/dev/null 2>" + err_file;
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

}  // namespace moeq::test
