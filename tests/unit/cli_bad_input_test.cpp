// The bad-input corpus: every kind of broken checkpoint makes moeq-inspect exit with status 1
// and one error message naming the file and the field, never a crash or a hang.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>

#include "moeq/base/file_util.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

std::string BinDir() { return test::ToolBinDir(); }

struct RunResult {
  int exit_code = -1;
  std::string err;
};

RunResult RunTool(const std::string& args, const std::string& scratch) {
  const std::string err_file = scratch + "/stderr.txt";
  const std::string cmd = "timeout 60 " + BinDir() + "/" + args + " >/dev/null 2>" + err_file;
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  auto e = ReadFile(err_file);
  r.err = e.ok() ? *e : "";
  return r;
}

// Rewrites the JSON header of a safetensors file through `edit`, keeping the data bytes.
void EditHeader(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  std::string bytes = *ReadFile(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  edit(h);
  const std::string text = h.dump();
  const uint64_t m = text.size();
  std::string out(reinterpret_cast<const char*>(&m), 8);
  out += text + bytes.substr(8 + n);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << out;
}

struct BadInput {
  const char* label;
  std::function<void(const std::string& dir, test::SyntheticCheckpointOptions* o)>
      before;                                           // adjust options
  std::function<void(const std::string& dir)> corrupt;  // then break files
  const char* file;                                     // expected in the message
  const char* field;                                    // expected in the message
  const char* extra_flags = "";
};

/// Printed in test names (gtest_discover_tests shows parameter values): a readable label.
void PrintTo(const BadInput& c, std::ostream* os) { *os << c.label; }

std::string FirstTensor(const std::string& dir) {
  std::string bytes = *ReadFile(dir + "/model.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  auto h = nlohmann::json::parse(bytes.substr(8, n));
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() != "__metadata__") return it.key();
  }
  return "";
}

class BadInputCorpus : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputCorpus, ExitsOneWithAPreciseMessage) {
  const BadInput& c = GetParam();
  ASSERT_TRUE(test::ToolBuilt("moeq-inspect"));
  test::ScopedTempDir dir;
  const std::string model = dir.path() + "/model";
  test::SyntheticCheckpointOptions o;
  if (c.before) c.before(model, &o);
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(model, o).ok());
  c.corrupt(model);
  RunResult r = RunTool(std::string("moeq-inspect ") + model + " " + c.extra_flags, dir.path());
  EXPECT_EQ(r.exit_code, 1) << c.label << "\n" << r.err;
  EXPECT_NE(r.err.find(c.file), std::string::npos) << c.label << ": " << r.err;
  EXPECT_NE(r.err.find(c.field), std::string::npos) << c.label << ": " << r.err;
  size_t errors = 0;
  for (size_t p = r.err.find(": error: "); p != std::string::npos;
       p = r.err.find(": error: ", p + 1))
    ++errors;
  EXPECT_EQ(errors, 1u) << c.label << ": " << r.err;
}

const std::string kST = "/model.safetensors";

INSTANTIATE_TEST_SUITE_P(
    Cases, BadInputCorpus,
    ::testing::Values(
        BadInput{"truncated_file", nullptr,
                 [](const std::string& d) { fs::resize_file(d + kST, fs::file_size(d + kST) / 2); },
                 "model.safetensors", "exceed the data buffer"},
        BadInput{"header_length_past_eof", nullptr,
                 [](const std::string& d) {
                   std::fstream f(d + kST, std::ios::in | std::ios::out | std::ios::binary);
                   const uint64_t n = fs::file_size(d + kST) + 100;
                   f.write(reinterpret_cast<const char*>(&n), 8);
                 },
                 "model.safetensors", "header length"},
        BadInput{"overlapping_offsets", nullptr,
                 [](const std::string& d) {
                   EditHeader(d + kST, [](nlohmann::json& h) {
                     // Give the second tensor of the same size the first one's bytes.
                     std::string a;
                     for (auto it = h.begin(); it != h.end(); ++it) {
                       if (it.key() == "__metadata__") continue;
                       if (a.empty()) {
                         a = it.key();
                         continue;
                       }
                       if ((*it)["shape"] == h[a]["shape"] && (*it)["dtype"] == h[a]["dtype"]) {
                         (*it)["data_offsets"] = h[a]["data_offsets"];
                         return;
                       }
                     }
                   });
                 },
                 "model.safetensors", "overlap"},
        BadInput{"offsets_out_of_range", nullptr,
                 [](const std::string& d) {
                   const std::string first = FirstTensor(d);
                   EditHeader(d + kST, [&](nlohmann::json& h) {
                     auto& off = h[first]["data_offsets"];
                     const uint64_t len = off[1].get<uint64_t>() - off[0].get<uint64_t>();
                     off = {uint64_t{1} << 40, (uint64_t{1} << 40) + len};
                   });
                 },
                 "model.safetensors", "data_offsets"},
        BadInput{"dtype_shape_mismatch", nullptr,
                 [](const std::string& d) {
                   const std::string first = FirstTensor(d);
                   EditHeader(d + kST, [&](nlohmann::json& h) { h[first]["dtype"] = "F32"; });
                 },
                 "model.safetensors", "data_offsets span"},
        BadInput{"invalid_header_json", nullptr,
                 [](const std::string& d) {
                   std::fstream f(d + kST, std::ios::in | std::ios::out | std::ios::binary);
                   f.seekp(9);
                   f.write("\x01\x02\x03", 3);
                 },
                 "model.safetensors", "invalid JSON"},
        BadInput{"invalid_config_json", nullptr,
                 [](const std::string& d) {
                   std::ofstream(d + "/config.json") << "{\"model_type\": \"qwen3_moe\",";
                 },
                 "config.json", "invalid JSON"},
        BadInput{
            "nan_weight",
            [](const std::string&, test::SyntheticCheckpointOptions* o) { o->dtype = DType::kF32; },
            [](const std::string& d) {
              const std::string first = FirstTensor(d);
              std::string bytes = *ReadFile(d + kST);
              uint64_t n;
              std::memcpy(&n, bytes.data(), 8);
              auto h = nlohmann::json::parse(bytes.substr(8, n));
              const uint64_t at = 8 + n + h[first]["data_offsets"][0].get<uint64_t>() + 4 * 3;
              const float nan = std::nanf("");
              std::fstream f(d + kST, std::ios::in | std::ios::out | std::ios::binary);
              f.seekp(static_cast<std::streamoff>(at));
              f.write(reinterpret_cast<const char*>(&nan), 4);
            },
            "model.safetensors", "NaN", "--check-finite"},
        BadInput{"missing_shard",
                 [](const std::string&, test::SyntheticCheckpointOptions* o) { o->shards = 2; },
                 [](const std::string& d) { fs::remove(d + "/model-00002-of-00002.safetensors"); },
                 "model-00002-of-00002.safetensors", "model.safetensors.index.json"},
        BadInput{"config_missing_key",
                 [](const std::string&, test::SyntheticCheckpointOptions* o) {
                   o->config_patch = {{"hidden_size", nullptr}};
                 },
                 [](const std::string&) {}, "config.json", "hidden_size"},
        BadInput{"unknown_model_type",
                 [](const std::string&, test::SyntheticCheckpointOptions* o) {
                   o->config_patch = {{"model_type", "gpt5_moe"}};
                 },
                 [](const std::string&) {}, "gpt5_moe", "qwen3_moe"}),
    [](const auto& param_info) { return std::string(param_info.param.label); });

}  // namespace
}  // namespace moeq
