// WriteGguf on synthetic qwen3_moe / qwen2_moe / mixtral checkpoints, read back with GgufFile:
// metadata keys and values, tensor names and ne, 32-byte alignment, merged experts equal to the
// per-expert source rows after dequantization, exact float round trips, Mixtral's q/k
// permutation, expert promotion, shape fallbacks, tokenizer metadata, atomic output and reader
// validation. The shared models, when present, are written and read back too.
#include "moeq/export/gguf_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/quant_plan.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;
using test::ScopedTempDir;
using test::SyntheticCheckpointOptions;

SyntheticCheckpointOptions Opts(const std::string& type, int hidden = 256, int moe_ff = 256) {
  SyntheticCheckpointOptions o;
  o.model_type = type;
  o.layers = 2;
  o.hidden = hidden;
  o.heads = 4;
  o.kv_heads = 2;
  o.experts = 4;
  o.top_k = 2;
  o.moe_ff = moe_ff;
  o.vocab = 256;
  return o;
}

/// A small byte-level BPE tokenizer.json (Qwen2 pre-tokenizer) with 250 vocab tokens, two
/// special added tokens at 250 and 251 and no tokens for 252..255.
void WriteTokenizer(const std::string& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int i = 0; i < 250; ++i) vocab["t" + std::to_string(i)] = i;
  nlohmann::json tok = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 250}, {"content", "<|endoftext|>"}, {"special", true}},
        {{"id", 251}, {"content", "<|im_start|>"}, {"special", true}}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex",
              "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", {{"t1", "t2"}, {"t3", "t4"}, "t5 t6"}}}}};
  ASSERT_TRUE(WriteFileAtomic(dir + "/tokenizer.json", DumpJson(tok)).ok());
  nlohmann::json cfg = {{"eos_token", "<|endoftext|>"},
                        {"pad_token", {{"content", "<|endoftext|>"}}},
                        {"bos_token", nullptr},
                        {"add_bos_token", false}};
  ASSERT_TRUE(WriteFileAtomic(dir + "/tokenizer_config.json", DumpJson(cfg)).ok());
}

struct Written {
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<GgufFile> gguf;
  GgufWriteReport report;
};

Written WriteAndOpen(const ScopedTempDir& tmp, const SyntheticCheckpointOptions& o,
                     const char* format, QuantPlan* plan_override = nullptr) {
  Written w;
  const std::string dir = tmp.Join("model");
  auto sc = test::WriteSyntheticCheckpoint(dir, o);
  EXPECT_TRUE(sc.ok()) << sc.status().ToString();
  WriteTokenizer(dir);
  auto ck = Checkpoint::Open(dir);
  EXPECT_TRUE(ck.ok()) << ck.status().ToString();
  if (!ck.ok()) return w;
  w.ckpt = std::move(*ck);
  QuantPlan plan;
  if (plan_override) {
    plan = *plan_override;
  } else if (format) {
    auto p = MakeUniformPlan(*w.ckpt, *quant::FindFormat(format));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    plan = *p;
  }
  GgufWriteOptions opt;
  opt.progress = false;
  opt.threads = 2;
  opt.report = &w.report;
  const std::string out = tmp.Join("model.gguf");
  const Status s = WriteGguf(*w.ckpt, plan, out, opt);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  auto g = GgufFile::Open(out);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  if (g.ok()) w.gguf = std::move(*g);
  return w;
}

int64_t U(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.Find(key);
  EXPECT_NE(v, nullptr) << key;
  if (!v) return -1;
  EXPECT_EQ(v->type, GgufValueType::kU32) << key;
  return v->value.get<int64_t>();
}
std::string S(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.Find(key);
  EXPECT_NE(v, nullptr) << key;
  if (!v || !v->value.is_string()) return "";
  return v->value.get<std::string>();
}

std::vector<float> SourceF32(const Checkpoint& c, const std::string& name) {
  auto v = c.View(name);
  EXPECT_TRUE(v.ok()) << name;
  auto f = ToF32(*v);
  EXPECT_TRUE(f.ok());
  return *f;
}

double Nrmse(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(a[i]) * a[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

TEST(GgufWriterTest, Qwen3MoeQ4K) {
  ScopedTempDir tmp("moeq-gguf");
  Written w = WriteAndOpen(tmp, Opts("qwen3_moe"), "q4g64");
  ASSERT_TRUE(w.gguf);
  const GgufFile& g = *w.gguf;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(S(g, "general.architecture"), "qwen3moe");
  EXPECT_EQ(U(g, "general.alignment"), 32);
  EXPECT_EQ(U(g, "general.quantization_version"), 2);
  EXPECT_EQ(U(g, "general.file_type"), 15);  // MOSTLY_Q4_K_M
  EXPECT_EQ(U(g, "qwen3moe.block_count"), 2);
  EXPECT_EQ(U(g, "qwen3moe.embedding_length"), 256);
  EXPECT_EQ(U(g, "qwen3moe.expert_count"), 4);
  EXPECT_EQ(U(g, "qwen3moe.expert_used_count"), 2);
  EXPECT_EQ(U(g, "qwen3moe.expert_feed_forward_length"), 256);
  EXPECT_EQ(U(g, "qwen3moe.attention.head_count"), 4);
  EXPECT_EQ(U(g, "qwen3moe.attention.head_count_kv"), 2);
  EXPECT_EQ(U(g, "qwen3moe.attention.key_length"), w.ckpt->config().head_dim);
  EXPECT_EQ(U(g, "qwen3moe.context_length"), w.ckpt->config().max_position_embeddings);
  ASSERT_NE(g.Find("qwen3moe.rope.freq_base"), nullptr);
  EXPECT_EQ(g.Find("qwen3moe.rope.freq_base")->type, GgufValueType::kF32);
  EXPECT_FLOAT_EQ(g.Find("qwen3moe.rope.freq_base")->value.get<float>(),
                  static_cast<float>(w.ckpt->config().rope_theta));
  EXPECT_FLOAT_EQ(g.Find("qwen3moe.attention.layer_norm_rms_epsilon")->value.get<float>(),
                  static_cast<float>(w.ckpt->config().rms_norm_eps));

  // Tokenizer metadata.
  EXPECT_EQ(S(g, "tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(S(g, "tokenizer.ggml.pre"), "qwen2");
  const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  ASSERT_EQ(tokens->value.size(), 256u);
  EXPECT_EQ(tokens->value[7], "t7");
  EXPECT_EQ(tokens->value[250], "<|endoftext|>");
  EXPECT_EQ(tokens->value[253], "[PAD253]");
  const GgufValue* types = g.Find("tokenizer.ggml.token_type");
  ASSERT_NE(types, nullptr);
  EXPECT_EQ(types->elem_type, GgufValueType::kI32);
  EXPECT_EQ(types->value[7], 1);
  EXPECT_EQ(types->value[250], 3);
  EXPECT_EQ(types->value[253], 5);
  const GgufValue* merges = g.Find("tokenizer.ggml.merges");
  ASSERT_NE(merges, nullptr);
  EXPECT_EQ(merges->value, nlohmann::json({"t1 t2", "t3 t4", "t5 t6"}));
  EXPECT_EQ(U(g, "tokenizer.ggml.eos_token_id"), 250);
  EXPECT_EQ(U(g, "tokenizer.ggml.padding_token_id"), 250);
  EXPECT_EQ(g.Find("tokenizer.ggml.add_bos_token")->value, false);

  // Tensors: names, ne, types, alignment.
  const auto* q = g.FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, GgmlType::kQ4_K);
  const int64_t hd = w.ckpt->config().head_dim;
  EXPECT_EQ(q->ne, (std::vector<int64_t>{256, 4 * hd}));
  const auto* gate = g.FindTensor("blk.1.ffn_gate_exps.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->ne, (std::vector<int64_t>{256, 256, 4}));
  EXPECT_EQ(gate->type, GgmlType::kQ4_K);
  const auto* down = g.FindTensor("blk.1.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->ne, (std::vector<int64_t>{256, 256, 4}));
  for (const char* n :
       {"blk.0.ffn_gate_inp.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight",
        "blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight", "output_norm.weight"}) {
    const auto* t = g.FindTensor(n);
    ASSERT_NE(t, nullptr) << n;
    EXPECT_EQ(t->type, GgmlType::kF32) << n;
  }
  EXPECT_EQ(g.FindTensor("blk.0.attn_q_norm.weight")->ne, (std::vector<int64_t>{hd}));
  EXPECT_EQ(g.FindTensor("blk.0.ffn_gate_inp.weight")->ne, (std::vector<int64_t>{256, 4}));
  ASSERT_NE(g.FindTensor("token_embd.weight"), nullptr);
  ASSERT_NE(g.FindTensor("output.weight"), nullptr);
  EXPECT_EQ(g.FindTensor("output.weight")->ne, (std::vector<int64_t>{256, 256}));
  EXPECT_EQ(g.data_offset() % 32, 0u);
  for (const auto& t : g.tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    EXPECT_LT(t.name.size(), 64u);
  }
  EXPECT_EQ(g.tensors().size(), w.report.tensors.size());
  EXPECT_EQ(g.file_size(), w.report.file_bytes);
  EXPECT_EQ(w.report.fallback_tensors, 0);

  // Merged experts equal the per-expert source rows after dequantization.
  for (const char* proj : {"gate", "up", "down"}) {
    const std::string gname = std::string("blk.1.ffn_") + proj + "_exps.weight";
    auto deq = g.DequantizeTensor(gname);
    ASSERT_TRUE(deq.ok()) << deq.status().ToString();
    for (int e = 0; e < 4; ++e) {
      const auto src = SourceF32(
          *w.ckpt, "model.layers.1.mlp.experts." + std::to_string(e) + "." + proj + "_proj.weight");
      ASSERT_EQ(src.size(), 256u * 256u);
      const double err =
          Nrmse(src.data(), deq->data() + static_cast<size_t>(e) * src.size(), src.size());
      EXPECT_LT(err, 0.09) << gname << " expert " << e;
      EXPECT_GT(err, 0.0);
    }
  }
  // Router is F32 and exact.
  auto router = g.DequantizeTensor("blk.0.ffn_gate_inp.weight");
  ASSERT_TRUE(router.ok());
  EXPECT_EQ(*router, SourceF32(*w.ckpt, "model.layers.0.mlp.gate.weight"));
}

TEST(GgufWriterTest, FloatPlanRoundTripsExactly) {
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    SCOPED_TRACE(std::string(DTypeName(dt)));
    ScopedTempDir tmp("moeq-gguf");
    auto o = Opts("qwen3_moe", 64, 32);
    o.dtype = dt;
    Written w = WriteAndOpen(tmp, o, nullptr);
    ASSERT_TRUE(w.gguf);
    const GgmlType expect = dt == DType::kBF16  ? GgmlType::kBF16
                            : dt == DType::kF16 ? GgmlType::kF16
                                                : GgmlType::kF32;
    EXPECT_EQ(w.gguf->FindTensor("blk.0.attn_v.weight")->type, expect);
    EXPECT_EQ(w.gguf->FindTensor("token_embd.weight")->type, expect);
    auto v = w.gguf->DequantizeTensor("blk.0.attn_v.weight");
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, SourceF32(*w.ckpt, "model.layers.0.self_attn.v_proj.weight"));
    auto up = w.gguf->DequantizeTensor("blk.1.ffn_up_exps.weight");
    ASSERT_TRUE(up.ok());
    for (int e = 0; e < 4; ++e) {
      const auto src =
          SourceF32(*w.ckpt, "model.layers.1.mlp.experts." + std::to_string(e) + ".up_proj.weight");
      EXPECT_TRUE(
          std::equal(src.begin(), src.end(), up->begin() + static_cast<ptrdiff_t>(e * src.size())))
          << e;
    }
    const uint32_t ftype = static_cast<uint32_t>(U(*w.gguf, "general.file_type"));
    EXPECT_EQ(ftype, dt == DType::kBF16 ? 32u : dt == DType::kF16 ? 1u : 0u);
  }
}

TEST(GgufWriterTest, MixtralPermutesQkAndUsesLlamaArch) {
  ScopedTempDir tmp("moeq-gguf");
  Written w = WriteAndOpen(tmp, Opts("mixtral"), nullptr);
  ASSERT_TRUE(w.gguf);
  const GgufFile& g = *w.gguf;
  EXPECT_EQ(S(g, "general.architecture"), "llama");
  EXPECT_EQ(U(g, "llama.expert_count"), 4);
  EXPECT_EQ(U(g, "llama.feed_forward_length"), 256);
  EXPECT_EQ(U(g, "llama.rope.dimension_count"), w.ckpt->config().head_dim);
  const int64_t hd = w.ckpt->config().head_dim;
  struct Case {
    const char* gguf;
    const char* hf;
    int64_t heads;
  };
  for (const Case& c : {Case{"blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", 4},
                        Case{"blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", 2}}) {
    auto got = g.DequantizeTensor(c.gguf);
    ASSERT_TRUE(got.ok());
    const auto src = SourceF32(*w.ckpt, c.hf);
    const int64_t cols = 256;
    ASSERT_EQ(static_cast<int64_t>(src.size()), c.heads * hd * cols);
    int mismatches = 0;
    for (int64_t h = 0; h < c.heads; ++h) {
      for (int64_t i = 0; i < 2; ++i) {
        for (int64_t j = 0; j < hd / 2; ++j) {
          const int64_t src_row = h * hd + i * (hd / 2) + j, dst_row = h * hd + 2 * j + i;
          for (int64_t k = 0; k < cols; ++k)
            mismatches += (*got)[dst_row * cols + k] != src[src_row * cols + k];
        }
      }
    }
    EXPECT_EQ(mismatches, 0) << c.gguf;
    // And the permutation is not the identity.
    EXPECT_NE(*got, src);
  }
  // v is not permuted; experts are w1/w3/w2.
  EXPECT_EQ(*g.DequantizeTensor("blk.0.attn_v.weight"),
            SourceF32(*w.ckpt, "model.layers.0.self_attn.v_proj.weight"));
  auto down = g.DequantizeTensor("blk.1.ffn_down_exps.weight");
  ASSERT_TRUE(down.ok());
  const auto w2 = SourceF32(*w.ckpt, "model.layers.1.block_sparse_moe.experts.3.w2.weight");
  EXPECT_TRUE(
      std::equal(w2.begin(), w2.end(), down->begin() + static_cast<ptrdiff_t>(3 * w2.size())));
}

TEST(GgufWriterTest, Qwen2MoeSharedExpertAndFallbacks) {
  ScopedTempDir tmp("moeq-gguf");
  auto o = Opts("qwen2_moe", 64, 64);
  o.shared_experts = 2;
  Written w = WriteAndOpen(tmp, o, "q4g64");
  ASSERT_TRUE(w.gguf);
  const GgufFile& g = *w.gguf;
  EXPECT_EQ(S(g, "general.architecture"), "qwen2moe");
  EXPECT_EQ(U(g, "qwen2moe.expert_shared_feed_forward_length"), 128);
  EXPECT_EQ(U(g, "qwen2moe.expert_feed_forward_length"), 64);
  const auto* shexp_gate = g.FindTensor("blk.0.ffn_gate_inp_shexp.weight");
  ASSERT_NE(shexp_gate, nullptr);
  EXPECT_EQ(shexp_gate->ne, (std::vector<int64_t>{64}));
  EXPECT_EQ(shexp_gate->type, GgmlType::kF32);
  for (const char* n : {"blk.0.ffn_gate_shexp.weight", "blk.0.ffn_up_shexp.weight",
                        "blk.0.ffn_down_shexp.weight"}) {
    ASSERT_NE(g.FindTensor(n), nullptr) << n;
  }
  // ne0 = 64: Q4_K falls back to Q4_1.
  EXPECT_EQ(g.FindTensor("blk.0.attn_q.weight")->type, GgmlType::kQ4_1);
  EXPECT_EQ(g.FindTensor("blk.0.ffn_down_exps.weight")->type, GgmlType::kQ4_1);
  EXPECT_EQ(g.FindTensor("blk.0.ffn_down_exps.weight")->ne, (std::vector<int64_t>{64, 64, 4}));
  EXPECT_GT(w.report.fallback_tensors, 0);
  EXPECT_EQ(g.FindTensor("blk.0.attn_q.bias") != nullptr,
            w.ckpt->Find("model.layers.0.self_attn.q_proj.bias") != nullptr);
  const auto summary = w.report.TypeSummary();
  EXPECT_TRUE(summary.contains("q4_1"));
  EXPECT_TRUE(summary.contains("f32"));
}

TEST(GgufWriterTest, MixedExpertFormatsArePromotedToTheHighest) {
  ScopedTempDir tmp("moeq-gguf");
  const std::string dir = tmp.Join("model");
  auto o = Opts("qwen3_moe", 256, 256);
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir, o).ok());
  auto ck = Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok());
  auto plan = MakeUniformPlan(**ck, *quant::FindFormat("q3g64"));
  ASSERT_TRUE(plan.ok());
  plan->formats["model.layers.0.mlp.experts.2.down_proj.weight"] = quant::FindFormat("q6g64");
  plan->pruned.insert("model.layers.1.mlp.experts.1.up_proj.weight");
  Written w = WriteAndOpen(tmp, o, nullptr, &*plan);
  ASSERT_TRUE(w.gguf);
  EXPECT_EQ(w.gguf->FindTensor("blk.0.ffn_down_exps.weight")->type, GgmlType::kQ6_K);
  EXPECT_EQ(w.gguf->FindTensor("blk.1.ffn_down_exps.weight")->type, GgmlType::kQ3_K);
  EXPECT_EQ(w.report.promoted_expert_tensors, 2);  // layer 0 down (q6), layer 1 up (pruned)
  // The pruned expert is zeros.
  auto up = w.gguf->DequantizeTensor("blk.1.ffn_up_exps.weight");
  ASSERT_TRUE(up.ok());
  const size_t per = 256 * 256;
  for (size_t i = per; i < 2 * per; ++i) ASSERT_EQ((*up)[i], 0.0f);
  // No tokenizer vocab in the synthetic placeholder: written anyway (warning), not with require.
  EXPECT_EQ(w.gguf->Find("tokenizer.ggml.model") != nullptr, true);  // WriteAndOpen wrote one
}

TEST(GgufWriterTest, FusedExpertsMatchPerExpertLayout) {
  ScopedTempDir a("moeq-gguf"), b("moeq-gguf");
  auto o = Opts("qwen3_moe", 64, 32);
  Written per = WriteAndOpen(a, o, "q8g32");
  o.fused_experts = true;
  Written fused = WriteAndOpen(b, o, "q8g32");
  ASSERT_TRUE(per.gguf && fused.gguf);
  for (const char* n :
       {"blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight", "blk.1.ffn_down_exps.weight"}) {
    const auto* tp = per.gguf->FindTensor(n);
    const auto* tf = fused.gguf->FindTensor(n);
    ASSERT_TRUE(tp && tf) << n;
    EXPECT_EQ(tp->ne, tf->ne) << n;
    EXPECT_EQ(tp->type, GgmlType::kQ8_0);
    auto dp = per.gguf->TensorData(n);
    auto df = fused.gguf->TensorData(n);
    ASSERT_TRUE(dp.ok() && df.ok());
    EXPECT_TRUE(std::equal(dp->begin(), dp->end(), df->begin(), df->end())) << n;
  }
}

TEST(GgufWriterTest, OutputIsDeterministicAcrossThreadCounts) {
  ScopedTempDir tmp("moeq-gguf");
  const std::string dir = tmp.Join("model");
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir, Opts("qwen3_moe", 256, 256)).ok());
  WriteTokenizer(dir);
  auto ck = Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok());
  auto plan = MakeUniformPlan(**ck, *quant::FindFormat("q5g64"));
  ASSERT_TRUE(plan.ok());
  std::string bytes[2];
  for (int i = 0; i < 2; ++i) {
    GgufWriteOptions opt;
    opt.progress = false;
    opt.threads = i == 0 ? 1 : 3;
    const std::string out = tmp.Join("out" + std::to_string(i) + ".gguf");
    ASSERT_TRUE(WriteGguf(**ck, *plan, out, opt).ok());
    auto r = ReadFile(out);
    ASSERT_TRUE(r.ok());
    bytes[i] = *r;
  }
  EXPECT_EQ(bytes[0], bytes[1]);
}

TEST(GgufWriterTest, RequireTokenizerAndUnsupportedArch) {
  ScopedTempDir tmp("moeq-gguf");
  const std::string dir = tmp.Join("model");
  ASSERT_TRUE(
      test::WriteSyntheticCheckpoint(dir, Opts("qwen3_moe", 64, 32)).ok());  // placeholder vocab
  auto ck = Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok());
  GgufWriteOptions opt;
  opt.progress = false;
  opt.require_tokenizer = true;
  const std::string out = tmp.Join("x.gguf");
  EXPECT_EQ(WriteGguf(**ck, QuantPlan{}, out, opt).code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  EXPECT_EQ(GgufArchitecture("deepseek_v3").status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(*GgufArchitecture("mixtral"), "llama");
  // An unwritable destination fails cleanly.
  GgufWriteOptions quiet;
  quiet.progress = false;
  EXPECT_EQ(WriteGguf(**ck, QuantPlan{}, tmp.Join("no/such/dir/x.gguf"), quiet).code(),
            StatusCode::kIo);
}

TEST(GgufReaderTest, RejectsCorruptFiles) {
  ScopedTempDir tmp("moeq-gguf");
  Written w = WriteAndOpen(tmp, Opts("qwen3_moe", 64, 32), "q8g32");
  ASSERT_TRUE(w.gguf);
  auto bytes = ReadFile(tmp.Join("model.gguf"));
  ASSERT_TRUE(bytes.ok());
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream(tmp.Join(name), std::ios::binary) << data;
    return tmp.Join(name);
  };
  std::string bad = *bytes;
  bad[0] = 'X';
  EXPECT_EQ(GgufFile::Open(write("magic.gguf", bad)).status().code(), StatusCode::kCorruption);
  bad = *bytes;
  bad[4] = 2;
  EXPECT_EQ(GgufFile::Open(write("v2.gguf", bad)).status().code(), StatusCode::kUnsupported);
  auto trunc = GgufFile::Open(write("trunc.gguf", bytes->substr(0, bytes->size() - 100)));
  EXPECT_EQ(trunc.status().code(), StatusCode::kCorruption);
  EXPECT_NE(trunc.status().message().find("past the end"), std::string::npos)
      << trunc.status().message();
  EXPECT_EQ(GgufFile::Open(write("head.gguf", bytes->substr(0, 300))).status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(GgufFile::Open(tmp.Join("absent.gguf")).status().code(), StatusCode::kNotFound);
}

TEST(GgufWriterTest, SharedModelsWriteAndReadBack) {
  const std::string shared = std::string(kSourceDir) + "/../shared/models";
  if (!fs::exists(shared)) GTEST_SKIP() << "../shared/models is absent: skipping the shared models";
  for (const char* name : {"tiny-mixtral", "tiny-qwen3moe"}) {
    const std::string dir = shared + "/" + name;
    if (!fs::exists(dir)) continue;
    SCOPED_TRACE(name);
    auto ck = Checkpoint::Open(dir);
    ASSERT_TRUE(ck.ok()) << ck.status().ToString();
    auto plan = MakeUniformPlan(**ck, *quant::FindFormat("q4g64"));
    ASSERT_TRUE(plan.ok());
    ScopedTempDir tmp("moeq-gguf");
    GgufWriteOptions opt;
    opt.progress = false;
    opt.require_tokenizer = true;
    GgufWriteReport report;
    opt.report = &report;
    const std::string out = tmp.Join("m.gguf");
    const Status s = WriteGguf(**ck, *plan, out, opt);
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto g = GgufFile::Open(out);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_EQ(S(**g, "tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(S(**g, "tokenizer.ggml.pre"), "qwen2");
    EXPECT_EQ((*g)->Find("tokenizer.ggml.tokens")->value.size(), 2048u);
    EXPECT_EQ((*g)->Find("tokenizer.ggml.merges")->value.size(),
              std::string(name) == "tiny-mixtral"
                  ? 1789u
                  : (*g)->Find("tokenizer.ggml.merges")->value.size());
    for (const auto& t : (*g)->tensors()) {
      auto d = (*g)->DequantizeTensor(t.name);
      ASSERT_TRUE(d.ok()) << t.name;
      for (float v : *d) ASSERT_TRUE(std::isfinite(v)) << t.name;
    }
  }
}

}  // namespace
}  // namespace moeq
