// moeq-quantize: MLX output round-trips through Checkpoint + Engine bit-exactly against the
// in-memory quantize→dequantize model, the --mlx-compatible layout, plans, output safety.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>

#include "moeq-quantize/quantize_command.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/eval/eval.h"
#include "moeq/export/quant_plan.h"
#include "moeq/formats/safetensors.h"
#include "moeq/quant/quantizer.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"
#include "testing/tool_testing.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

ArtifactContext QuietContext(bool force = false) {
  ArtifactContext ctx;
  ctx.tool = "moeq-quantize";
  ctx.progress = false;
  ctx.force = force;
  return ctx;
}

test::SyntheticCheckpointOptions SmallMoe() {
  test::SyntheticCheckpointOptions o;
  o.model_type = "qwen3_moe";
  o.layers = 2;
  o.hidden = 64;
  o.experts = 4;
  o.top_k = 2;
  o.moe_ff = 64;
  o.vocab = 128;
  return o;
}

/// Formats that differ per expert and per role: experts cycle through 2/4/8 bits, attention
/// 6 bits g32, the router and embeddings stay bf16, lm_head 8 bits g32; expert 3 of layer 1's
/// projections is pruned.
nlohmann::json MixedAllocation(const Checkpoint& ckpt) {
  static const char* kExpertFormats[] = {"q2g64", "q4g32", "q8g64", "q3g64"};
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : ckpt.tensors()) {
    const TensorRole r = t.id.role;
    std::string f;
    bool prune = false;
    if (IsExpertRole(r)) {
      f = kExpertFormats[(t.id.expert + static_cast<int>(r)) % 4];
      prune = t.id.layer == 1 && t.id.expert == 3;
    } else if (r == TensorRole::kAttnQ || r == TensorRole::kAttnK || r == TensorRole::kAttnV ||
               r == TensorRole::kAttnO) {
      f = "q6g32";
    } else if (r == TensorRole::kLmHead) {
      f = "q8g32";
    } else if (r == TensorRole::kRouter || r == TensorRole::kEmbedding) {
      f = "bf16";
    } else {
      continue;
    }
    tensors.push_back({{"name", t.info.name}, {"format", f}, {"prune", prune}});
  }
  nlohmann::json j =
      MakeArtifactHeader("moeq.allocation", 1, QuietContext(), nlohmann::json::object());
  j["tensors"] = tensors;
  return j;
}

/// Writes the expected dequantized weights of `ckpt` under `plan` as an f32 checkpoint: every
/// planned affine tensor quantized and dequantized in memory (pruned ones zero), the rest
/// converted to f32. `format_of` may override the format (stacked layouts promote experts).
void WriteReference(
    const Checkpoint& ckpt, const QuantPlan& plan, const std::string& dir,
    const std::function<const quant::FormatTraits*(const CheckpointTensor&)>& format_of) {
  fs::create_directories(dir);
  std::vector<TensorInfo> infos;
  for (const auto& t : ckpt.tensors()) infos.push_back({t.info.name, DType::kF32, t.info.shape});
  auto w = SafetensorsWriter::Create(dir + "/model.safetensors", infos);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (const auto& t : ckpt.tensors()) {
    auto view = ckpt.View(t.info.name);
    ASSERT_TRUE(view.ok());
    std::vector<float> values = *ToF32(*view);
    const quant::FormatTraits* f = format_of(t);
    if (f != nullptr && f->is_affine()) {
      if (plan.pruned.count(t.info.name)) {
        std::fill(values.begin(), values.end(), 0.0f);
      } else {
        auto q = quant::QuantizeTensor(*view, *f, 1);
        ASSERT_TRUE(q.ok()) << q.status().ToString();
        values = *quant::Dequantize(*q, 1);
      }
    } else if (plan.pruned.count(t.info.name)) {
      std::fill(values.begin(), values.end(), 0.0f);
    }
    ASSERT_TRUE((*w)->Write(t.info.name, std::as_bytes(std::span<const float>(values))).ok());
  }
  ASSERT_TRUE((*w)->Finish().ok());
  fs::copy_file(ckpt.dir() + "/config.json", dir + "/config.json");
}

std::vector<float> Logits(const std::string& dir) {
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  if (!ckpt.ok()) return {};
  auto engine = Engine::Load(**ckpt, {1});
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  if (!engine.ok()) return {};
  std::vector<int32_t> tokens;
  for (int i = 0; i < 24; ++i) tokens.push_back((i * 37 + 5) % 128);
  std::vector<float> logits;
  EXPECT_TRUE((*engine)->Forward(tokens, &logits).ok());
  return logits;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

struct Fixture {
  test::ScopedTempDir tmp{"moeq-quantize"};
  std::string model = tmp.Join("model");
  std::string alloc = tmp.Join("allocation.json");
  std::unique_ptr<Checkpoint> ckpt;
  QuantPlan plan;

  explicit Fixture(test::SyntheticCheckpointOptions o = SmallMoe()) {
    auto s = test::WriteSyntheticCheckpoint(model, o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    ckpt = std::move(Checkpoint::Open(model)).value();
    EXPECT_TRUE(WriteFileAtomic(alloc, DumpJson(MixedAllocation(*ckpt))).ok());
    auto p = LoadAllocationPlan(alloc, *ckpt);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    plan = std::move(p).value();
  }
};

TEST(QuantizeModelMatch, RefusesAnAllocationOfAnotherModelUnlessAllowed) {
  Fixture f;
  // The plan says which model it was made for; this one names another fingerprint.
  nlohmann::json j = MixedAllocation(*f.ckpt);
  j["inputs"]["model_fingerprint"] = std::string(64, '0');
  ASSERT_TRUE(WriteFileAtomic(f.alloc, DumpJson(j), {.overwrite = true}).ok());
  QuantizeCommandOptions o;
  o.model_dir = f.model;
  o.output = f.tmp.Join("out");
  o.allocation = f.alloc;
  const Status s = RunQuantize(o, QuietContext());
  EXPECT_EQ(ExitCodeFor(s), 2) << s.ToString();
  for (const std::string& want : {f.alloc, f.model, std::string(64, '0'), f.ckpt->fingerprint(),
                                  std::string("--allow-model-mismatch")}) {
    EXPECT_NE(s.message().find(want), std::string::npos) << want << " in " << s.message();
  }
  EXPECT_FALSE(fs::exists(o.output));
  o.allow_model_mismatch = true;
  const Status allowed = RunQuantize(o, QuietContext());
  EXPECT_TRUE(allowed.ok()) << allowed.ToString();
  // The right fingerprint passes without the override.
  j["inputs"]["model_fingerprint"] = f.ckpt->fingerprint();
  ASSERT_TRUE(WriteFileAtomic(f.alloc, DumpJson(j), {.overwrite = true}).ok());
  o.allow_model_mismatch = false;
  o.output = f.tmp.Join("out2");
  const Status same = RunQuantize(o, QuietContext());
  EXPECT_TRUE(same.ok()) << same.ToString();
}

TEST(QuantizeRoundTrip, MixedPlanLoadsBitExactThroughEngine) {
  Fixture f;
  EXPECT_EQ(f.plan.pruned.size(), 3u);  // layer 1 expert 3: gate, up, down
  QuantizeCommandOptions o;
  o.model_dir = f.model;
  o.output = f.tmp.Join("out");
  o.allocation = f.alloc;
  o.max_shard_size = "20KB";  // several shards + index
  ASSERT_TRUE(RunQuantize(o, QuietContext()).ok());
  ASSERT_TRUE(fs::exists(o.output + "/quant_manifest.json"));
  ASSERT_TRUE(fs::exists(o.output + "/model.safetensors.index.json"));
  ASSERT_TRUE(fs::exists(o.output + "/tokenizer.json"));

  auto out = Checkpoint::Open(o.output);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE((*out)->is_quantized());
  EXPECT_TRUE((*out)->unknown_tensors().empty());
  EXPECT_EQ((*out)->tensors().size(), f.ckpt->tensors().size());
  // Every planned affine tensor is presented as its logical tensor with the plan's bits/group.
  for (const auto& [name, fmt] : f.plan.formats) {
    const CheckpointTensor* t = (*out)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->info.shape, f.ckpt->Find(name)->info.shape) << name;
    EXPECT_EQ(t->quant.bits, fmt->is_affine() ? fmt->bits : 0) << name;
    EXPECT_EQ(t->quant.group_size, fmt->is_affine() ? fmt->group_size : 0) << name;
  }

  const std::string ref = f.tmp.Join("reference");
  WriteReference(*f.ckpt, f.plan, ref,
                 [&](const CheckpointTensor& t) { return f.plan.FormatOf(t.info.name); });
  const auto a = Logits(o.output), b = Logits(ref);
  ASSERT_FALSE(a.empty());
  EXPECT_LE(MaxAbsDiff(a, b), 1e-6);
  // Quantization did change the model (the test would be vacuous otherwise).
  EXPECT_GT(MaxAbsDiff(a, Logits(f.model)), 1e-4);

  // Perplexity of both through the evaluation library is identical.
  auto qc = Checkpoint::Open(o.output);
  auto rc = Checkpoint::Open(ref);
  auto qe = Engine::Load(**qc, {1});
  auto re = Engine::Load(**rc, {1});
  std::vector<int32_t> tokens;
  for (int i = 0; i < 64; ++i) tokens.push_back((i * 53 + 11) % 128);
  EvalOptions eo;
  eo.protocol.context = 32;
  eo.progress = false;
  eo.threads = 1;
  auto pq = Evaluate(**qe, tokens, eo);
  auto pr = Evaluate(**re, tokens, eo);
  ASSERT_TRUE(pq.ok() && pr.ok());
  EXPECT_NEAR(pq->ppl, pr->ppl, 1e-9 * pr->ppl);

  // The manifest lists every output tensor; the pruned experts are there with NRMSE 1.
  auto m = ReadJsonFile(o.output + "/quant_manifest.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)["schema"], "moeq.quant_manifest");
  EXPECT_EQ((*m)["tensors"].size(), f.ckpt->tensors().size());
  int pruned = 0;
  for (const auto& e : (*m)["tensors"]) {
    if (e.contains("pruned_experts")) {
      ++pruned;
      EXPECT_NEAR(e["nrmse"].get<double>(), 1.0, 1e-12);
    }
  }
  EXPECT_EQ(pruned, 3);
}

TEST(QuantizeRoundTrip, ConfigCarriesDefaultsAndOverridesAsMlxLmReadsThem) {
  Fixture f;
  QuantizeCommandOptions o;
  o.model_dir = f.model;
  o.output = f.tmp.Join("out");
  o.allocation = f.alloc;
  ASSERT_TRUE(RunQuantize(o, QuietContext()).ok());
  auto cfg = ReadJsonFile(o.output + "/config.json");
  ASSERT_TRUE(cfg.ok());
  const auto& q = (*cfg)["quantization"];
  EXPECT_EQ(q, (*cfg)["quantization_config"]);
  // Default: the format with most parameters. Every other module is explicit, with all keys.
  const int dbits = q["bits"], dgroup = q["group_size"];
  EXPECT_EQ(q["mode"], "affine");
  EXPECT_EQ(q["model.layers.0.self_attn.q_proj"],
            (nlohmann::json{{"bits", 6}, {"group_size", 32}, {"mode", "affine"}}));
  EXPECT_EQ(q["model.layers.0.mlp.gate"], false);  // router kept bf16
  EXPECT_EQ(q["model.embed_tokens"], false);
  EXPECT_FALSE(q.contains("model.norm"));
  for (const auto& [name, fmt] : f.plan.formats) {
    const std::string module = name.substr(0, name.size() - 7);
    if (!fmt->is_affine()) continue;
    if (fmt->bits == dbits && fmt->group_size == dgroup) {
      EXPECT_FALSE(q.contains(module)) << module;
    } else {
      ASSERT_TRUE(q.contains(module)) << module;
      EXPECT_EQ(q[module]["bits"], fmt->bits);
      EXPECT_EQ(q[module]["group_size"], fmt->group_size);
    }
  }
}

TEST(QuantizeRoundTrip, MlxCompatibleStacksExpertsAtTheHighestPrecision) {
  Fixture f;
  QuantizeCommandOptions o;
  o.model_dir = f.model;
  o.output = f.tmp.Join("out");
  o.allocation = f.alloc;
  o.mlx_compatible = true;
  ASSERT_TRUE(RunQuantize(o, QuietContext()).ok());
  auto st = SafetensorsFile::Open(o.output + "/model.safetensors");
  ASSERT_TRUE(st.ok());
  const auto& file = **st;
  for (int l = 0; l < 2; ++l) {
    for (std::string proj : {"gate_proj", "up_proj", "down_proj"}) {
      const std::string base = "model.layers." + std::to_string(l) + ".mlp.switch_mlp." + proj;
      const TensorInfo* w = file.Find(base + ".weight");
      ASSERT_NE(w, nullptr) << base;
      EXPECT_EQ(w->dtype, DType::kU32);
      EXPECT_EQ(w->shape.size(), 3u);
      EXPECT_EQ(w->shape[0], 4);
      ASSERT_NE(file.Find(base + ".scales"), nullptr);
      ASSERT_NE(file.Find(base + ".biases"), nullptr);
      EXPECT_EQ(file.Find(base + ".scales")->shape[0], 4);
    }
    EXPECT_EQ(file.Find("model.layers." + std::to_string(l) + ".mlp.experts.0.gate_proj.weight"),
              nullptr);
  }
  // Each projection is stored in the highest precision among its unpruned experts (q2, q4g32,
  // q8g64, q3 cycle over experts; layer 1 expert 3 is pruned).
  auto stacked_format = [&](int layer, TensorRole role) {
    const quant::FormatTraits* best = nullptr;
    for (const auto& t : f.ckpt->tensors()) {
      if (t.id.layer != layer || t.id.role != role || f.plan.pruned.count(t.info.name)) continue;
      const quant::FormatTraits* x = f.plan.FormatOf(t.info.name);
      if (!best || x->bits > best->bits ||
          (x->bits == best->bits && x->group_size < best->group_size))
        best = x;
    }
    return best;
  };
  auto cfg = ReadJsonFile(o.output + "/config.json");
  const auto& q = (*cfg)["quantization"];
  int promoted_to_q4 = 0;
  for (int l = 0; l < 2; ++l) {
    for (TensorRole role :
         {TensorRole::kExpertGate, TensorRole::kExpertUp, TensorRole::kExpertDown}) {
      const std::string module = *MlxStackedModule(f.ckpt->adapter(), l, role);
      const quant::FormatTraits* want = stacked_format(l, role);
      promoted_to_q4 += want->bits == 4;
      const nlohmann::json dict = {
          {"bits", want->bits}, {"group_size", want->group_size}, {"mode", "affine"}};
      if (q["bits"] == want->bits && q["group_size"] == want->group_size) {
        EXPECT_FALSE(q.contains(module)) << module;
      } else {
        EXPECT_EQ(q[module], dict) << module;
      }
      const CheckpointTensor* t = nullptr;
      auto out = Checkpoint::Open(o.output);
      ASSERT_TRUE(out.ok());
      t = (*out)->Find(module + ".weight");
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->quant.bits, want->bits);
    }
  }
  EXPECT_EQ(promoted_to_q4, 1);  // layer 1 up_proj: its q8 expert is the pruned one
  auto m = ReadJsonFile(o.output + "/quant_manifest.json");
  ASSERT_TRUE((*m).contains("projections"));
  EXPECT_EQ((*m)["projections"].size(), 6u);
  EXPECT_EQ((*m)["projections"][0]["format"], "q8g64");

  // Loaded as fused experts; logits equal the promoted in-memory reference.
  auto out = Checkpoint::Open(o.output);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const CheckpointTensor* t = (*out)->Find("model.layers.0.mlp.switch_mlp.down_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->fused_experts);
  EXPECT_EQ(t->id.role, TensorRole::kExpertDown);
  EXPECT_EQ(t->info.shape, (std::vector<int64_t>{4, 64, 64}));
  const std::string ref = f.tmp.Join("reference");
  WriteReference(*f.ckpt, f.plan, ref, [&](const CheckpointTensor& ct) {
    return IsExpertRole(ct.id.role) ? stacked_format(ct.id.layer, ct.id.role)
                                    : f.plan.FormatOf(ct.info.name);
  });
  EXPECT_LE(MaxAbsDiff(Logits(o.output), Logits(ref)), 1e-6);
}

TEST(QuantizeRoundTrip, MixtralStacksUnderBlockSparseMoe) {
  auto opts = SmallMoe();
  opts.model_type = "mixtral";
  test::ScopedTempDir tmp("moeq-quantize");
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(tmp.Join("m"), opts).ok());
  QuantizeCommandOptions o;
  o.model_dir = tmp.Join("m");
  o.output = tmp.Join("out");
  o.uniform_bits = 4;
  o.group_size = 32;
  o.mlx_compatible = true;
  ASSERT_TRUE(RunQuantize(o, QuietContext()).ok());
  auto out = Checkpoint::Open(o.output);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const CheckpointTensor* t =
      (*out)->Find("model.layers.1.block_sparse_moe.switch_mlp.up_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->id.role, TensorRole::kExpertUp);
  EXPECT_EQ(t->quant.bits, 4);
  EXPECT_TRUE(Engine::Load(**out, {1}).ok());
}

TEST(QuantizeRoundTrip, Uniform16CopiesTheCheckpoint) {
  Fixture f;
  QuantizeCommandOptions o;
  o.model_dir = f.model;
  o.output = f.tmp.Join("out");
  o.uniform_bits = 16;
  ASSERT_TRUE(RunQuantize(o, QuietContext()).ok());
  auto out = Checkpoint::Open(o.output);
  ASSERT_TRUE(out.ok());
  EXPECT_FALSE((*out)->is_quantized());
  auto cfg = ReadJsonFile(o.output + "/config.json");
  EXPECT_FALSE((*cfg).contains("quantization"));
  EXPECT_EQ(MaxAbsDiff(Logits(o.output), Logits(f.model)), 0.0);
}

TEST(QuantizeRoundTrip, RefusesBadInvocations) {
  Fixture f;
  QuantizeCommandOptions o;
  o.model_dir = f.model;
  o.output = f.tmp.Join("out");
  EXPECT_EQ(RunQuantize(o, QuietContext()).code(), StatusCode::kInvalidArgument);  // no plan
  o.uniform_bits = 7;
  EXPECT_EQ(RunQuantize(o, QuietContext()).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(o.output));
  o.uniform_bits = 4;
  o.output = f.model;  // the input itself
  EXPECT_FALSE(RunQuantize(o, QuietContext(true)).ok());
  o.output = f.tmp.Join("out");
  o.format = "gguf";  // the synthetic model's placeholder tokenizer.json has no vocabulary
  const Status gs = RunQuantize(o, QuietContext());
  EXPECT_FALSE(gs.ok());
  EXPECT_NE(gs.message().find("tokenizer.json"), std::string::npos) << gs.message();
  EXPECT_FALSE(fs::exists(o.output));
  EXPECT_FALSE(fs::exists(o.output + ".tmp"));
  o.format = "mlx";
  ASSERT_TRUE(RunQuantize(o, QuietContext()).ok());
  EXPECT_FALSE(RunQuantize(o, QuietContext()).ok());  // exists, no --force
  o.group_size = 32;
  ASSERT_TRUE(RunQuantize(o, QuietContext(true)).ok());  // replaced
  auto cfg = ReadJsonFile(o.output + "/config.json");
  EXPECT_EQ((*cfg)["quantization"]["group_size"], 32);
  // No temporary directories are left next to the output.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(f.tmp.path()))
    entries += e.path().filename().string()[0] == '.';
  EXPECT_EQ(entries, 0);
  // Quantizing a quantized checkpoint is refused.
  o.model_dir = o.output;
  o.output = f.tmp.Join("again");
  EXPECT_EQ(RunQuantize(o, QuietContext()).code(), StatusCode::kUnsupported);
}

TEST(QuantizeRoundTrip, AllocationErrorsNameTensorAndField) {
  Fixture f;
  nlohmann::json j = MixedAllocation(*f.ckpt);
  j["tensors"][0]["format"] = "q7g64";
  ASSERT_TRUE(WriteFileAtomic(f.alloc, DumpJson(j)).ok());
  auto p = LoadAllocationPlan(f.alloc, *f.ckpt);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("'format'"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find(j["tensors"][0]["name"].get<std::string>()),
            std::string::npos);
  j = MixedAllocation(*f.ckpt);
  j["tensors"][0]["name"] = "model.nope.weight";
  ASSERT_TRUE(WriteFileAtomic(f.alloc, DumpJson(j)).ok());
  EXPECT_FALSE(LoadAllocationPlan(f.alloc, *f.ckpt).ok());
}

std::string BinDir() { return test::ToolBinDir(); }

TEST(QuantizeTool, FileSizeLimitLeavesNothingCompleteLooking) {
  ASSERT_TRUE(test::ToolBuilt("moeq-quantize"));
  Fixture f;
  const std::string out = f.tmp.Join("out");
  const std::string cmd = "/bin/sh -c \"ulimit -f 16; exec " + BinDir() + "/moeq-quantize " +
                          f.model + " -o " + out + " --uniform 8 --group 32 -q\" >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_NE(WEXITSTATUS(rc), 0);
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::recursive_directory_iterator(f.tmp.path())) {
    EXPECT_NE(e.path().filename(), "quant_manifest.json") << e.path();
    EXPECT_EQ(e.path().filename().string().find(".out.tmp-"), std::string::npos) << e.path();
  }
  // Without the limit the same command succeeds.
  const std::string ok = BinDir() + "/moeq-quantize " + f.model + " -o " + out +
                         " --uniform 8 --group 32 -q >/dev/null 2>&1";
  EXPECT_EQ(std::system(ok.c_str()), 0);
  EXPECT_TRUE(fs::exists(out + "/quant_manifest.json"));
}

TEST(QuantizeRoundTrip, UniformQ4OnBundledModel) {
  const std::string model = std::string(kSourceDir) + "/models/tiny-qwen3moe";
  if (!fs::exists(model + "/config.json")) GTEST_FAIL() << "bundled model not found at " << model;
  test::ScopedTempDir tmp("moeq-quantize");
  QuantizeCommandOptions o;
  o.model_dir = model;
  o.output = tmp.Join("out");
  o.uniform_bits = 4;
  o.group_size = 64;
  ASSERT_TRUE(RunQuantize(o, QuietContext()).ok());
  auto out = Checkpoint::Open(o.output);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  auto src = Checkpoint::Open(model);
  int64_t quantized = 0;
  for (const auto& t : (*out)->tensors()) {
    quantized += t.quant.quantized();
    EXPECT_EQ(t.info.shape, (*src)->Find(t.info.name)->info.shape);
  }
  EXPECT_GT(quantized, 4 * 64 * 3);
  auto m = ReadJsonFile(o.output + "/quant_manifest.json");
  EXPECT_NEAR((*m)["totals"]["bpw"].get<double>(), 4.5, 0.2);
}

}  // namespace
}  // namespace moeq
