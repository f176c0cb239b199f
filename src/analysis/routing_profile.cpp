// Routing profiles: accumulation over windows, JSON and safetensors output.
#include "moeq/routing_profile.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>

#include "moeq/eval.h"
#include "moeq/parallel.h"
#include "moeq/progress.h"
#include "moeq/safetensors.h"

namespace moeq {
namespace {

// Accumulates one window. Per-expert activation slots are disjoint, so concurrent
// OnExpertActivation calls for different experts are safe.
class WindowObserver : public ForwardObserver {
 public:
  WindowObserver(const RoutingProfile& blank, bool activations) : act_(activations) {
    layers_ = blank.layers;  // zeroed accumulators of the right shapes
  }

  void OnAttentionInput(int layer, int64_t tokens, std::span<const float> h) override {
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    l.tokens += tokens;
    if (act_) AddSquares(h, tokens, l.attn_in_sq.data(), static_cast<int64_t>(l.attn_in_sq.size()));
  }

  void OnRouting(int layer, int64_t tokens, int top_k, std::span<const int32_t> experts,
                 std::span<const float> weights, std::span<const float> probs,
                 std::span<const float> hidden) override {
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    const int64_t E = static_cast<int64_t>(l.experts.size());
    const int64_t H = static_cast<int64_t>(l.mlp_in_sq.size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t e = 0; e < E; ++e) l.experts[static_cast<size_t>(e)].prob_mass += probs[static_cast<size_t>(t * E + e)];
      for (int64_t j = 0; j < top_k; ++j) {
        const size_t s = static_cast<size_t>(t * top_k + j);
        ExpertUsage& u = l.experts[static_cast<size_t>(experts[s])];
        ++u.count;
        u.gate_mass += weights[s];
        if (act_) {
          double* dst = l.expert_in_sq.data() + static_cast<int64_t>(experts[s]) * H;
          const float* x = hidden.data() + t * H;
          for (int64_t i = 0; i < H; ++i) dst[i] += static_cast<double>(x[i]) * x[i];
        }
      }
    }
  }

  void OnMlpInput(int layer, int64_t tokens, std::span<const float> h) override {
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    if (act_) AddSquares(h, tokens, l.mlp_in_sq.data(), static_cast<int64_t>(l.mlp_in_sq.size()));
  }

  void OnExpertActivation(int layer, int expert, int64_t tokens, std::span<const float> a) override {
    if (!act_) return;
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    const int64_t ff = static_cast<int64_t>(l.expert_act_sq.size() / std::max<size_t>(1, l.experts.size()));
    AddSquares(a, tokens, l.expert_act_sq.data() + expert * ff, ff);
  }

  std::vector<LayerProfile> layers_;

 private:
  static void AddSquares(std::span<const float> x, int64_t rows, double* dst, int64_t width) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* p = x.data() + r * width;
      for (int64_t i = 0; i < width; ++i) dst[i] += static_cast<double>(p[i]) * p[i];
    }
  }
  bool act_;
};

void Merge(LayerProfile* into, const LayerProfile& from) {
  into->tokens += from.tokens;
  for (size_t e = 0; e < into->experts.size(); ++e) {
    into->experts[e].count += from.experts[e].count;
    into->experts[e].gate_mass += from.experts[e].gate_mass;
    into->experts[e].prob_mass += from.experts[e].prob_mass;
  }
  auto add = [](std::vector<double>& a, const std::vector<double>& b) {
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  };
  add(into->attn_in_sq, from.attn_in_sq);
  add(into->mlp_in_sq, from.mlp_in_sq);
  add(into->expert_in_sq, from.expert_in_sq);
  add(into->expert_act_sq, from.expert_act_sq);
}

}  // namespace

Result<RoutingProfile> ProfileRouting(const Engine& engine, std::span<const int32_t> tokens,
                                      const ProfileOptions& options) {
  const ModelConfig& c = engine.config();
  RoutingProfile prof;
  prof.model_type = c.model_type;
  prof.num_experts = c.num_experts;
  prof.top_k = c.top_k;
  prof.hidden = c.hidden_size;
  prof.moe_ff = c.moe_intermediate_size;
  prof.context = options.context;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerProfile lp;
    lp.layer = static_cast<int>(l);
    lp.moe = c.IsMoeLayer(l);
    if (options.activations) {
      lp.attn_in_sq.assign(static_cast<size_t>(c.hidden_size), 0.0);
      lp.mlp_in_sq.assign(static_cast<size_t>(c.hidden_size), 0.0);
    }
    if (lp.moe) {
      lp.experts.resize(static_cast<size_t>(c.num_experts));
      if (options.activations) {
        lp.expert_in_sq.assign(static_cast<size_t>(c.num_experts * c.hidden_size), 0.0);
        lp.expert_act_sq.assign(static_cast<size_t>(c.num_experts * c.moe_intermediate_size), 0.0);
      }
    }
    prof.layers.push_back(std::move(lp));
  }
  PerplexityProtocol windows_plan;
  windows_plan.context = options.context;
  windows_plan.max_chunks = options.max_windows;
  const auto windows = PlanWindows(static_cast<int64_t>(tokens.size()), windows_plan);
  if (windows.empty()) {
    return Status::InvalidArgument("the calibration text has " + std::to_string(tokens.size()) +
                                   " tokens, fewer than one window of " + std::to_string(options.context));
  }
  std::optional<Progress> progress;
  if (options.progress) progress.emplace("profile", static_cast<int64_t>(windows.size()), "windows");
  // Windows run in batches of `threads`, one thread each; batches merge in window order.
  const int threads = ResolveThreads(options.threads);
  const RoutingProfile blank = prof;  // zeroed accumulators each window starts from
  for (size_t b0 = 0; b0 < windows.size(); b0 += static_cast<size_t>(threads)) {
    const size_t nb = std::min(windows.size() - b0, static_cast<size_t>(threads));
    std::vector<std::unique_ptr<WindowObserver>> obs(nb);
    std::vector<Status> errors(nb);
    ParallelFor(
        static_cast<int64_t>(nb),
        [&](int64_t i) {
          const auto& w = windows[b0 + static_cast<size_t>(i)];
          obs[static_cast<size_t>(i)] = std::make_unique<WindowObserver>(blank, options.activations);
          std::vector<float> logits;
          errors[static_cast<size_t>(i)] = engine.Forward(tokens.subspan(static_cast<size_t>(w.start), static_cast<size_t>(options.context)),
                                                          &logits, obs[static_cast<size_t>(i)].get(), 1);
          if (progress) progress->Advance(1);
        },
        threads);
    for (size_t i = 0; i < nb; ++i) {
      MOEQ_RETURN_IF_ERROR(errors[i]);
      for (size_t l = 0; l < prof.layers.size(); ++l) Merge(&prof.layers[l], obs[i]->layers_[l]);
    }
  }
  if (progress) progress->Finish();
  prof.windows = static_cast<int64_t>(windows.size());
  prof.tokens = prof.windows * options.context;
  return prof;
}

nlohmann::json RoutingProfileToJson(const RoutingProfile& p, nlohmann::json header) {
  nlohmann::json j = std::move(header);
  j["model"] = {{"model_type", p.model_type}, {"num_experts", p.num_experts}, {"top_k", p.top_k},
                {"num_layers", p.layers.size()}, {"hidden_size", p.hidden}, {"moe_intermediate_size", p.moe_ff}};
  j["calibration"] = {{"tokens", p.tokens}, {"windows", p.windows}, {"context", p.context}};
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerProfile& l : p.layers) {
    nlohmann::json lj = {{"layer", l.layer}, {"moe", l.moe}, {"tokens", l.tokens}};
    if (l.moe) {
      const double assignments = static_cast<double>(l.tokens * p.top_k);
      nlohmann::json ex = nlohmann::json::array();
      int64_t mx = 0, mn = INT64_MAX, unused = 0;
      double entropy = 0;
      for (size_t e = 0; e < l.experts.size(); ++e) {
        const ExpertUsage& u = l.experts[e];
        const double frac = assignments > 0 ? static_cast<double>(u.count) / assignments : 0;
        ex.push_back({{"expert", e},
                      {"count", u.count},
                      {"frac", frac},
                      {"mean_gate", u.count ? u.gate_mass / static_cast<double>(u.count) : 0.0},
                      {"gate_mass", u.gate_mass},
                      {"prob_mass", u.prob_mass}});
        mx = std::max(mx, u.count);
        mn = std::min(mn, u.count);
        if (u.count == 0) ++unused;
        if (frac > 0) entropy -= frac * std::log(frac);
      }
      const double mean = assignments / static_cast<double>(l.experts.size());
      lj["experts"] = ex;
      lj["summary"] = {{"max_count", mx}, {"min_count", mn}, {"unused_experts", unused},
                       {"max_over_mean", mean > 0 ? static_cast<double>(mx) / mean : 0.0},
                       {"normalized_entropy", l.experts.size() > 1 ? entropy / std::log(static_cast<double>(l.experts.size())) : 0.0}};
    }
    layers.push_back(std::move(lj));
  }
  j["layers"] = std::move(layers);
  return j;
}

Result<RoutingProfile> RoutingProfileFromJson(const nlohmann::json& j, std::string_view path) {
  const std::string p(path);
  RoutingProfile prof;
  try {
    const auto& m = j.at("model");
    prof.model_type = m.at("model_type").get<std::string>();
    prof.num_experts = m.at("num_experts").get<int64_t>();
    prof.top_k = m.at("top_k").get<int64_t>();
    prof.hidden = m.value("hidden_size", int64_t{0});
    prof.moe_ff = m.value("moe_intermediate_size", int64_t{0});
    const auto& cal = j.at("calibration");
    prof.tokens = cal.at("tokens").get<int64_t>();
    prof.windows = cal.at("windows").get<int64_t>();
    prof.context = cal.at("context").get<int64_t>();
    for (const auto& lj : j.at("layers")) {
      LayerProfile l;
      l.layer = lj.at("layer").get<int>();
      l.moe = lj.at("moe").get<bool>();
      l.tokens = lj.at("tokens").get<int64_t>();
      if (l.moe) {
        for (const auto& e : lj.at("experts")) {
          ExpertUsage u;
          u.count = e.at("count").get<int64_t>();
          u.gate_mass = e.at("gate_mass").get<double>();
          u.prob_mass = e.at("prob_mass").get<double>();
          l.experts.push_back(u);
        }
      }
      prof.layers.push_back(std::move(l));
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(p + ": not a valid routing profile: " + e.what());
  }
  return prof;
}

Status WriteActivationStats(const std::string& path, const RoutingProfile& p, const ArchAdapter& adapter) {
  struct Entry {
    std::string name;
    std::vector<float> mean;
    int64_t count;
  };
  std::vector<Entry> entries;
  auto add = [&](const TensorId& id, const double* sq, int64_t width, int64_t count) {
    Entry e{adapter.Name(id), std::vector<float>(static_cast<size_t>(width)), count};
    for (int64_t i = 0; i < width; ++i) e.mean[static_cast<size_t>(i)] = count ? static_cast<float>(sq[i] / static_cast<double>(count)) : 0.0f;
    entries.push_back(std::move(e));
  };
  for (const LayerProfile& l : p.layers) {
    if (l.attn_in_sq.empty()) continue;
    const int64_t H = static_cast<int64_t>(l.attn_in_sq.size());
    for (TensorRole r : {TensorRole::kAttnQ, TensorRole::kAttnK, TensorRole::kAttnV}) {
      add({l.layer, -1, r}, l.attn_in_sq.data(), H, l.tokens);
    }
    if (!l.moe) {
      for (TensorRole r : {TensorRole::kMlpGate, TensorRole::kMlpUp}) add({l.layer, -1, r}, l.mlp_in_sq.data(), H, l.tokens);
      continue;
    }
    add({l.layer, -1, TensorRole::kRouter}, l.mlp_in_sq.data(), H, l.tokens);
    const int64_t ff = static_cast<int64_t>(l.expert_act_sq.size() / l.experts.size());
    for (size_t e = 0; e < l.experts.size(); ++e) {
      const int64_t n = l.experts[e].count;
      const int ei = static_cast<int>(e);
      add({l.layer, ei, TensorRole::kExpertGate}, l.expert_in_sq.data() + static_cast<int64_t>(e) * H, H, n);
      add({l.layer, ei, TensorRole::kExpertUp}, l.expert_in_sq.data() + static_cast<int64_t>(e) * H, H, n);
      add({l.layer, ei, TensorRole::kExpertDown}, l.expert_act_sq.data() + static_cast<int64_t>(e) * ff, ff, n);
    }
  }
  std::vector<TensorInfo> infos;
  for (const Entry& e : entries) {
    infos.push_back({e.name + ".in_sq_mean", DType::kF32, {static_cast<int64_t>(e.mean.size())}});
    infos.push_back({e.name + ".count", DType::kI64, {1}});
  }
  MOEQ_ASSIGN_OR_RETURN(auto w, SafetensorsWriter::Create(path, infos, {{"format", "pt"}, {"moeq_schema", "moeq.activation_stats"}}));
  for (const Entry& e : entries) {
    MOEQ_RETURN_IF_ERROR(w->Write(e.name + ".in_sq_mean", std::as_bytes(std::span(e.mean))));
    MOEQ_RETURN_IF_ERROR(w->Write(e.name + ".count", std::as_bytes(std::span(&e.count, 1))));
  }
  return w->Finish();
}

}  // namespace moeq
