// Engine: loads a checkpoint's weights as float32 and runs the decoder forward pass.
#include "moeq/engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <spdlog/spdlog.h>

#include "engine/ops.h"
#include "moeq/parallel.h"

namespace moeq {

using engine::Linear;

namespace {

struct Mlp {
  Linear gate, up, down;
  bool empty() const { return gate.empty(); }
};

struct Layer {
  std::vector<float> input_norm, post_attn_norm, q_norm, k_norm;
  Linear q, k, v, o;
  bool moe = false;
  Linear router;
  std::vector<Mlp> experts;
  Mlp shared;
  Linear shared_gate;  // [1, hidden] sigmoid gate of the shared expert (qwen2_moe)
  Mlp dense;
};

// Where a loaded tensor goes.
std::vector<float>* VectorSlot(Layer& l, TensorRole role) {
  switch (role) {
    case TensorRole::kInputNorm: return &l.input_norm;
    case TensorRole::kPostAttnNorm: return &l.post_attn_norm;
    case TensorRole::kAttnQNorm: return &l.q_norm;
    case TensorRole::kAttnKNorm: return &l.k_norm;
    case TensorRole::kAttnQBias: return &l.q.b;
    case TensorRole::kAttnKBias: return &l.k.b;
    case TensorRole::kAttnVBias: return &l.v.b;
    case TensorRole::kAttnOBias: return &l.o.b;
    default: return nullptr;
  }
}

Linear* LinearSlot(Layer& l, TensorRole role, int expert) {
  auto expert_mlp = [&]() -> Mlp* {
    if (expert < 0 || static_cast<size_t>(expert) >= l.experts.size()) return nullptr;
    return &l.experts[static_cast<size_t>(expert)];
  };
  switch (role) {
    case TensorRole::kAttnQ: return &l.q;
    case TensorRole::kAttnK: return &l.k;
    case TensorRole::kAttnV: return &l.v;
    case TensorRole::kAttnO: return &l.o;
    case TensorRole::kRouter: return &l.router;
    case TensorRole::kExpertGate: return expert_mlp() ? &expert_mlp()->gate : nullptr;
    case TensorRole::kExpertUp: return expert_mlp() ? &expert_mlp()->up : nullptr;
    case TensorRole::kExpertDown: return expert_mlp() ? &expert_mlp()->down : nullptr;
    case TensorRole::kSharedGate: return &l.shared.gate;
    case TensorRole::kSharedUp: return &l.shared.up;
    case TensorRole::kSharedDown: return &l.shared.down;
    case TensorRole::kSharedExpertGate: return &l.shared_gate;
    case TensorRole::kMlpGate: return &l.dense.gate;
    case TensorRole::kMlpUp: return &l.dense.up;
    case TensorRole::kMlpDown: return &l.dense.down;
    default: return nullptr;
  }
}

void SetLinear(Linear* lin, int64_t out, int64_t in, const float* data) {
  lin->out = out;
  lin->in = in;
  lin->w.assign(data, data + out * in);
}

}  // namespace

struct Engine::Impl {
  ModelConfig cfg;
  int threads = 0;
  bool normalize_topk = false;
  std::vector<float> embed;  // [vocab, hidden]
  Linear lm_head;
  std::vector<float> final_norm;
  std::vector<Layer> layers;
  uint64_t bytes = 0;

  Status Check(const std::string& dir) const;
  void Moe(const Layer& l, int layer_index, const std::vector<float>& h, int64_t T,
           std::vector<float>* out, ForwardObserver* obs, int threads) const;
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const ModelConfig& Engine::config() const { return impl_->cfg; }
int64_t Engine::vocab_size() const { return impl_->lm_head.out; }
uint64_t Engine::weight_bytes() const { return impl_->bytes; }

Result<std::unique_ptr<Engine>> Engine::Load(const Checkpoint& ckpt, const EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  const ModelConfig& cfg = ckpt.config();
  impl->cfg = cfg;
  impl->threads = options.threads;
  impl->normalize_topk = cfg.norm_topk_prob || cfg.model_type == "mixtral";
  if (cfg.kv_lora_rank > 0) {
    return Status::Unsupported(ckpt.dir() + ": model_type '" + cfg.model_type +
                               "' uses multi-head latent attention, which the engine does not run");
  }
  impl->layers.resize(static_cast<size_t>(cfg.num_layers));
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    Layer& l = impl->layers[static_cast<size_t>(i)];
    l.moe = cfg.IsMoeLayer(i);
    if (l.moe) l.experts.resize(static_cast<size_t>(cfg.num_experts));
  }
  std::vector<float> buf;
  for (const CheckpointTensor& t : ckpt.tensors()) {
    const TensorRole role = t.id.role;
    if (role == TensorRole::kBuffer || role == TensorRole::kUnknown) continue;
    // Float tensors are converted, MLX-quantized ones dequantized (bit-exact with MLX).
    MOEQ_RETURN_IF_ERROR(ckpt.ReadF32(t.info.name, &buf, options.threads));
    ckpt.Release(t.info.name);
    impl->bytes += buf.size() * sizeof(float);
    const auto& shape = t.info.shape;
    auto where = [&] { return ckpt.dir() + ": tensor '" + t.info.name + "'"; };
    if (role == TensorRole::kEmbedding) {
      impl->embed = buf;
      if (cfg.tie_word_embeddings && impl->lm_head.empty()) SetLinear(&impl->lm_head, shape[0], shape[1], buf.data());
      continue;
    }
    if (role == TensorRole::kLmHead) {
      SetLinear(&impl->lm_head, shape[0], shape[1], buf.data());
      continue;
    }
    if (role == TensorRole::kFinalNorm) {
      impl->final_norm = buf;
      continue;
    }
    if (t.id.layer < 0 || t.id.layer >= cfg.num_layers) {
      return Status::Corruption(where() + ": layer index out of range");
    }
    Layer& l = impl->layers[static_cast<size_t>(t.id.layer)];
    if (std::vector<float>* v = VectorSlot(l, role)) {
      *v = buf;
      continue;
    }
    if (t.fused_experts) {
      // [E, out, in]; gate_up holds gate rows then up rows.
      if (shape.size() != 3 || static_cast<size_t>(shape[0]) != l.experts.size()) {
        return Status::Corruption(where() + ": fused expert tensor shape " + t.info.ShapeString() +
                                  " does not match " + std::to_string(l.experts.size()) + " experts");
      }
      const int64_t out = shape[1], in = shape[2];
      for (int64_t e = 0; e < shape[0]; ++e) {
        const float* base = buf.data() + e * out * in;
        Mlp& m = l.experts[static_cast<size_t>(e)];
        if (role == TensorRole::kExpertGateUp) {
          SetLinear(&m.gate, out / 2, in, base);
          SetLinear(&m.up, out / 2, in, base + (out / 2) * in);
        } else if (role == TensorRole::kExpertGate) {
          SetLinear(&m.gate, out, in, base);
        } else if (role == TensorRole::kExpertUp) {
          SetLinear(&m.up, out, in, base);
        } else if (role == TensorRole::kExpertDown) {
          SetLinear(&m.down, out, in, base);
        }
      }
      continue;
    }
    Linear* lin = LinearSlot(l, role, t.id.expert);
    if (!lin) {
      if (role == TensorRole::kRouterBias) {
        return Status::Unsupported(where() + ": router score-correction bias is not supported by the engine");
      }
      spdlog::debug("engine: ignoring tensor '{}'", t.info.name);
      continue;
    }
    if (shape.size() != 2) return Status::Corruption(where() + ": expected a 2-D weight, got " + t.info.ShapeString());
    SetLinear(lin, shape[0], shape[1], buf.data());
  }
  MOEQ_RETURN_IF_ERROR(impl->Check(ckpt.dir()));
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Status Engine::Impl::Check(const std::string& dir) const {
  auto missing = [&](const std::string& what) {
    return Status::NotFound(dir + ": the checkpoint has no " + what + " (needed by the forward pass)");
  };
  if (embed.empty()) return missing("token embedding");
  if (lm_head.empty()) return missing("lm_head");
  if (final_norm.empty()) return missing("final norm");
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    const std::string L = "layer " + std::to_string(i) + " ";
    if (l.input_norm.empty() || l.post_attn_norm.empty()) return missing(L + "norm");
    if (l.q.empty() || l.k.empty() || l.v.empty() || l.o.empty()) return missing(L + "attention projection");
    if (l.moe) {
      if (l.router.empty()) return missing(L + "router");
      for (size_t e = 0; e < l.experts.size(); ++e) {
        const Mlp& m = l.experts[e];
        if (m.gate.empty() || m.up.empty() || m.down.empty()) return missing(L + "expert " + std::to_string(e));
      }
    } else if (l.dense.empty()) {
      return missing(L + "MLP");
    }
  }
  return Status::Ok();
}

void Engine::Impl::Moe(const Layer& l, int layer_index, const std::vector<float>& h, int64_t T,
                       std::vector<float>* out, ForwardObserver* obs, int threads) const {
  const int64_t H = cfg.hidden_size, E = static_cast<int64_t>(l.experts.size());
  const int64_t K = cfg.top_k;
  std::vector<float> probs;
  engine::LinearForward(l.router, h.data(), T, &probs, threads);
  std::vector<int32_t> chosen(static_cast<size_t>(T * K));
  std::vector<float> weights(static_cast<size_t>(T * K));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    float* p = probs.data() + t * E;
    const float mx = *std::max_element(p, p + E);
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(p[e] - mx);
      sum += p[e];
    }
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float ksum = 0.0f;
    for (int64_t j = 0; j < K; ++j) ksum += p[order[static_cast<size_t>(j)]];
    for (int64_t j = 0; j < K; ++j) {
      const int32_t e = order[static_cast<size_t>(j)];
      chosen[static_cast<size_t>(t * K + j)] = e;
      weights[static_cast<size_t>(t * K + j)] = normalize_topk ? p[e] / ksum : p[e];
    }
  }
  if (obs) obs->OnRouting(layer_index, T, static_cast<int>(K), chosen, weights, probs, h);

  // Sort the window's (token, slot) pairs by expert: one product per expert.
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(E));
  for (int64_t s = 0; s < T * K; ++s) slots[static_cast<size_t>(chosen[static_cast<size_t>(s)])].push_back(s);
  std::vector<float> slot_out(static_cast<size_t>(T * K * H));
  ParallelFor(
      E,
      [&](int64_t e) {
        const auto& ss = slots[static_cast<size_t>(e)];
        if (ss.empty()) return;
        const int64_t n = static_cast<int64_t>(ss.size());
        std::vector<float> x(static_cast<size_t>(n * H)), y;
        for (int64_t i = 0; i < n; ++i) {
          const int64_t tok = ss[static_cast<size_t>(i)] / K;
          std::copy_n(h.data() + tok * H, H, x.data() + i * H);
        }
        const Mlp& m = l.experts[static_cast<size_t>(e)];
        std::vector<float> act;
        engine::SwiGluForward(m.gate, m.up, m.down, x.data(), n, &y, 1, obs ? &act : nullptr);
        if (obs) obs->OnExpertActivation(layer_index, static_cast<int>(e), n, act);
        for (int64_t i = 0; i < n; ++i) {
          std::copy_n(y.data() + i * H, H, slot_out.data() + ss[static_cast<size_t>(i)] * H);
        }
      },
      threads);
  out->assign(static_cast<size_t>(T * H), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    float* o = out->data() + t * H;
    for (int64_t j = 0; j < K; ++j) {
      const float w = weights[static_cast<size_t>(t * K + j)];
      const float* y = slot_out.data() + (t * K + j) * H;
      for (int64_t i = 0; i < H; ++i) o[i] += w * y[i];
    }
  }
  if (!l.shared.empty()) {
    std::vector<float> sh;
    engine::SwiGluForward(l.shared.gate, l.shared.up, l.shared.down, h.data(), T, &sh, threads);
    std::vector<float> g;
    if (!l.shared_gate.empty()) engine::LinearForward(l.shared_gate, h.data(), T, &g, threads);
    for (int64_t t = 0; t < T; ++t) {
      const float gate = g.empty() ? 1.0f : 1.0f / (1.0f + std::exp(-g[static_cast<size_t>(t)]));
      for (int64_t i = 0; i < H; ++i) (*out)[static_cast<size_t>(t * H + i)] += gate * sh[static_cast<size_t>(t * H + i)];
    }
  }
}

Status Engine::Forward(std::span<const int32_t> tokens, std::vector<float>* logits,
                       ForwardObserver* observer, int threads_override) const {
  const Impl& m = *impl_;
  const int threads = threads_override >= 0 ? threads_override : m.threads;
  const ModelConfig& c = m.cfg;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const int64_t vocab = static_cast<int64_t>(m.embed.size()) / H;
  std::vector<float> x(static_cast<size_t>(T * H));
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= vocab) {
      return Status::InvalidArgument("token id " + std::to_string(id) + " at position " + std::to_string(t) +
                                     " is outside the vocabulary of " + std::to_string(vocab));
    }
    std::copy_n(m.embed.data() + static_cast<int64_t>(id) * H, H, x.data() + t * H);
  }
  const float eps = static_cast<float>(c.rms_norm_eps);
  std::vector<float> h, q, k, v, att, o, mlp;
  for (size_t li = 0; li < m.layers.size(); ++li) {
    const Layer& l = m.layers[li];
    h = x;
    engine::RmsNormRows(h.data(), T, l.input_norm, eps);
    if (observer) observer->OnAttentionInput(static_cast<int>(li), T, h);
    engine::LinearForward(l.q, h.data(), T, &q, threads);
    engine::LinearForward(l.k, h.data(), T, &k, threads);
    engine::LinearForward(l.v, h.data(), T, &v, threads);
    if (!l.q_norm.empty()) {
      // Per-head norms (qwen3) have head_dim weights; full-width ones (olmoe) cover all heads.
      const bool per_head = static_cast<int64_t>(l.q_norm.size()) == hd;
      engine::RmsNormRows(q.data(), per_head ? T * nh : T, l.q_norm, eps);
      engine::RmsNormRows(k.data(), per_head ? T * nkv : T, l.k_norm, eps);
    }
    engine::ApplyRope(q.data(), T, nh, hd, c.rope_theta);
    engine::ApplyRope(k.data(), T, nkv, hd, c.rope_theta);
    engine::CausalAttention(q, k, v, T, nh, nkv, hd, &att, threads);
    engine::LinearForward(l.o, att.data(), T, &o, threads);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];

    h = x;
    engine::RmsNormRows(h.data(), T, l.post_attn_norm, eps);
    if (observer) observer->OnMlpInput(static_cast<int>(li), T, h);
    if (l.moe) {
      m.Moe(l, static_cast<int>(li), h, T, &mlp, observer, threads);
    } else {
      engine::SwiGluForward(l.dense.gate, l.dense.up, l.dense.down, h.data(), T, &mlp, threads);
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += mlp[i];
  }
  engine::RmsNormRows(x.data(), T, m.final_norm, eps);
  engine::LinearForward(m.lm_head, x.data(), T, logits, threads);
  return Status::Ok();
}

}  // namespace moeq
