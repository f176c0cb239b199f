// moeq-profile's Gram matrices (--gram) against a brute-force recomputation from the raw
// per-token inputs, identical for any thread count; the written statistics (shrinkage of
// few-token experts toward the layer's pooled statistics) read back through InputStatsFile.
#include "moeq/quant/input_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/profile/routing_profile.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

// Raw inputs of one window (forward run on one thread).
class RawInputs : public ForwardObserver {
 public:
  void OnAttentionInput(int layer, int64_t tokens, std::span<const float> h) override {
    auto& v = attn[layer];
    v.insert(v.end(), h.begin(), h.begin() + tokens * (static_cast<int64_t>(h.size()) / tokens));
  }
  void OnRouting(int layer, int64_t tokens, int top_k, std::span<const int32_t> experts,
                 std::span<const float>, std::span<const float>,
                 std::span<const float> hidden) override {
    const int64_t H = static_cast<int64_t>(hidden.size()) / tokens;
    for (int64_t t = 0; t < tokens; ++t)
      for (int j = 0; j < top_k; ++j) {
        auto& v = expert_in[{layer, experts[static_cast<size_t>(t * top_k + j)]}];
        v.insert(v.end(), hidden.begin() + t * H, hidden.begin() + (t + 1) * H);
      }
  }
  void OnExpertActivation(int layer, int expert, int64_t, std::span<const float> a) override {
    auto& v = expert_act[{layer, expert}];
    v.insert(v.end(), a.begin(), a.end());
  }
  std::map<int, std::vector<float>> attn;
  std::map<std::pair<int, int>, std::vector<float>> expert_in, expert_act;
};

std::vector<double> Gram(const std::vector<float>& x, int64_t width) {
  std::vector<double> g(static_cast<size_t>(width * width), 0.0);
  const int64_t n = static_cast<int64_t>(x.size()) / width;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < width; ++i)
      for (int64_t j = 0; j < width; ++j)
        g[static_cast<size_t>(i * width + j)] +=
            static_cast<double>(x[static_cast<size_t>(t * width + i)]) *
            x[static_cast<size_t>(t * width + j)];
  return g;
}

void ExpectNear(const std::vector<double>& a, const double* b, double rel,
                const std::string& what) {
  double scale = 0;
  for (double v : a) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], rel * scale + 1e-12) << what << " element " << i;
}

class InputStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    so_.experts = 8;
    so_.top_k = 2;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir_.path() + "/m", so_).ok());
    auto c = Checkpoint::Open(dir_.path() + "/m");
    ASSERT_TRUE(c.ok());
    ckpt_ = std::move(*c);
    auto e = Engine::Load(*ckpt_);
    ASSERT_TRUE(e.ok());
    engine_ = std::move(*e);
    tokens_.resize(32 * 3);
    for (size_t i = 0; i < tokens_.size(); ++i)
      tokens_[i] = static_cast<int32_t>((i * 37 + 11) % 256);
    po_.context = 32;
    po_.progress = false;
    po_.activations = true;
    po_.gram = true;
  }
  test::ScopedTempDir dir_;
  test::SyntheticCheckpointOptions so_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> tokens_;
  ProfileOptions po_;
};

TEST_F(InputStatsTest, GramMatchesBruteForceAndThreadCount) {
  po_.threads = 1;
  auto p1 = ProfileRouting(*engine_, tokens_, po_);
  po_.threads = 3;
  auto p3 = ProfileRouting(*engine_, tokens_, po_);
  ASSERT_TRUE(p1.ok() && p3.ok()) << p1.status().ToString();
  RawInputs raw;
  for (int w = 0; w < 3; ++w) {
    std::vector<float> logits;
    ASSERT_TRUE(
        engine_
            ->Forward(std::span(tokens_).subspan(static_cast<size_t>(w * 32), 32), &logits, &raw, 1)
            .ok());
  }
  const int64_t H = ckpt_->config().hidden_size, F = ckpt_->config().moe_intermediate_size;
  for (size_t l = 0; l < p1->layers.size(); ++l) {
    const LayerProfile& lp = p1->layers[l];
    EXPECT_EQ(lp.attn_in_gram, p3->layers[l].attn_in_gram);
    EXPECT_EQ(lp.expert_in_gram, p3->layers[l].expert_in_gram);
    EXPECT_EQ(lp.expert_act_gram, p3->layers[l].expert_act_gram);
    ExpectNear(Gram(raw.attn[static_cast<int>(l)], H), lp.attn_in_gram.data(), 1e-9, "attn");
    if (!lp.moe) continue;
    for (int e = 0; e < so_.experts; ++e) {
      const auto in = raw.expert_in[{static_cast<int>(l), e}];
      ASSERT_EQ(static_cast<int64_t>(in.size()) / H, lp.experts[static_cast<size_t>(e)].count);
      ExpectNear(Gram(in, H), lp.expert_in_gram.data() + e * H * H, 1e-9, "expert in");
      ExpectNear(Gram(raw.expert_act[{static_cast<int>(l), e}], F),
                 lp.expert_act_gram.data() + e * F * F, 1e-9, "expert act");
      for (int64_t i = 0; i < H; ++i) {
        EXPECT_NEAR(lp.expert_in_gram[static_cast<size_t>(e * H * H + i * H + i)],
                    lp.expert_in_sq[static_cast<size_t>(e * H + i)],
                    1e-9 * (1 + lp.expert_in_sq[static_cast<size_t>(e * H + i)]));
      }
    }
  }
}

TEST_F(InputStatsTest, WrittenStatisticsAreShrunkTowardThePooledOnes) {
  po_.threads = 2;
  auto p = ProfileRouting(*engine_, tokens_, po_);
  ASSERT_TRUE(p.ok());
  const std::string path = dir_.path() + "/act.safetensors";
  const double k = 16;
  ASSERT_TRUE(WriteActivationStats(path, *p, ckpt_->adapter(), {k}).ok());
  auto f = InputStatsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE((*f)->has_gram());
  const int64_t H = ckpt_->config().hidden_size, F = ckpt_->config().moe_intermediate_size;
  const LayerProfile& lp = p->layers[1];
  ASSERT_TRUE(lp.moe);
  // Pooled down-projection input of the layer.
  std::vector<double> act_pool(static_cast<size_t>(F * F), 0.0);
  int64_t act_n = 0;
  for (int e = 0; e < so_.experts; ++e) {
    act_n += lp.experts[static_cast<size_t>(e)].count;
    for (int64_t i = 0; i < F * F; ++i)
      act_pool[static_cast<size_t>(i)] += lp.expert_act_gram[static_cast<size_t>(e * F * F + i)];
  }
  for (int e = 0; e < so_.experts; ++e) {
    const double n = static_cast<double>(lp.experts[static_cast<size_t>(e)].count);
    const std::string up = ckpt_->adapter().Name({1, e, TensorRole::kExpertUp});
    auto s = (*f)->Get(up, H);
    ASSERT_TRUE(s.ok() && s->has_value()) << up;
    EXPECT_EQ((*s)->count, lp.experts[static_cast<size_t>(e)].count);
    ASSERT_TRUE((*s)->has_gram());
    for (int64_t i = 0; i < H * H; i += 7) {
      const double want =
          (lp.expert_in_gram[static_cast<size_t>(e * H * H + i)] +
           k * lp.mlp_in_gram[static_cast<size_t>(i)] / static_cast<double>(lp.tokens)) /
          (n + k);
      ASSERT_NEAR((*s)->gram[static_cast<size_t>(i)], want, 1e-6 * (1 + std::fabs(want)));
    }
    for (int64_t i = 0; i < H; ++i) {
      const double want =
          (lp.expert_in_sq[static_cast<size_t>(e * H + i)] +
           k * lp.mlp_in_sq[static_cast<size_t>(i)] / static_cast<double>(lp.tokens)) /
          (n + k);
      ASSERT_NEAR((*s)->diag[static_cast<size_t>(i)], want, 1e-6 * (1 + want));
    }
    auto d = (*f)->Get(ckpt_->adapter().Name({1, e, TensorRole::kExpertDown}), F);
    ASSERT_TRUE(d.ok() && d->has_value());
    for (int64_t i = 0; i < F * F; i += 5) {
      const double want = (lp.expert_act_gram[static_cast<size_t>(e * F * F + i)] +
                           k * act_pool[static_cast<size_t>(i)] / static_cast<double>(act_n)) /
                          (n + k);
      ASSERT_NEAR((*d)->gram[static_cast<size_t>(i)], want, 1e-6 * (1 + std::fabs(want)));
    }
  }
  // Attention inputs: all tokens, not shrunk; k_proj shares q_proj's Gram.
  auto q = (*f)->Get(ckpt_->adapter().Name({0, -1, TensorRole::kAttnK}), H);
  ASSERT_TRUE(q.ok() && q->has_value());
  EXPECT_NEAR((*q)->gram[0],
              p->layers[0].attn_in_gram[0] / static_cast<double>(p->layers[0].tokens),
              1e-6 * (1 + (*q)->gram[0]));
  // Wrong width or an unobserved input: nothing.
  auto none = (*f)->Get(ckpt_->adapter().Name({0, -1, TensorRole::kAttnO}), H);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto bad = InputStatsFile::Open(dir_.path() + "/m/model.safetensors");
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace moeq
