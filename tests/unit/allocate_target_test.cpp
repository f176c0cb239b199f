// moeq-allocate --target: every option costed at the bytes the writer stores. The cost model
// agrees with the bytes WriteGguf writes per tensor and per file (K-quants at hidden 256, their
// legacy fallbacks at hidden 192), and analyze → allocate --target X --budget B → quantize
// writes a file of at most B bytes, close to it, for each target; stacked targets give every
// expert of a (layer, projection) one format, and moeq-quantize refuses another target.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "moeq-allocate/allocate_command.h"
#include "moeq-analyze/analyze_command.h"
#include "moeq-quantize/quantize_command.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/export/quant_plan.h"
#include "moeq/export/target_cost.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

ArtifactContext Ctx(const char* tool) {
  ArtifactContext c;
  c.tool = tool;
  c.threads = 2;
  c.progress = false;
  return c;
}

/// A qwen3_moe checkpoint whose rows are `hidden` (and moe_ff) long.
std::string MakeModel(const test::ScopedTempDir& dir, int hidden) {
  const std::string model = dir.Join("model" + std::to_string(hidden));
  test::SyntheticCheckpointOptions so;
  so.hidden = hidden;
  so.moe_ff = hidden;
  so.layers = 2;
  so.experts = 4;
  so.vocab = 256;
  EXPECT_TRUE(test::WriteSyntheticCheckpoint(model, so).ok());
  // A real vocabulary (the placeholder has none): moeq-quantize --format gguf needs one.
  nlohmann::json vocab = nlohmann::json::object();
  for (int i = 0; i < so.vocab; ++i) vocab["t" + std::to_string(i)] = i;
  const nlohmann::json tok = {
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  EXPECT_TRUE(WriteFileAtomic(model + "/tokenizer.json", DumpJson(tok), {.overwrite = true}).ok());
  return model;
}

/// Bytes of an output: the GGUF file, or every file of an MLX directory but the model card.
uint64_t OutputBytes(const std::string& path) {
  if (fs::is_regular_file(path)) return fs::file_size(path);
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(path)) {
    if (e.path().filename() == "README.md") continue;
    n += fs::file_size(e.path());
  }
  return n;
}

/// Σ ItemBytes of every quantizable tensor in `format`, experts of one (layer, role) as one item.
uint64_t PlanBytes(const Checkpoint& ckpt, const TargetCostModel& cost,
                   const quant::FormatTraits* format) {
  std::map<std::pair<int, TensorRole>, std::vector<std::string>> groups;
  std::vector<std::vector<std::string>> items;
  for (const CheckpointTensor& t : ckpt.tensors()) {
    if (!IsQuantizableRole(t.id.role)) continue;
    if (IsExpertRole(t.id.role) && t.id.expert >= 0) {
      groups[{t.id.layer, t.id.role}].push_back(t.info.name);
    } else {
      items.push_back({t.info.name});
    }
  }
  for (auto& [k, v] : groups) items.push_back(v);
  uint64_t total = 0;
  for (const auto& names : items) {
    auto b = cost.ItemBytes(names, format);
    EXPECT_TRUE(b.ok()) << names.front() << ": " << b.status().ToString();
    total += b.ok() ? *b : 0;
  }
  return total;
}

class TargetCost : public ::testing::TestWithParam<int> {};

TEST_P(TargetCost, GgufCostIsTheBytesTheWriterStores) {
  test::ScopedTempDir dir("moeq-target-cost");
  const std::string model = MakeModel(dir, GetParam());
  auto ckpt = Checkpoint::Open(model);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  std::set<std::string, std::less<>> costed;
  for (const CheckpointTensor& t : (*ckpt)->tensors()) {
    if (IsQuantizableRole(t.id.role)) costed.insert(t.info.name);
  }
  auto cost = TargetCostModel::Make(**ckpt, WriteTarget::kGguf, costed);
  ASSERT_TRUE(cost.ok()) << cost.status().ToString();
  int fallbacks = 0;
  for (const char* fname : {"q4g64", "q8g32", "q6g64", "q3g64", "q2g32", "bf16"}) {
    SCOPED_TRACE(fname);
    const quant::FormatTraits* f = quant::FindFormat(fname);
    ASSERT_NE(f, nullptr);
    auto plan = MakeUniformPlan(**ckpt, *f);
    ASSERT_TRUE(plan.ok());
    // As moeq-quantize writes an allocation: its SHA-256, producer and command line recorded.
    plan->source = "allocation a.json";
    plan->allocation_sha256 = std::string(64, 'a');
    ArtifactContext ctx;
    ctx.tool = "moeq-quantize";
    ctx.command_line = "moeq-quantize model --allocation a.json --format gguf -o m.gguf";
    const std::string out = dir.Join(std::string(fname) + ".gguf");
    GgufWriteReport report;
    GgufWriteOptions wo;
    wo.context = &ctx;
    wo.progress = false;
    wo.report = &report;
    ASSERT_TRUE(WriteGguf(**ckpt, *plan, out, wo).ok());
    fallbacks += report.fallback_tensors;
    // Per tensor: one merged expert tensor (padded to 32 bytes) and the router (F32).
    std::vector<std::string> down;
    for (int e = 0; e < 4; ++e)
      down.push_back("model.layers.1.mlp.experts." + std::to_string(e) + ".down_proj.weight");
    auto bd = (*cost)->ItemBytes(down, f);
    auto br = (*cost)->ItemBytes(std::vector<std::string>{"model.layers.1.mlp.gate.weight"}, f);
    ASSERT_TRUE(bd.ok() && br.ok());
    for (const auto& t : report.tensors) {
      if (t.name == "blk.1.ffn_down_exps.weight") {
        EXPECT_EQ(*bd, (t.bytes + 31) / 32 * 32);
      }
      if (t.name == "blk.1.ffn_gate_inp.weight") {
        EXPECT_EQ(t.type, GgmlType::kF32);
        EXPECT_EQ(*br, (t.bytes + 31) / 32 * 32);
      }
    }
    // The whole file: exact but for the reserve kept for the allocation path and command line.
    const uint64_t predicted = (*cost)->fixed_bytes() + PlanBytes(**ckpt, **cost, f);
    const uint64_t actual = fs::file_size(out);
    EXPECT_LE(actual, predicted);
    EXPECT_GE(actual + TargetCostModel::kGgufStringReserve + 32, predicted);
  }
  // Rows of 192 are no multiple of 256: the K-quants fall back (and the cost knew it).
  if (GetParam() % 256 != 0) {
    EXPECT_GT(fallbacks, 0);
  } else {
    EXPECT_EQ(fallbacks, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Hidden, TargetCost, ::testing::Values(256, 192));

struct Pipeline {
  test::ScopedTempDir dir{"moeq-target-e2e"};
  std::string model, sens;
  explicit Pipeline(int hidden) {
    model = MakeModel(dir, hidden);
    sens = dir.Join("sensitivity.jsonl");
    AnalyzeCommandOptions a;
    a.model_dir = model;
    a.output = sens;
    a.rank = 8;
    a.probes = 8;
    const Status s = RunAnalyze(a, Ctx("moeq-analyze"));
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  Status Allocate(const std::string& target, uint64_t budget, const std::string& out) {
    AllocateCommandOptions o;
    o.sensitivity = sens;
    o.target = target;
    o.budget = std::to_string(budget) + "B";
    o.output = out;
    return RunAllocate(o, Ctx("moeq-allocate"));
  }
  Status Quantize(const std::string& alloc, const std::string& format, bool stacked,
                  const std::string& out, bool ignore_target = false) {
    QuantizeCommandOptions q;
    q.model_dir = model;
    q.allocation = alloc;
    q.format = format;
    q.mlx_compatible = stacked;
    q.output = out;
    q.ignore_target = ignore_target;
    return RunQuantize(q, Ctx("moeq-quantize"));
  }
};

uint64_t UniformQ4Bytes(Pipeline& p, const std::string& format, bool stacked) {
  QuantizeCommandOptions q;
  q.model_dir = p.model;
  q.uniform_bits = 4;
  q.group_size = 64;
  q.format = format;
  q.mlx_compatible = stacked;
  q.output = p.dir.Join("u4-" + format + (stacked ? "-s" : "") + (format == "gguf" ? ".gguf" : ""));
  const Status s = RunQuantize(q, Ctx("moeq-quantize"));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return s.ok() ? OutputBytes(q.output) : 0;
}

void ExpectOneFormatPerGroup(const std::string& alloc) {
  auto j = ReadJsonFile(alloc);
  ASSERT_TRUE(j.ok());
  std::map<std::pair<int, std::string>, std::set<std::string>> formats;
  for (const auto& t : (*j)["tensors"]) {
    if (t["expert"].get<int>() < 0) continue;
    formats[{t["layer"].get<int>(), t["role"].get<std::string>()}].insert(
        t["format"].get<std::string>());
  }
  ASSERT_FALSE(formats.empty());
  for (const auto& [k, v] : formats) EXPECT_EQ(v.size(), 1u) << k.first << " " << k.second;
}

TEST(AllocateTarget, FileOfEachTargetFitsTheBudget) {
  for (int hidden : {256, 192}) {
    SCOPED_TRACE(hidden);
    Pipeline p(hidden);
    struct Case {
      const char* target;
      const char* format;
      bool stacked;
    };
    for (const Case& c : {Case{"gguf", "gguf", false}, Case{"mlx", "mlx", false},
                          Case{"mlx-stacked", "mlx", true}}) {
      SCOPED_TRACE(c.target);
      if (hidden != 256 && std::string(c.target) != "gguf") continue;
      // A budget between uniform 4-bit and 8-bit: 10% above the uniform 4-bit file.
      const uint64_t budget = UniformQ4Bytes(p, c.format, c.stacked) * 11 / 10;
      const std::string alloc = p.dir.Join(std::string("a-") + c.target + ".json");
      const Status sa = p.Allocate(c.target, budget, alloc);
      ASSERT_TRUE(sa.ok()) << sa.ToString();
      auto j = ReadJsonFile(alloc);
      ASSERT_TRUE(j.ok());
      EXPECT_EQ((*j)["budget"]["target"], c.target);
      EXPECT_EQ((*j)["budget"]["per_expert_formats"], std::string(c.target) == "mlx");
      if (std::string(c.target) != "mlx") ExpectOneFormatPerGroup(alloc);
      const std::string out = p.dir.Join(std::string("out-") + c.target + (c.stacked ? "" : "") +
                                         (std::string(c.format) == "gguf" ? ".gguf" : ""));
      const Status sq = p.Quantize(alloc, c.format, c.stacked, out);
      ASSERT_TRUE(sq.ok()) << sq.ToString();
      const uint64_t size = OutputBytes(out);
      EXPECT_LE(size, budget);
      EXPECT_GE(static_cast<double>(size), 0.95 * static_cast<double>(budget));
      const uint64_t predicted = (*j)["result"]["file_bytes"].get<uint64_t>();
      if (std::string(c.format) == "gguf") {
        EXPECT_LE(size, predicted);
        EXPECT_GE(size + TargetCostModel::kGgufStringReserve + 32, predicted);
      }
    }
  }
}

TEST(AllocateTarget, QuantizeRefusesAnotherTarget) {
  Pipeline p(256);
  const uint64_t budget = UniformQ4Bytes(p, "gguf", false) * 11 / 10;
  const std::string alloc = p.dir.Join("a.json");
  ASSERT_TRUE(p.Allocate("gguf", budget, alloc).ok());
  const Status s = p.Quantize(alloc, "mlx", false, p.dir.Join("mlx-out"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--target gguf"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(p.dir.Join("mlx-out")));
  EXPECT_TRUE(p.Quantize(alloc, "mlx", false, p.dir.Join("mlx-out"), true).ok());
  // Unknown target and a target without a model directory are usage errors.
  AllocateCommandOptions o;
  o.sensitivity = p.sens;
  o.target = "onnx";
  o.bpw = 4.5;
  o.output = p.dir.Join("b.json");
  EXPECT_EQ(RunAllocate(o, Ctx("moeq-allocate")).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moeq
