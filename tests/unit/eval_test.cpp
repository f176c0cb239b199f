// Evaluation: window planning per protocol, perplexity against a direct computation, KL of a
// model with itself, and the CI gate.
#include "moeq/eval/eval.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "moeq-eval/eval_command.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/tokenizer/tokenizer.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

TEST(PlanWindows, NonOverlappingDropsTheRemainder) {
  PerplexityProtocol p;
  p.context = 512;
  auto w = PlanWindows(311070, p);
  EXPECT_EQ(w.size(), 607u);  // the bundled model card's count for valid.txt
  EXPECT_EQ(w.back().start, 606 * 512);
  p.stride = 256;
  EXPECT_EQ(PlanWindows(1024, p).size(), 3u);
  p.max_chunks = 2;
  EXPECT_EQ(PlanWindows(1024, p).size(), 2u);
  EXPECT_TRUE(PlanWindows(100, PerplexityProtocol{}).empty());
}

TEST(PlanWindows, SamplingIsSeededSortedAndWithoutReplacement) {
  PerplexityProtocol p;
  p.context = 10;
  p.samples = 5;
  p.seed = 42;
  auto a = PlanWindows(1000, p), b = PlanWindows(1000, p);
  ASSERT_EQ(a.size(), 5u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].start, b[i].start);
    if (i) {
      EXPECT_LT(a[i - 1].start, a[i].start);
    }
    EXPECT_EQ(a[i].start % 10, 0);
  }
  p.seed = 43;
  auto c = PlanWindows(1000, p);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) differs |= a[i].start != c[i].start;
  EXPECT_TRUE(differs);
}

TEST(ProtocolPreset, KnowsThePresets) {
  ModelConfig cfg;
  cfg.max_position_embeddings = 1024;
  auto mint = ProtocolPreset("mint", cfg, -1);
  ASSERT_TRUE(mint.ok());
  EXPECT_EQ(mint->context, 1024);
  EXPECT_EQ(mint->samples, 256);
  EXPECT_EQ(mint->seed, 42u);
  auto llama = ProtocolPreset("llama", cfg, 7);
  EXPECT_EQ(llama->scored, ScoredTokens::kSecondHalf);
  EXPECT_EQ(llama->bos_id, 7);
  EXPECT_FALSE(ProtocolPreset("wiki", cfg, -1).ok());
}

class EvalOnSynthetic : public ::testing::Test {
 protected:
  void SetUp() override {
    test::SyntheticCheckpointOptions so;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir_.path(), so).ok());
    auto c = Checkpoint::Open(dir_.path());
    ASSERT_TRUE(c.ok());
    ckpt_ = std::move(*c);
    auto e = Engine::Load(*ckpt_);
    ASSERT_TRUE(e.ok());
    engine_ = std::move(*e);
    ids_.resize(200);
    for (size_t i = 0; i < ids_.size(); ++i) ids_[i] = static_cast<int32_t>((i * 97 + 3) % 256);
  }
  test::ScopedTempDir dir_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> ids_;
};

TEST_F(EvalOnSynthetic, PerplexityEqualsDirectComputation) {
  for (ScoredTokens scored : {ScoredTokens::kAllButFirst, ScoredTokens::kSecondHalf}) {
    EvalOptions eo;
    eo.progress = false;
    eo.protocol.context = 64;
    eo.protocol.scored = scored;
    auto r = Evaluate(*engine_, ids_, eo);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    double nll = 0;
    int64_t n = 0;
    for (int64_t w = 0; w < 3; ++w) {
      std::vector<int32_t> win(ids_.begin() + w * 64, ids_.begin() + (w + 1) * 64);
      std::vector<float> logits;
      ASSERT_TRUE(engine_->Forward(win, &logits).ok());
      const int64_t V = engine_->vocab_size();
      for (int64_t i = scored == ScoredTokens::kSecondHalf ? 32 : 0; i + 1 < 64; ++i) {
        double mx = -1e30, s = 0;
        for (int64_t v = 0; v < V; ++v) mx = std::max<double>(mx, logits[i * V + v]);
        for (int64_t v = 0; v < V; ++v) s += std::exp(logits[i * V + v] - mx);
        nll += -(logits[i * V + win[i + 1]] - mx - std::log(s));
        ++n;
      }
    }
    EXPECT_EQ(r->tokens_scored, n);
    EXPECT_EQ(r->windows, 3);
    EXPECT_NEAR(r->ppl, std::exp(nll / n), 1e-9 * r->ppl);
    EXPECT_GT(r->nll_stderr, 0);
  }
}

TEST_F(EvalOnSynthetic, SelfReferenceHasZeroKlAndFullAgreement) {
  EvalOptions eo;
  eo.progress = false;
  eo.protocol.context = 64;
  auto r = Evaluate(*engine_, ids_, eo, engine_.get());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->has_reference);
  EXPECT_LT(r->kl_mean, 1e-12);
  EXPECT_EQ(r->top1_agreement, 1.0);
  EXPECT_DOUBLE_EQ(r->reference_ppl, r->ppl);
}

TEST_F(EvalOnSynthetic, EvalJsonRecordsTheModelSize) {
  test::ScopedTempDir work;  // outputs may not go inside the model directory
  const std::string tokens = work.Join("ids.bin");
  ASSERT_TRUE(WriteTokenIds(tokens, ids_).ok());
  EvalCommandOptions o;
  o.model_dir = dir_.path();
  o.input.tokens_file = tokens;
  o.context = 64;
  o.output = work.Join("eval.json");
  ArtifactContext ctx;
  ctx.progress = false;
  const Status st = RunEval(o, ctx);
  ASSERT_TRUE(st.ok()) << st.message();
  auto j = nlohmann::json::parse(*ReadFile(o.output));
  uint64_t bytes = 0;
  int64_t params = 0;
  for (const auto& t : ckpt_->tensors()) {
    bytes += t.info.nbytes();
    params += t.info.numel();
  }
  EXPECT_EQ(j["model_size"]["bytes"].get<uint64_t>(), bytes);
  EXPECT_EQ(j["model_size"]["parameters"].get<int64_t>(), params);
  EXPECT_DOUBLE_EQ(j["model_size"]["bpw"].get<double>(), 16.0);  // every tensor is BF16
}

TEST(CheckGate, FailsWithBothNumbersAndRejectsIncomparableBaselines) {
  EvalResult r;
  r.ppl = 10.5;
  artifacts::EvalArtifact run;
  run.protocol = {{"name", "reference"}};
  run.text_sha256 = "abc";
  artifacts::EvalArtifact base = run;
  base.ppl = 10.0;
  GateOptions g;
  g.max_ppl_delta_pct = 2.0;
  Status s = CheckGate(r, run, &base, g);
  EXPECT_EQ(s.code(), StatusCode::kGateFailed);
  EXPECT_NE(s.message().find("10.5000"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("+5.000%"), std::string::npos) << s.message();
  g.max_ppl_delta_pct = 6.0;
  EXPECT_TRUE(CheckGate(r, run, &base, g).ok());
  base.text_sha256 = "other";
  EXPECT_EQ(CheckGate(r, run, &base, g).code(), StatusCode::kInvalidArgument);
  base.text_sha256 = "abc";
  base.protocol["name"] = "mint";
  EXPECT_EQ(CheckGate(r, run, &base, g).code(), StatusCode::kInvalidArgument);
  GateOptions k;
  k.max_kl = 0.01;
  EXPECT_EQ(CheckGate(r, run, nullptr, k).code(), StatusCode::kInvalidArgument);
  r.has_reference = true;
  r.kl_mean = 0.02;
  EXPECT_EQ(CheckGate(r, run, nullptr, k).code(), StatusCode::kGateFailed);
  r.kl_mean = 0.005;
  EXPECT_TRUE(CheckGate(r, run, nullptr, k).ok());
}

}  // namespace
}  // namespace moeq
