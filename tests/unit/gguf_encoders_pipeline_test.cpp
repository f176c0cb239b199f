// Data-aware GGUF codes as programs: moeq-profile --gram → moeq-quantize --format gguf
// --expert-encoder gptq --stats: only the routed experts' blocks change, the metadata records the
// encoders and the statistics hash, the model card the encoders used, and the file loads and runs
// in moeq (which reads GGUF).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/formats/gguf.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

TEST(GgufEncodersPipeline, GptqExpertsInGguf) {
  for (const char* tool : {"moeq-profile", "moeq-quantize"}) ASSERT_TRUE(test::ToolBuilt(tool));
  test::ScopedTempDir tmp("moeq-gguf-encoders");
  // The bundled model: GGUF output needs a real tokenizer (synthetic checkpoints have none).
  const std::string m = std::string(kSourceDir) + "/models/tiny-qwen3moe";  // in the repo
  nlohmann::json ids = nlohmann::json::array();
  for (int i = 0; i < 32 * 4; ++i) ids.push_back((i * 37 + 11) % 256);
  ASSERT_TRUE(WriteFileAtomic(tmp.Join("ids.json"), ids.dump()).ok());
  const std::string act = tmp.Join("act.safetensors");
  ASSERT_EQ(test::RunToolCommand("moeq-profile " + m + " --tokens " + tmp.Join("ids.json") +
                                     " --context 32 -q -o " + tmp.Join("rp.json") +
                                     " --activation-stats " + act + " --gram",
                                 "/dev/null"),
            0);
  const std::string base = "moeq-quantize " + m + " --uniform 4 --group 32 --format gguf -q ";
  ASSERT_EQ(test::RunToolCommand(base + "-o " + tmp.Join("rtn.gguf"), "/dev/null"), 0);
  const std::string err = tmp.Join("q.err");
  ASSERT_EQ(
      test::RunToolCommand(
          base + "--expert-encoder gptq --stats " + act + " -o " + tmp.Join("gptq.gguf"), err),
      0)
      << *ReadFile(err);
  auto a = GgufFile::Open(tmp.Join("rtn.gguf"));
  auto b = GgufFile::Open(tmp.Join("gptq.gguf"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NE((*b)->Find("moeq.encoders"), nullptr);
  EXPECT_EQ((*b)->Find("moeq.encoders")->value, "gptq,rtn");
  ASSERT_NE((*b)->Find("moeq.stats.sha256"), nullptr);
  EXPECT_EQ((*b)->Find("moeq.stats.sha256")->value, *Sha256File(act));
  EXPECT_EQ((*a)->Find("moeq.encoders"), nullptr);
  int experts_changed = 0, others_changed = 0;
  for (const GgufTensorInfo& t : (*a)->tensors()) {
    const GgufTensorInfo* u = (*b)->FindTensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->type, t.type) << t.name;
    auto da = (*a)->TensorData(t.name);
    auto db = (*b)->TensorData(t.name);
    ASSERT_TRUE(da.ok() && db.ok());
    const bool same =
        da->size() == db->size() && std::equal(da->begin(), da->end(), db->begin(), db->end());
    if (t.name.find("_exps") != std::string::npos) {
      experts_changed += !same;
    } else {
      others_changed += !same;
    }
  }
  EXPECT_GT(experts_changed, 0);
  EXPECT_EQ(others_changed, 0);
  auto card = ReadFile(tmp.Join("gptq.README.md"));
  ASSERT_TRUE(card.ok());
  EXPECT_NE(card->find("| encoders | gptq"), std::string::npos) << *card;
  // moeq reads the GGUF back and runs it.
  auto ck = Checkpoint::Open(tmp.Join("gptq.gguf"));
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  auto engine = Engine::Load(**ck);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  std::vector<float> logits;
  std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE((*engine)->Forward(toks, &logits).ok());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace moeq
