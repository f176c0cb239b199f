// Saved reference logits: KL from a saved file agrees with KL from the live reference model
// (exactly up to float storage with the whole vocabulary; a lower bound with top-k), and files
// from another text are refused.
#include <gtest/gtest.h>

#include <cmath>

#include "moeq/checkpoint/checkpoint.h"
#include "moeq/eval/eval.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

class EvalSavedLogits : public ::testing::Test {
 protected:
  void SetUp() override {
    // The reference: f32 weights; the model: the same weights rounded to bf16 (a small, real KL).
    test::SyntheticCheckpointOptions so;
    so.dtype = DType::kF32;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir_.Join("ref"), so).ok());
    so.dtype = DType::kBF16;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir_.Join("model"), so).ok());
    for (const char* name : {"ref", "model"}) {
      auto c = Checkpoint::Open(dir_.Join(name));
      ASSERT_TRUE(c.ok());
      auto e = Engine::Load(**c);
      ASSERT_TRUE(e.ok());
      (std::string(name) == "ref" ? ref_ : model_) = std::move(*e);
    }
    ids_.resize(200);
    for (size_t i = 0; i < ids_.size(); ++i) ids_[i] = static_cast<int32_t>((i * 97 + 3) % 256);
    eo_.progress = false;
    eo_.protocol.context = 64;
  }
  // Saves the reference's distribution with `top_k` entries, writes and reads it back.
  SavedLogits Save(int64_t top_k) {
    SavedLogits rec;
    EvalOptions eo = eo_;
    eo.record = &rec;
    eo.record_top_k = top_k;
    auto r = Evaluate(*ref_, ids_, eo);
    EXPECT_TRUE(r.ok());
    rec.header = {{"schema", "moeq.reference_logits"}, {"version", 1}};
    const std::string path = dir_.Join("ref" + std::to_string(top_k) + ".safetensors");
    EXPECT_TRUE(WriteSavedLogits(path, rec).ok());
    auto back = ReadSavedLogits(path);
    EXPECT_TRUE(back.ok()) << back.status().ToString();
    return back.ok() ? *back : rec;
  }
  test::ScopedTempDir dir_;
  std::unique_ptr<Engine> ref_, model_;
  std::vector<int32_t> ids_;
  EvalOptions eo_;
};

TEST_F(EvalSavedLogits, WholeVocabularyGivesTheLiveKl) {
  auto live = Evaluate(*model_, ids_, eo_, ref_.get());
  ASSERT_TRUE(live.ok());
  ASSERT_GT(live->kl_mean, 1e-7);  // bf16 rounding makes a real difference
  SavedLogits saved = Save(0);
  EXPECT_EQ(saved.top_k, 256);
  EXPECT_EQ(saved.tokens, 3 * 63);
  EvalOptions eo = eo_;
  eo.saved_reference = &saved;
  auto r = Evaluate(*model_, ids_, eo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->reference_source, "saved_logits");
  std::printf("KL mean live %.9g saved %.9g; p99 %.9g / %.9g; max %.9g / %.9g\n", live->kl_mean,
              r->kl_mean, live->kl_p99, r->kl_p99, live->kl_max, r->kl_max);
  // Documented tolerance (float32 log-probabilities): |ΔKL| <= 1e-6 + 1e-3·KL.
  EXPECT_NEAR(r->kl_mean, live->kl_mean, 1e-6 + 1e-3 * live->kl_mean);
  EXPECT_NEAR(r->kl_p99, live->kl_p99, 1e-6 + 1e-3 * live->kl_p99);
  EXPECT_NEAR(r->kl_max, live->kl_max, 1e-6 + 1e-3 * live->kl_max);
  EXPECT_EQ(r->top1_agreement, live->top1_agreement);
  EXPECT_NEAR(r->reference_ppl, live->reference_ppl, 1e-6 * live->reference_ppl);
  EXPECT_DOUBLE_EQ(r->ppl, live->ppl);
}

TEST_F(EvalSavedLogits, TopKIsALowerBoundCloseToTheLiveKl) {
  auto live = Evaluate(*model_, ids_, eo_, ref_.get());
  ASSERT_TRUE(live.ok());
  SavedLogits saved = Save(32);
  EXPECT_EQ(saved.top_k, 32);
  EXPECT_EQ(saved.ids.size(), saved.tokens * 32u);
  for (int64_t n = 0; n < saved.tokens; ++n) {
    EXPECT_GE(saved.logprobs[n * 32], saved.logprobs[n * 32 + 31]);  // descending
    EXPECT_LT(saved.rest_logprob[n], 0.0f);
  }
  EvalOptions eo = eo_;
  eo.saved_reference = &saved;
  auto r = Evaluate(*model_, ids_, eo);
  ASSERT_TRUE(r.ok());
  std::printf("KL mean live %.9g, from top-32 of 256: %.9g\n", live->kl_mean, r->kl_mean);
  EXPECT_LE(r->kl_mean, live->kl_mean * (1 + 1e-4) + 1e-9);
  EXPECT_GT(r->kl_mean, 0.0);
  EXPECT_EQ(r->top1_agreement, live->top1_agreement);
  EXPECT_NEAR(r->reference_ppl, live->reference_ppl, 1e-6 * live->reference_ppl);
}

TEST_F(EvalSavedLogits, RefusesAnotherTextOrWindowCount) {
  SavedLogits saved = Save(16);
  EvalOptions eo = eo_;
  eo.saved_reference = &saved;
  std::vector<int32_t> other = ids_;
  other[70] = (other[70] + 1) % 256;
  auto r = Evaluate(*model_, other, eo);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("do not match this text"), std::string::npos)
      << r.status().message();
  eo.protocol.max_chunks = 2;
  r = Evaluate(*model_, ids_, eo);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("scored tokens"), std::string::npos) << r.status().message();
  EXPECT_FALSE(ReadSavedLogits(dir_.Join("missing.safetensors")).ok());
}

}  // namespace
}  // namespace moeq
