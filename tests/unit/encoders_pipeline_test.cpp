// The data-aware pipeline as programs: moeq-profile --gram → moeq-analyze --encoders rtn,gptq
// --error activation (format × encoder rows, activation-weighted error) → moeq-allocate
// (encoder per tensor) → moeq-quantize (needs --stats; writes the chosen encoder's codes,
// manifest records encoder and statistics hash; the output loads). --expert-encoder changes
// only the routed experts' codes.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/formats/safetensors.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

int RunT(const std::string& args, const std::string& err = "/dev/null") {
  return test::RunToolCommand(args, err);
}

std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::istringstream is(*ReadFile(path));
  for (std::string l; std::getline(is, l);) {
    if (!l.empty()) rows.push_back(nlohmann::json::parse(l));
  }
  return rows;
}

/// The stored bytes of tensor `name` in a quantized output directory (any shard).
std::vector<std::byte> TensorBytes(const std::string& dir, const std::string& name) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    auto f = SafetensorsFile::Open(e.path().string());
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    auto v = (*f)->View(name);
    if (v.ok()) return std::vector<std::byte>(v->data.begin(), v->data.end());
  }
  ADD_FAILURE() << name << " not found in " << dir;
  return {};
}

TEST(EncodersPipeline, ProfileAnalyzeAllocateQuantize) {
  for (const char* tool : {"moeq-profile", "moeq-analyze", "moeq-allocate", "moeq-quantize"}) {
    if (!fs::exists(test::ToolBinDir() + "/" + tool))
      GTEST_FAIL() << tool << " not built in " << test::ToolBinDir();
  }
  test::ScopedTempDir tmp("moeq-encoders-pipeline");
  test::SyntheticCheckpointOptions so;
  so.experts = 8;
  so.top_k = 2;
  so.moe_ff = 64;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(tmp.Join("m"), so).ok());
  const std::string m = tmp.Join("m");
  nlohmann::json ids = nlohmann::json::array();
  for (int i = 0; i < 32 * 4; ++i) ids.push_back((i * 37 + 11) % 256);
  ASSERT_TRUE(WriteFileAtomic(tmp.Join("ids.json"), ids.dump()).ok());
  const std::string act = tmp.Join("act.safetensors");
  ASSERT_EQ(
      RunT("moeq-profile " + m + " --tokens " + tmp.Join("ids.json") + " --context 32 -q -o " +
           tmp.Join("rp.json") + " --activation-stats " + act + " --gram"),
      0);
  // Data-aware encoders need the statistics.
  EXPECT_EQ(
      RunT("moeq-analyze " + m + " --rank 8 -q --encoders rtn,gptq -o " + tmp.Join("x.jsonl")), 2);
  const std::string sens = tmp.Join("sens.jsonl");
  ASSERT_EQ(RunT("moeq-analyze " + m + " --rank 8 -q --activation-stats " + act +
                     " --encoders rtn,gptq --error activation -o " + sens,
                 tmp.Join("analyze.err")),
            0)
      << *ReadFile(tmp.Join("analyze.err"));
  const auto rows = ReadJsonl(sens);
  ASSERT_GT(rows.size(), 1u);
  EXPECT_EQ(rows[0]["options"]["error"], "activation");
  // (tensor, format) → error per encoder.
  std::map<std::pair<std::string, std::string>, std::map<std::string, double>> err;
  int o_proj_gptq = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& r = rows[i];
    ASSERT_TRUE(r.contains("encoder")) << r.dump();
    err[{r["tensor"], r["format"]}][r["encoder"]] = r["nrmse"];
    if (r["role"] == "attn_o" && r["encoder"] == "gptq") ++o_proj_gptq;
    if (r["encoder"] == "gptq" || r["role"] == "attn_o") {
      EXPECT_EQ(r["error"], r["role"] == "attn_o" ? "weight" : "activation") << r.dump();
    }
  }
  EXPECT_EQ(o_proj_gptq, 0);  // no statistics for o_proj's input: only the rtn row
  int compared = 0, better = 0;
  double sum_rtn = 0, sum_gptq = 0;
  for (const auto& [key, by] : err) {
    if (!by.count("gptq") || key.second.rfind("q", 0) != 0) continue;
    ++compared;
    better += by.at("gptq") < by.at("rtn");
    sum_rtn += by.at("rtn");
    sum_gptq += by.at("gptq");
  }
  ASSERT_GT(compared, 20);
  EXPECT_GT(better, compared * 3 / 4);
  EXPECT_LT(sum_gptq, 0.9 * sum_rtn);

  const std::string alloc = tmp.Join("alloc.json");
  ASSERT_EQ(RunT("moeq-allocate " + sens + " --bpw 4.5 --objective mse -q -o " + alloc), 0);
  auto aj = ReadJsonFile(alloc);
  ASSERT_TRUE(aj.ok());
  int gptq_tensors = 0;
  for (const auto& t : (*aj)["tensors"]) gptq_tensors += t.value("encoder", "") == "gptq";
  EXPECT_GT(gptq_tensors, 0);
  // The allocation's gptq codes need the statistics file.
  EXPECT_EQ(RunT("moeq-quantize " + m + " --allocation " + alloc + " -q -o " + tmp.Join("noq")), 2);
  ASSERT_EQ(RunT("moeq-quantize " + m + " --allocation " + alloc + " --stats " + act + " -q -o " +
                 tmp.Join("q")),
            0);
  auto man = ReadJsonFile(tmp.Join("q") + "/quant_manifest.json");
  ASSERT_TRUE(man.ok());
  EXPECT_EQ((*man)["inputs"]["stats_sha256"], *Sha256File(act));
  EXPECT_EQ((*man)["plan"]["encoders"]["gptq"], gptq_tensors);
  int recorded = 0;
  for (const auto& t : (*man)["tensors"]) recorded += t.value("encoder", "") == "gptq";
  EXPECT_EQ(recorded, gptq_tensors);
  auto ck = Checkpoint::Open(tmp.Join("q"));
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  auto engine = Engine::Load(**ck);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  std::vector<float> logits;
  std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE((*engine)->Forward(toks, &logits).ok());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));

  // --expert-encoder gptq on a uniform plan: only routed experts change.
  ASSERT_EQ(RunT("moeq-quantize " + m + " --uniform 4 --group 32 -q -o " + tmp.Join("u")), 0);
  ASSERT_EQ(RunT("moeq-quantize " + m + " --uniform 4 --group 32 --expert-encoder gptq --stats " +
                 act + " -q -o " + tmp.Join("ug")),
            0);
  const std::string qproj = "model.layers.0.self_attn.q_proj.weight";
  const std::string expert = "model.layers.1.mlp.experts.3.up_proj.weight";
  EXPECT_EQ(TensorBytes(tmp.Join("u"), qproj), TensorBytes(tmp.Join("ug"), qproj));
  EXPECT_NE(TensorBytes(tmp.Join("u"), expert), TensorBytes(tmp.Join("ug"), expert));
  EXPECT_EQ(RunT("moeq-quantize " + m + " --uniform 4 --group 32 --encoder awq --stats " + act +
                 " -q -o " + tmp.Join("bad")),
            2);
}

}  // namespace
}  // namespace moeq
