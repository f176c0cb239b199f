// Engine: reference logits of the bundled/shared models, thread-count determinism, and every
// architecture family against a naive per-token implementation written independently here.
#include "moeq/engine/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <ostream>

#include "moeq/base/build_info.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/formats/safetensors.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

std::unique_ptr<Engine> LoadEngine(const std::string& dir, int threads = 0) {
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  if (!ckpt.ok()) return nullptr;
  auto e = Engine::Load(**ckpt, {threads});
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

// Max |a-b| between our logits and reference_logits.safetensors for both stored sequences.
void CheckReferenceLogits(const std::string& dir, double tolerance) {
  auto engine = LoadEngine(dir);
  ASSERT_TRUE(engine);
  auto ref = SafetensorsFile::Open(dir + "/reference_logits.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  for (int s = 0; s < 2; ++s) {
    auto ids_view = (*ref)->View("input_ids_" + std::to_string(s));
    auto logits_view = (*ref)->View("logits_" + std::to_string(s));
    ASSERT_TRUE(ids_view.ok() && logits_view.ok());
    auto ids_f = ToF32(*ids_view);
    std::vector<int32_t> ids(ids_f->begin(), ids_f->end());
    auto want = ToF32(*logits_view);
    std::vector<float> got;
    ASSERT_TRUE(engine->Forward(ids, &got).ok());
    ASSERT_EQ(got.size(), want->size());
    double max_diff = 0;
    for (size_t i = 0; i < got.size(); ++i)
      max_diff = std::max(max_diff, std::abs(double(got[i]) - (*want)[i]));
    std::printf("%s sequence %d (%zu tokens): max |logit - reference| = %.3g\n", dir.c_str(), s,
                ids.size(), max_diff);
    EXPECT_LT(max_diff, tolerance);
  }
}

TEST(Engine, BundledModelMatchesReferenceLogits) {
  CheckReferenceLogits(std::string(kSourceDir) + "/models/tiny-qwen3moe", 2e-3);
}

TEST(Engine, SharedModelsMatchReferenceLogits) {
  const std::string shared = std::string(kSourceDir) + "/../shared/models";
  if (!std::filesystem::exists(shared))
    GTEST_SKIP() << "../shared/models is absent: skipping the shared reference models";
  for (const auto& entry : std::filesystem::directory_iterator(shared)) {
    if (std::filesystem::exists(entry.path() / "reference_logits.safetensors")) {
      CheckReferenceLogits(entry.path().string(), 2e-3);
    }
  }
}

TEST(Engine, LogitsAreIdenticalForOneAndTwoThreads) {
  const std::string dir = std::string(kSourceDir) + "/models/tiny-qwen3moe";
  auto e1 = LoadEngine(dir, 1), e2 = LoadEngine(dir, 2);
  ASSERT_TRUE(e1 && e2);
  std::vector<int32_t> ids(300);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919) % 2048);
  std::vector<float> a, b;
  ASSERT_TRUE(e1->Forward(ids, &a).ok());
  ASSERT_TRUE(e2->Forward(ids, &b).ok());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST(Engine, RejectsTokensOutsideTheVocabulary) {
  auto e = LoadEngine(std::string(kSourceDir) + "/models/tiny-qwen3moe");
  ASSERT_TRUE(e);
  std::vector<float> out;
  std::vector<int32_t> ids = {1, 2, 5000};
  Status s = e->Forward(ids, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("5000"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// A naive reference: per token, explicit loops, reading weights by their HF names.

struct Naive {
  const Checkpoint& c;
  const ModelConfig& cfg;
  std::vector<float> W(const std::string& name) const {
    auto v = c.View(name);
    EXPECT_TRUE(v.ok()) << name;
    return *ToF32(*v);
  }
  bool Has(const std::string& name) const { return c.Find(name) != nullptr; }
  static std::vector<float> MatVec(const std::vector<float>& w, const std::vector<float>& x,
                                   size_t out) {
    std::vector<float> y(out, 0.0f);
    const size_t in = x.size();
    for (size_t o = 0; o < out; ++o) {
      double s = 0;
      for (size_t i = 0; i < in; ++i) s += double(w[o * in + i]) * x[i];
      y[o] = float(s);
    }
    return y;
  }
  std::vector<float> Norm(std::vector<float> x, const std::vector<float>& w) const {
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double inv = 1.0 / std::sqrt(ss / x.size() + cfg.rms_norm_eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(w[i] * (x[i] * inv));
    return x;
  }
  std::vector<float> Mlp(const std::string& p, const std::vector<float>& x, const char* g,
                         const char* u, const char* d) const {
    auto gw = W(p + g), uw = W(p + u), dw = W(p + d);
    const size_t ff = gw.size() / x.size();
    auto a = MatVec(gw, x, ff), b = MatVec(uw, x, ff);
    for (size_t i = 0; i < ff; ++i) a[i] = a[i] / (1 + std::exp(-a[i])) * b[i];
    return MatVec(dw, a, x.size());
  }
  // Returns logits [T, vocab].
  std::vector<float> Run(const std::vector<int32_t>& ids) const {
    const size_t H = cfg.hidden_size, nh = cfg.num_heads, nkv = cfg.num_kv_heads, hd = cfg.head_dim,
                 T = ids.size();
    const bool mixtral = cfg.model_type == "mixtral";
    auto emb = W("model.embed_tokens.weight");
    std::vector<std::vector<float>> x(T);
    for (size_t t = 0; t < T; ++t)
      x[t].assign(emb.begin() + ids[t] * H, emb.begin() + (ids[t] + 1) * H);
    for (int64_t l = 0; l < cfg.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      auto in_norm = W(p + "input_layernorm.weight");
      std::vector<std::vector<float>> q(T), k(T), v(T);
      for (size_t t = 0; t < T; ++t) {
        auto h = Norm(x[t], in_norm);
        q[t] = MatVec(W(p + "self_attn.q_proj.weight"), h, nh * hd);
        k[t] = MatVec(W(p + "self_attn.k_proj.weight"), h, nkv * hd);
        v[t] = MatVec(W(p + "self_attn.v_proj.weight"), h, nkv * hd);
        if (Has(p + "self_attn.q_proj.bias")) {
          auto qb = W(p + "self_attn.q_proj.bias"), kb = W(p + "self_attn.k_proj.bias"),
               vb = W(p + "self_attn.v_proj.bias");
          for (size_t i = 0; i < q[t].size(); ++i) q[t][i] += qb[i];
          for (size_t i = 0; i < k[t].size(); ++i) {
            k[t][i] += kb[i];
            v[t][i] += vb[i];
          }
        }
        if (Has(p + "self_attn.q_norm.weight")) {
          auto qn = W(p + "self_attn.q_norm.weight"), kn = W(p + "self_attn.k_norm.weight");
          if (qn.size() == hd) {
            for (size_t h2 = 0; h2 < nh; ++h2) {
              std::vector<float> s(q[t].begin() + h2 * hd, q[t].begin() + (h2 + 1) * hd);
              s = Norm(s, qn);
              std::copy(s.begin(), s.end(), q[t].begin() + h2 * hd);
            }
            for (size_t h2 = 0; h2 < nkv; ++h2) {
              std::vector<float> s(k[t].begin() + h2 * hd, k[t].begin() + (h2 + 1) * hd);
              s = Norm(s, kn);
              std::copy(s.begin(), s.end(), k[t].begin() + h2 * hd);
            }
          } else {
            q[t] = Norm(q[t], qn);
            k[t] = Norm(k[t], kn);
          }
        }
        auto rope = [&](std::vector<float>& vec, size_t heads) {
          for (size_t h2 = 0; h2 < heads; ++h2) {
            for (size_t i = 0; i < hd / 2; ++i) {
              const double f = double(t) / std::pow(cfg.rope_theta, double(2 * i) / hd);
              const double a = vec[h2 * hd + i], b = vec[h2 * hd + i + hd / 2];
              vec[h2 * hd + i] = float(a * std::cos(f) - b * std::sin(f));
              vec[h2 * hd + i + hd / 2] = float(b * std::cos(f) + a * std::sin(f));
            }
          }
        };
        rope(q[t], nh);
        rope(k[t], nkv);
      }
      auto o_w = W(p + "self_attn.o_proj.weight");
      auto post = W(p + "post_attention_layernorm.weight");
      for (size_t t = 0; t < T; ++t) {
        std::vector<float> att(nh * hd, 0.0f);
        for (size_t h2 = 0; h2 < nh; ++h2) {
          const size_t kh = h2 / (nh / nkv);
          std::vector<double> s(t + 1);
          double mx = -1e300;
          for (size_t j = 0; j <= t; ++j) {
            double d = 0;
            for (size_t i = 0; i < hd; ++i) d += double(q[t][h2 * hd + i]) * k[j][kh * hd + i];
            s[j] = d / std::sqrt(double(hd));
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (auto& e : s) sum += (e = std::exp(e - mx));
          for (size_t j = 0; j <= t; ++j)
            for (size_t i = 0; i < hd; ++i)
              att[h2 * hd + i] += float(s[j] / sum * v[j][kh * hd + i]);
        }
        auto o = MatVec(o_w, att, H);
        for (size_t i = 0; i < H; ++i) x[t][i] += o[i];
      }
      for (size_t t = 0; t < T; ++t) {
        auto h = Norm(x[t], post);
        std::vector<float> out(H, 0.0f);
        const std::string moe = mixtral ? p + "block_sparse_moe." : p + "mlp.";
        if (Has(moe + "gate.weight")) {
          auto r = MatVec(W(moe + "gate.weight"), h, cfg.num_experts);
          double mx = *std::max_element(r.begin(), r.end()), sum = 0;
          std::vector<double> pr(r.size());
          for (size_t e = 0; e < r.size(); ++e) sum += (pr[e] = std::exp(r[e] - mx));
          for (auto& e : pr) e /= sum;
          std::vector<size_t> idx(pr.size());
          std::iota(idx.begin(), idx.end(), 0);
          std::stable_sort(idx.begin(), idx.end(),
                           [&](size_t a, size_t b) { return pr[a] > pr[b]; });
          double ks = 0;
          for (int64_t j = 0; j < cfg.top_k; ++j) ks += pr[idx[j]];
          for (int64_t j = 0; j < cfg.top_k; ++j) {
            const size_t e = idx[j];
            const double w = (cfg.norm_topk_prob || mixtral) ? pr[e] / ks : pr[e];
            auto y = mixtral ? Mlp(moe + "experts." + std::to_string(e) + ".", h, "w1.weight",
                                   "w3.weight", "w2.weight")
                             : Mlp(moe + "experts." + std::to_string(e) + ".", h,
                                   "gate_proj.weight", "up_proj.weight", "down_proj.weight");
            for (size_t i = 0; i < H; ++i) out[i] += float(w * y[i]);
          }
          if (Has(moe + "shared_expert.gate_proj.weight")) {
            auto y = Mlp(moe + "shared_expert.", h, "gate_proj.weight", "up_proj.weight",
                         "down_proj.weight");
            double g = 1;
            if (Has(moe + "shared_expert_gate.weight"))
              g = 1 / (1 + std::exp(-MatVec(W(moe + "shared_expert_gate.weight"), h, 1)[0]));
            for (size_t i = 0; i < H; ++i) out[i] += float(g * y[i]);
          }
        } else {
          out = Mlp(p + "mlp.", h, "gate_proj.weight", "up_proj.weight", "down_proj.weight");
        }
        for (size_t i = 0; i < H; ++i) x[t][i] += out[i];
      }
    }
    auto fn = W("model.norm.weight");
    auto head = Has("lm_head.weight") ? W("lm_head.weight") : emb;
    const size_t vocab = head.size() / H;
    std::vector<float> logits;
    for (size_t t = 0; t < T; ++t) {
      auto y = MatVec(head, Norm(x[t], fn), vocab);
      logits.insert(logits.end(), y.begin(), y.end());
    }
    return logits;
  }
};

struct FamilyCase {
  const char* model_type;
  int shared_experts;
  int dense_layers;
  bool fused;
  bool bias;
};

/// Printed in test names (gtest_discover_tests shows parameter values): a readable label.
void PrintTo(const FamilyCase& c, std::ostream* os) {
  *os << c.model_type << (c.fused ? " fused" : "") << (c.dense_layers ? " dense-first" : "")
      << (c.shared_experts ? " shared" : "");
}

class EngineFamily : public ::testing::TestWithParam<FamilyCase> {};

TEST_P(EngineFamily, MatchesNaiveImplementation) {
  const FamilyCase& fc = GetParam();
  test::ScopedTempDir dir;
  test::SyntheticCheckpointOptions o;
  o.model_type = fc.model_type;
  o.layers = 2;
  o.shared_experts = fc.shared_experts;
  o.dense_layers = fc.dense_layers;
  o.fused_experts = fc.fused;
  o.attention_bias = fc.bias;
  o.seed = 7;
  auto w = test::WriteSyntheticCheckpoint(dir.path(), o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto engine = Engine::Load(**ckpt, {2});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  std::vector<int32_t> ids = {3, 17, 200, 5, 5, 99, 1, 42, 128, 7, 250, 0};
  std::vector<float> got;
  ASSERT_TRUE((*engine)->Forward(ids, &got).ok());
  if (fc.fused) {
    // Fused checkpoints hold the same values: compare with the per-expert layout's naive run.
    test::ScopedTempDir dir2;
    o.fused_experts = false;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir2.path(), o).ok());
    auto c2 = Checkpoint::Open(dir2.path());
    ASSERT_TRUE(c2.ok());
    auto want = Naive{**c2, (*c2)->config()}.Run(ids);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-3) << i;
    return;
  }
  auto want = Naive{**ckpt, (*ckpt)->config()}.Run(ids);
  ASSERT_EQ(got.size(), want.size());
  double max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i)
    max_diff = std::max(max_diff, std::abs(double(got[i]) - want[i]));
  EXPECT_LT(max_diff, 2e-3) << fc.model_type;
}

INSTANTIATE_TEST_SUITE_P(All, EngineFamily,
                         ::testing::Values(FamilyCase{"qwen3_moe", 0, 0, false, false},
                                           FamilyCase{"qwen3_moe", 0, 1, false, false},
                                           FamilyCase{"qwen3_moe", 0, 0, true, false},
                                           FamilyCase{"qwen2_moe", 1, 0, false, true},
                                           FamilyCase{"mixtral", 0, 0, false, false},
                                           FamilyCase{"olmoe", 0, 0, false, false},
                                           FamilyCase{"llama", 0, 0, false, false},
                                           FamilyCase{"qwen2", 0, 0, false, true},
                                           FamilyCase{"qwen3", 0, 0, false, false}),
                         [](const auto& param_info) {
                           return std::string(param_info.param.model_type) +
                                  (param_info.param.fused ? "_fused" : "") +
                                  (param_info.param.dense_layers ? "_dense_first" : "") +
                                  (param_info.param.shared_experts ? "_shared" : "");
                         });

}  // namespace
}  // namespace moeq
