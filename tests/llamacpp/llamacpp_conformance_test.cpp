// llama.cpp conformance: every GGUF flavour moeq writes is loaded by a real llama.cpp (the
// prebuilt CPU libraries of the npm package node-llama-cpp, pinned in package-lock.json) and by
// moeq's own engine (Checkpoint::Open on the .gguf file), both evaluate the same fixed token
// sequence, and their next-token log-probabilities must agree:
//   mean |Δ log p(next token)| <= kMaxMeanAbsDeltaLogp and top-1 agreement >= kMinTop1,
// tolerances set from measurement (README "llama.cpp conformance"). llama.cpp's tokenizer,
// loaded from moeq's GGUF metadata, must give the ids moeq's tokenizer gives on the bundled
// tokenizer test strings.
//
// Models: synthetic qwen3_moe, qwen2_moe (shared expert) and mixtral checkpoints at hidden 256
// (so every row allows K-quants) with the bundled model's tokenizer. Flavours: uniform legacy
// types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), K-quants (Q2_K..Q6_K), BF16 and a mixed-precision plan
// (different formats per role and layer).
//
// Skips, loudly, when node or tests/llamacpp/node_modules is missing (scripts/install-deps.sh
// and `make llamacpp-deps` install them; .ci/run does).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "moeq-quantize/quantize_command.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/export/quant_plan.h"
#include "moeq/tokenizer/tokenizer.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

// Tolerances, from the measured figures in README.md "llama.cpp conformance" (36 files: mean
// |Δ log p| 0.0013–0.0115, top-1 agreement 91.7–100 %, KL 0.000002–0.00049 nats), with margin
// for llama.cpp's own precision choices (it quantizes activations to 8 bits for quantized dot
// products; the synthetic models' next-token distributions are flat, so a top-1 flip needs
// only a tiny logit difference).
constexpr double kMaxMeanAbsDeltaLogp = 0.03;
constexpr double kMinTop1 = 0.85;
constexpr double kMaxKl = 0.002;

const std::string kLlamaDir = std::string(kSourceDir) + "/tests/llamacpp";
const std::string kTokenizerDir = std::string(kSourceDir) + "/models/tiny-qwen3moe";

std::string Quote(const std::string& s) { return "'" + s + "'"; }

/// Why llama.cpp cannot run here, or "" when it can.
std::string LlamaUnavailable() {
  if (std::system("node --version >/dev/null 2>&1") != 0)
    return "node is not installed (Debian package nodejs)";
  if (!fs::exists(kLlamaDir + "/node_modules/node-llama-cpp/package.json")) {
    return kLlamaDir +
           "/node_modules is missing (run: npm ci --prefix tests/llamacpp, or make llamacpp-deps)";
  }
  return "";
}

#define SKIP_WITHOUT_LLAMA()                                                                     \
  do {                                                                                           \
    const std::string why = LlamaUnavailable();                                                  \
    if (!why.empty()) {                                                                          \
      std::fprintf(stderr, "\n*** llama.cpp conformance test SKIPPED: %s ***\n\n", why.c_str()); \
      GTEST_SKIP() << "llama.cpp conformance SKIPPED: " << why;                                  \
    }                                                                                            \
  } while (0)

struct LlamaOutput {
  std::vector<std::vector<std::pair<int32_t, double>>> positions;  // (id, log p), best first
  std::vector<std::vector<int32_t>> tokenized;
  std::vector<std::vector<int32_t>> tokenized_nfc;  // of the NFC-normalised strings
  std::vector<bool> nfc_changes;                    // NFC(string) != string
};

/// Runs llama.cpp (tests/llamacpp/llamacpp_logprobs.mjs) once on every file of `ggufs`.
Result<std::vector<LlamaOutput>> RunLlama(const std::vector<std::string>& ggufs,
                                          const std::vector<int32_t>& ids,
                                          const std::vector<std::string>& strings,
                                          const std::string& work, std::string* version) {
  const std::string job_path = work + "/job.json", out_path = work + "/llama.json",
                    err_path = work + "/llama.err";
  const nlohmann::json job = {{"models", ggufs}, {"ids", ids}, {"strings", strings}};
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(job_path, job.dump()));
  const std::string cmd = "cd " + Quote(kLlamaDir) + " && node llamacpp_logprobs.mjs " +
                          Quote(job_path) + " > " + Quote(out_path) + " 2> " + Quote(err_path);
  if (std::system(cmd.c_str()) != 0) {
    auto err = ReadFile(err_path);
    return Status::Internal("llama.cpp failed: " + (err.ok() ? *err : std::string("?")));
  }
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(out_path));
  *version = "node-llama-cpp " + j.value("node_llama_cpp", "?") + " (llama.cpp " +
             j.value("llama_cpp", "?") + ")";
  std::vector<LlamaOutput> all;
  for (const auto& m : j.at("models")) {
    LlamaOutput out;
    for (const auto& p : m.at("positions")) {
      std::vector<std::pair<int32_t, double>> top;
      for (const auto& e : p.at("top"))
        top.emplace_back(e.at(0).get<int32_t>(), e.at(1).get<double>());
      out.positions.push_back(std::move(top));
    }
    for (const auto& t : m.at("tokenized")) out.tokenized.push_back(t.get<std::vector<int32_t>>());
    for (const auto& t : m.at("tokenized_nfc"))
      out.tokenized_nfc.push_back(t.get<std::vector<int32_t>>());
    for (const auto& t : m.at("nfc_changes")) out.nfc_changes.push_back(t.get<bool>());
    all.push_back(std::move(out));
  }
  if (all.size() != ggufs.size())
    return Status::Internal("llama.cpp returned " + std::to_string(all.size()) + " results");
  return all;
}

/// moeq's engine on the GGUF file: log-softmax rows [tokens, vocab].
Result<std::vector<std::vector<double>>> RunMoeq(const std::string& gguf,
                                                 const std::vector<int32_t>& ids) {
  MOEQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(gguf));
  MOEQ_ASSIGN_OR_RETURN(auto engine, Engine::Load(*ckpt));
  std::vector<float> logits;
  MOEQ_RETURN_IF_ERROR(engine->Forward(ids, &logits));
  const int64_t vocab = engine->vocab_size();
  std::vector<std::vector<double>> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* row = logits.data() + static_cast<int64_t>(i) * vocab;
    double mx = -1e300;
    for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, static_cast<double>(row[v]));
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
    std::vector<double> lp(static_cast<size_t>(vocab));
    for (int64_t v = 0; v < vocab; ++v) lp[static_cast<size_t>(v)] = row[v] - mx - std::log(sum);
    out.push_back(std::move(lp));
  }
  return out;
}

struct Agreement {
  double mean_abs_dlogp = 0;  // over positions, of the next token's log p
  double max_abs_dlogp = 0;
  double top1 = 0;  // fraction of positions with the same argmax
  double kl = 0;    // mean KL(moeq || llama.cpp) over positions, nats
};

Agreement Compare(const std::vector<std::vector<double>>& moeq, const LlamaOutput& llama,
                  const std::vector<int32_t>& ids) {
  Agreement a;
  const size_t n = ids.size() - 1;  // the last position has no next token
  int same = 0;
  for (size_t i = 0; i < n; ++i) {
    std::map<int32_t, double> l;
    for (const auto& [id, lp] : llama.positions[i]) l[id] = lp;
    const int32_t next = ids[i + 1];
    const double lm = moeq[i][static_cast<size_t>(next)];
    const double ll = l.count(next) ? l[next] : -1e9;
    const double d = std::abs(lm - ll);
    a.mean_abs_dlogp += d;
    a.max_abs_dlogp = std::max(a.max_abs_dlogp, d);
    const auto best = std::max_element(moeq[i].begin(), moeq[i].end()) - moeq[i].begin();
    same += !llama.positions[i].empty() && llama.positions[i][0].first == best;
    double kl = 0;
    for (size_t v = 0; v < moeq[i].size(); ++v) {
      const double pl = l.count(static_cast<int32_t>(v)) ? l[static_cast<int32_t>(v)] : -1e9;
      kl += std::exp(moeq[i][v]) * (moeq[i][v] - std::max(pl, -50.0));
    }
    a.kl += kl;
  }
  a.mean_abs_dlogp /= static_cast<double>(n);
  a.kl /= static_cast<double>(n);
  a.top1 = static_cast<double>(same) / static_cast<double>(n);
  return a;
}

std::vector<std::string> TokenizerTestStrings() {
  std::vector<std::string> out;
  auto j = ReadJsonFile(kTokenizerDir + "/tokenizer_tests.json");
  if (!j.ok()) return out;
  for (const auto& t : (*j)["tests"]) out.push_back(t.at("text").get<std::string>());
  return out;
}

/// A synthetic checkpoint of `family` at hidden 256 with the bundled tokenizer.
Result<std::string> MakeModel(const std::string& family, const std::string& root) {
  test::SyntheticCheckpointOptions o;
  o.model_type = family;
  o.layers = 2;
  o.hidden = 256;
  o.heads = 4;
  o.kv_heads = 2;
  o.experts = 4;
  o.top_k = 2;
  o.moe_ff = 256;
  o.dense_ff = 512;
  o.vocab = 2048;
  o.shared_experts = family == "qwen2_moe" ? 1 : 0;
  o.tokenizer = false;
  o.seed = 7;
  const std::string dir = root + "/" + family;
  MOEQ_RETURN_IF_ERROR(test::WriteSyntheticCheckpoint(dir, o).status());
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    std::error_code ec;
    fs::copy_file(kTokenizerDir + "/" + f, dir + "/" + f, ec);
    if (ec) return Status::Io(std::string(f) + ": " + ec.message());
  }
  return dir;
}

/// A mixed-precision plan: attention 8-bit, experts 4-bit (layer 0) and 3-bit (layer 1),
/// shared expert 6-bit, embeddings 5-bit (g32), lm_head 6-bit.
QuantPlan MixedPlan(const Checkpoint& ckpt) {
  QuantPlan plan;
  plan.source = "mixed (llama.cpp conformance test)";
  for (const auto& t : ckpt.tensors()) {
    if (!IsQuantizableRole(t.id.role) || t.id.role == TensorRole::kRouter ||
        t.id.role == TensorRole::kSharedExpertGate) {
      continue;
    }
    const char* f = "q8g64";
    if (IsExpertRole(t.id.role))
      f = t.id.layer == 0 ? "q4g64" : "q3g64";
    else if (IsSharedExpertRole(t.id.role))
      f = "q6g64";
    else if (t.id.role == TensorRole::kEmbedding)
      f = "q5g32";
    else if (t.id.role == TensorRole::kLmHead)
      f = "q6g64";
    plan.formats[t.info.name] = quant::FindFormat(f);
  }
  return plan;
}

class LlamaCppConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaCppConformance, EveryGgufFlavourAgreesWithMoeqEngine) {
  SKIP_WITHOUT_LLAMA();
  const std::string family = GetParam();
  test::ScopedTempDir tmp("moeq-llamacpp");
  auto model = MakeModel(family, tmp.path());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto ckpt = Checkpoint::Open(*model);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();

  auto tok = Tokenizer::Load(*model + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const std::vector<std::string> strings = TokenizerTestStrings();
  ASSERT_FALSE(strings.empty()) << "no tokenizer test strings in " << kTokenizerDir;
  auto seq = (*tok)->Encode(
      "In the beginning God created the heaven and the earth. And the earth was without form, "
      "and void; and darkness was upon the face of the deep. int main(void) { return 0; }");
  ASSERT_TRUE(seq.ok());
  std::vector<int32_t> ids = *seq;
  ASSERT_GE(ids.size(), 32u);

  struct Flavour {
    std::string name;
    std::string gguf_type;  // --gguf-type
    int uniform_bits = 0;
    bool mixed = false;
  };
  const std::vector<Flavour> flavours = {
      {"Q4_0", "q4_0"}, {"Q4_1", "q4_1"}, {"Q5_0", "q5_0"}, {"Q5_1", "q5_1"},
      {"Q8_0", "q8_0"}, {"Q2_K", "q2_K"}, {"Q3_K", "q3_K"}, {"Q4_K", "q4_K"},
      {"Q5_K", "q5_K"}, {"Q6_K", "q6_K"}, {"BF16", "", 16}, {"mixed", "", 0, true},
  };
  ArtifactContext ctx;
  ctx.tool = "moeq-quantize";
  ctx.progress = false;
  std::vector<std::string> ggufs;
  for (const Flavour& f : flavours) {
    SCOPED_TRACE(family + " " + f.name);
    const std::string gguf = tmp.Join(family + "-" + f.name + ".gguf");
    if (f.mixed) {
      GgufWriteOptions wo;
      wo.progress = false;
      wo.require_tokenizer = true;
      ASSERT_TRUE(WriteGguf(**ckpt, MixedPlan(**ckpt), gguf, wo).ok());
    } else {
      QuantizeCommandOptions o;
      o.model_dir = *model;
      o.output = gguf;
      o.format = "gguf";
      o.gguf_type = f.gguf_type;
      o.uniform_bits = f.uniform_bits;
      Status s = RunQuantize(o, ctx);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    ggufs.push_back(gguf);
  }
  std::string version;
  auto llama = RunLlama(ggufs, ids, strings, tmp.path(), &version);
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  std::printf("llamacpp-conformance %s: %s, %zu tokens\n", family.c_str(), version.c_str(),
              ids.size());

  for (size_t k = 0; k < flavours.size(); ++k) {
    const Flavour& f = flavours[k];
    const std::string& gguf = ggufs[k];
    SCOPED_TRACE(family + " " + f.name);
    // The file holds the flavour's type.
    auto g = GgufFile::Open(gguf);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    std::map<std::string, int> types;
    for (const auto& t : (*g)->tensors()) ++types[GgmlTypeName(t.type)];
    if (!f.gguf_type.empty()) {
      EXPECT_GT(types[std::string(FindGgmlTypeByName(f.gguf_type)->name)], 0);
    }

    auto moeq_lp = RunMoeq(gguf, ids);
    ASSERT_TRUE(moeq_lp.ok()) << moeq_lp.status().ToString();
    const LlamaOutput& out = (*llama)[k];
    ASSERT_EQ(out.positions.size(), ids.size());
    const Agreement a = Compare(*moeq_lp, out, ids);
    std::string type_list;
    for (const auto& [name, n] : types)
      type_list += (type_list.empty() ? "" : " ") + name + "x" + std::to_string(n);
    std::printf(
        "llamacpp-conformance %-10s %-6s bytes %9ju  mean|dlogp| %.5f  max|dlogp| %.5f  top1 "
        "%5.1f%%  KL %.6f  [%s]\n",
        family.c_str(), f.name.c_str(), static_cast<uintmax_t>(fs::file_size(gguf)),
        a.mean_abs_dlogp, a.max_abs_dlogp, 100.0 * a.top1, a.kl, type_list.c_str());
    EXPECT_LE(a.mean_abs_dlogp, kMaxMeanAbsDeltaLogp);
    EXPECT_GE(a.top1, kMinTop1);
    EXPECT_LE(a.kl, kMaxKl);

    // Tokenizer: llama.cpp's, loaded from this GGUF, and moeq's own read back from the GGUF
    // metadata give the ids of moeq's tokenizer.json tokenizer.
    ASSERT_EQ(out.tokenized.size(), strings.size());
    if (k == 0) {
      auto gguf_tok = Tokenizer::Load(gguf);
      ASSERT_TRUE(gguf_tok.ok()) << gguf_tok.status().ToString();
      int nfc_only = 0;
      for (size_t i = 0; i < strings.size(); ++i) {
        auto mine = (*tok)->Encode(strings[i]);
        ASSERT_TRUE(mine.ok());
        if (out.nfc_changes.at(i) && out.tokenized[i] != *mine) {
          // llama.cpp does not run tokenizer.json's NFC normalizer (the Qwen2 tokenizer has
          // one): on non-NFC text it must agree once the text is normalised.
          EXPECT_EQ(out.tokenized_nfc[i], *mine)
              << "llama.cpp tokenizer differs on NFC(test string " << i << ")";
          ++nfc_only;
          continue;
        }
        EXPECT_EQ(out.tokenized[i], *mine)
            << "llama.cpp tokenizer differs on test string " << i << ": " << strings[i];
        auto from_gguf = (*gguf_tok)->Encode(strings[i]);
        ASSERT_TRUE(from_gguf.ok());
        EXPECT_EQ(*from_gguf, *mine)
            << "moeq's tokenizer read from the GGUF differs on test string " << i;
      }
      std::printf(
          "llamacpp-conformance %s tokenizer: %zu strings, llama.cpp ids == moeq ids on %zu, on "
          "the NFC form "
          "only for %d (llama.cpp does not NFC-normalise)\n",
          family.c_str(), strings.size(), strings.size() - static_cast<size_t>(nfc_only), nfc_only);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, LlamaCppConformance,
                         ::testing::Values("qwen3_moe", "qwen2_moe", "mixtral"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace moeq
