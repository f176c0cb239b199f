// Replays the fuzz seed corpus (tests/fuzz/corpus/<target>/) and every input that ever crashed a
// target (tests/fuzz/regressions/<target>/) through the same entry points as the libFuzzer
// builds, so that CI catches a regression with any compiler (docs/reliability.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "fuzz/fuzz_common.h"
#include "moeq/base/file_util.h"

namespace moeq::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Inputs(const std::string& target, const char* kind) {
  std::vector<std::string> out;
  const fs::path dir = fs::path(MOEQ_FUZZ_DIR) / kind / target;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void Replay(const std::string& target, int (*fn)(const uint8_t*, size_t)) {
  const auto corpus = Inputs(target, "corpus");
  const auto regressions = Inputs(target, "regressions");
  EXPECT_FALSE(corpus.empty()) << "no seed corpus in tests/fuzz/corpus/" << target;
  for (const auto* list : {&corpus, &regressions}) {
    for (const std::string& path : *list) {
      auto bytes = ReadFile(path);
      ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
      const auto t0 = std::chrono::steady_clock::now();
      EXPECT_EQ(fn(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()), 0) << path;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      EXPECT_LT(s, 10.0) << path << " took " << s << " s (a hang in the making)";
    }
  }
  std::printf("%s: replayed %zu corpus + %zu regression inputs\n", target.c_str(), corpus.size(),
              regressions.size());
}

TEST(FuzzReplay, SafetensorsHeader) { Replay("safetensors_header", SafetensorsHeader); }
TEST(FuzzReplay, GgufReader) { Replay("gguf_reader", GgufReader); }
TEST(FuzzReplay, ConfigAdapter) { Replay("config_adapter", ConfigAdapter); }
TEST(FuzzReplay, TokenizerJson) { Replay("tokenizer_json", TokenizerJson); }
TEST(FuzzReplay, SensitivityJsonl) { Replay("sensitivity_jsonl", SensitivityJsonl); }
TEST(FuzzReplay, AllocationJson) { Replay("allocation_json", AllocationJson); }
TEST(FuzzReplay, RoutingTrace) { Replay("routing_trace", RoutingTrace); }
TEST(FuzzReplay, TokenIds) { Replay("token_ids", TokenIds); }

}  // namespace
}  // namespace moeq::fuzz
