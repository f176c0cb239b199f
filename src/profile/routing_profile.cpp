// Routing profiles: accumulation over windows, JSON and safetensors output.
#include "moeq/profile/routing_profile.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

#include "moeq/base/json_reader.h"
#include "moeq/base/parallel.h"
#include "moeq/base/progress.h"
#include "moeq/eval/eval.h"
#include "moeq/formats/safetensors.h"
#include "profile/routing_fold.h"

namespace moeq {
namespace {

// Batches of windows moeq-profile runs layer by layer: at most this many, and at most this much
// memory of hidden states and per-window accumulators.
constexpr int64_t kProfileMaxBatch = 64;
constexpr int64_t kProfileHiddenBudgetBytes = int64_t{1} << 30;

// Accumulates one window: activation sums and router probability mass, and records the
// window's routing ([tokens, top_k] per MoE layer) to be folded in text order afterwards.
// Per-expert activation slots are disjoint, so concurrent OnExpertActivation calls for
// different experts are safe.
class WindowObserver : public ForwardObserver {
 public:
  WindowObserver(size_t num_layers, bool activations) : act_(activations) {
    layers_.resize(num_layers);  // accumulators of a layer exist from BeginLayer to EndLayer
    routed_.resize(num_layers);
  }
  /// Zeroed accumulators (of the right shapes) for layer l, before the window runs it.
  void BeginLayer(size_t l, const LayerProfile& blank) { layers_[l] = blank; }
  /// Frees layer l's accumulators once they are merged into the profile.
  void EndLayer(size_t l) { layers_[l] = LayerProfile{}; }

  void OnAttentionInput(int layer, int64_t tokens, std::span<const float> h) override {
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    l.tokens += tokens;
    if (act_) AddSquares(h, tokens, l.attn_in_sq.data(), static_cast<int64_t>(l.attn_in_sq.size()));
    if (!l.attn_in_gram.empty())
      AddGram(h.data(), tokens, static_cast<int64_t>(l.attn_in_sq.size()), l.attn_in_gram.data());
  }

  void OnRouting(int layer, int64_t tokens, int top_k, std::span<const int32_t> experts,
                 std::span<const float> weights, std::span<const float> probs,
                 std::span<const float> hidden) override {
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    Routed& r = routed_[static_cast<size_t>(layer)];
    r.experts.assign(experts.begin(), experts.begin() + tokens * top_k);
    r.weights.assign(weights.begin(), weights.begin() + tokens * top_k);
    const int64_t E = static_cast<int64_t>(l.experts.size());
    const int64_t H = static_cast<int64_t>(l.mlp_in_sq.size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t e = 0; e < E; ++e)
        l.experts[static_cast<size_t>(e)].prob_mass += probs[static_cast<size_t>(t * E + e)];
      if (!act_) continue;
      for (int64_t j = 0; j < top_k; ++j) {
        const size_t s = static_cast<size_t>(t * top_k + j);
        double* dst = l.expert_in_sq.data() + static_cast<int64_t>(experts[s]) * H;
        const float* x = hidden.data() + t * H;
        for (int64_t i = 0; i < H; ++i) dst[i] += static_cast<double>(x[i]) * x[i];
      }
    }
    if (act_ && !l.expert_in_gram.empty()) {
      // Gram of each expert's routed tokens (gathered in token order).
      std::vector<std::vector<int64_t>> rows(static_cast<size_t>(E));
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t j = 0; j < top_k; ++j)
          rows[static_cast<size_t>(experts[static_cast<size_t>(t * top_k + j)])].push_back(t);
      std::vector<float> g;
      for (int64_t e = 0; e < E; ++e) {
        const auto& routed = rows[static_cast<size_t>(e)];
        if (routed.empty()) continue;
        g.resize(routed.size() * static_cast<size_t>(H));
        for (size_t i = 0; i < routed.size(); ++i)
          std::memcpy(g.data() + i * static_cast<size_t>(H), hidden.data() + routed[i] * H,
                      static_cast<size_t>(H) * sizeof(float));
        AddGram(g.data(), static_cast<int64_t>(routed.size()), H,
                l.expert_in_gram.data() + static_cast<size_t>(e * H * H));
      }
    }
  }

  void OnMlpInput(int layer, int64_t tokens, std::span<const float> h) override {
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    if (act_) AddSquares(h, tokens, l.mlp_in_sq.data(), static_cast<int64_t>(l.mlp_in_sq.size()));
    if (!l.mlp_in_gram.empty())
      AddGram(h.data(), tokens, static_cast<int64_t>(l.mlp_in_sq.size()), l.mlp_in_gram.data());
  }

  void OnExpertActivation(int layer, int expert, int64_t tokens,
                          std::span<const float> a) override {
    if (!act_) return;
    LayerProfile& l = layers_[static_cast<size_t>(layer)];
    const int64_t ff =
        static_cast<int64_t>(l.expert_act_sq.size() / std::max<size_t>(1, l.experts.size()));
    AddSquares(a, tokens, l.expert_act_sq.data() + expert * ff, ff);
    if (!l.expert_act_gram.empty())
      AddGram(
          a.data(), tokens, ff,
          l.expert_act_gram.data() + static_cast<size_t>(expert) * static_cast<size_t>(ff * ff));
  }

  struct Routed {
    std::vector<int32_t> experts;
    std::vector<float> weights;
  };
  std::vector<LayerProfile> layers_;
  std::vector<Routed> routed_;

 private:
  /// dst [width, width] += Xᵀ X for X [rows, width] (float rows, double products and sums).
  static void AddGram(const float* x, int64_t rows, int64_t width, double* dst) {
    using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const RowMat xd =
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
            x, rows, width)
            .cast<double>();
    Eigen::Map<RowMat> g(dst, width, width);
    g.noalias() += xd.transpose() * xd;
  }
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
    into->experts[e].prob_mass += from.experts[e].prob_mass;
  }
  auto add = [](std::vector<double>& a, const std::vector<double>& b) {
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  };
  add(into->attn_in_sq, from.attn_in_sq);
  add(into->mlp_in_sq, from.mlp_in_sq);
  add(into->expert_in_sq, from.expert_in_sq);
  add(into->expert_act_sq, from.expert_act_sq);
  add(into->attn_in_gram, from.attn_in_gram);
  add(into->mlp_in_gram, from.mlp_in_gram);
  add(into->expert_in_gram, from.expert_in_gram);
  add(into->expert_act_gram, from.expert_act_gram);
}

/// Forwards every call to `inner` and advances `progress` by one layer when a layer starts (the
/// layer-by-layer pass of a batch shows progress per layer, not only at the end of the batch).
class ProgressObserver : public ForwardObserver {
 public:
  ProgressObserver(ForwardObserver* inner, Progress* progress)
      : inner_(inner), progress_(progress) {}
  void OnAttentionInput(int layer, int64_t tokens, std::span<const float> hidden) override {
    if (layer > 0) progress_->Advance(1, "layer " + std::to_string(layer - 1));
    inner_->OnAttentionInput(layer, tokens, hidden);
  }
  void OnMlpInput(int layer, int64_t tokens, std::span<const float> hidden) override {
    inner_->OnMlpInput(layer, tokens, hidden);
  }
  void OnRouting(int layer, int64_t tokens, int top_k, std::span<const int32_t> experts,
                 std::span<const float> weights, std::span<const float> probs,
                 std::span<const float> hidden) override {
    inner_->OnRouting(layer, tokens, top_k, experts, weights, probs, hidden);
  }
  void OnExpertActivation(int layer, int expert, int64_t tokens,
                          std::span<const float> act) override {
    inner_->OnExpertActivation(layer, expert, tokens, act);
  }

 private:
  ForwardObserver* inner_;
  Progress* progress_;
};

}  // namespace

Result<RoutingProfile> ProfileRouting(const Engine& engine, std::span<const CalibrationText> texts,
                                      const ProfileOptions& options) {
  const ModelConfig& c = engine.config();
  if (texts.empty()) return Status::InvalidArgument("no calibration text given");
  std::vector<std::string> domains;
  std::vector<int> text_domain;
  for (const CalibrationText& t : texts)
    text_domain.push_back(internal::DomainIndex(&domains, t.domain));
  RoutingProfile prof = internal::MakeBlankProfile(c, domains, options.activations, options);
  // Every window of every text, in text order; token index = offset of the text in the
  // concatenation of all texts + position in the text.
  struct Job {
    size_t text;
    int64_t start;
    int64_t token0;
  };
  std::vector<Job> jobs;
  int64_t offset = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    PerplexityProtocol plan;
    plan.context = options.context;
    plan.max_chunks = options.max_windows;
    const auto windows = PlanWindows(static_cast<int64_t>(texts[i].tokens.size()), plan);
    if (windows.empty()) {
      return Status::InvalidArgument(
          (texts[i].source.empty() ? std::string("the calibration text") : texts[i].source) +
          " has " + std::to_string(texts[i].tokens.size()) + " tokens, fewer than one window of " +
          std::to_string(options.context));
    }
    DomainInfo& d = prof.domains[static_cast<size_t>(text_domain[i])];
    if (!texts[i].source.empty()) d.sources.push_back(texts[i].source);
    if (!texts[i].sha256.empty()) d.sha256.push_back(texts[i].sha256);
    d.windows += static_cast<int64_t>(windows.size());
    d.tokens += static_cast<int64_t>(windows.size()) * options.context;
    for (const EvalWindow& w : windows) jobs.push_back({i, w.start, offset + w.start});
    offset += static_cast<int64_t>(texts[i].tokens.size());
  }
  std::optional<internal::TraceWriter> trace;
  if (!options.trace_output.empty()) {
    trace.emplace();
    MOEQ_RETURN_IF_ERROR(trace->Open(options.trace_output, options.trace_header,
                                     {.overwrite = options.overwrite_trace}));
  }
  std::optional<Progress> progress;
  internal::RoutingFolder folder(&prof);
  const int threads = ResolveThreads(options.threads);
  RoutingProfile blank = prof;            // zeroed accumulators each window starts from
  for (LayerProfile& l : blank.layers) {  // folded state, not needed per window
    l.pair_counts.clear();
    for (ExpertUsage& u : l.experts) u.domain_counts.clear();
  }
  const int64_t k = c.top_k;
  // Windows run in batches layer by layer (Engine::ForwardHidden: each weight is read once per
  // batch, however many windows), each window with its own observer; batches fold in window
  // order, so the profile does not depend on the batch size or thread count. No logits are
  // computed (the profile does not need them).
  // A window holds its hidden state, its routing of every layer and the accumulators of the
  // one layer running (merged into the profile and freed when the layer is done, so memory does
  // not grow with depth by a copy of every layer's statistics per window).
  int64_t layer_bytes = 0;
  for (const LayerProfile& l : blank.layers) {
    layer_bytes = std::max<int64_t>(
        layer_bytes, static_cast<int64_t>(sizeof(double) *
                                          (l.attn_in_sq.size() + l.mlp_in_sq.size() +
                                           l.expert_in_sq.size() + l.expert_act_sq.size() +
                                           l.attn_in_gram.size() + l.mlp_in_gram.size() +
                                           l.expert_in_gram.size() + l.expert_act_gram.size())));
  }
  const int64_t per_window_bytes =
      options.context * c.hidden_size * static_cast<int64_t>(sizeof(float)) + layer_bytes +
      static_cast<int64_t>(blank.layers.size()) * options.context * c.top_k * 8;
  const size_t batch = static_cast<size_t>(std::max<int64_t>(
      threads,
      std::min<int64_t>({static_cast<int64_t>(jobs.size()), kProfileMaxBatch,
                         kProfileHiddenBudgetBytes / std::max<int64_t>(1, per_window_bytes)})));
  // Progress in layers of batches: one batch of windows goes through every layer in turn.
  const int64_t batches = (static_cast<int64_t>(jobs.size()) + static_cast<int64_t>(batch) - 1) /
                          static_cast<int64_t>(batch);
  if (options.progress)
    progress.emplace("profile", std::max<int64_t>(1, batches * c.num_layers), "layer passes");
  for (size_t b0 = 0; b0 < jobs.size(); b0 += batch) {
    const size_t nb = std::min(jobs.size() - b0, batch);
    std::vector<std::unique_ptr<WindowObserver>> obs(nb);
    std::vector<ForwardObserver*> obs_ptr(nb);
    std::vector<std::span<const int32_t>> spans(nb);
    for (size_t i = 0; i < nb; ++i) {
      const Job& job = jobs[b0 + i];
      obs[i] = std::make_unique<WindowObserver>(blank.layers.size(), options.activations);
      obs_ptr[i] = obs[i].get();
      spans[i] = texts[job.text].tokens.subspan(static_cast<size_t>(job.start),
                                                static_cast<size_t>(options.context));
    }
    std::optional<ProgressObserver> progress_obs;
    if (progress && nb > 0) {
      progress_obs.emplace(obs_ptr[0], &*progress);
      obs_ptr[0] = &*progress_obs;
    }
    {
      // Engine::ForwardHidden, one layer at a time: after layer l every window's accumulators
      // of l merge into the profile in window order (the order the sums always had).
      std::vector<std::vector<float>> hidden(nb);
      for (size_t i = 0; i < nb; ++i) MOEQ_RETURN_IF_ERROR(engine.Embed(spans[i], &hidden[i]));
      for (size_t l = 0; l < prof.layers.size(); ++l) {
        for (size_t i = 0; i < nb; ++i) obs[i]->BeginLayer(l, blank.layers[l]);
        const int li = static_cast<int>(l);
        MOEQ_RETURN_IF_ERROR(engine.ForwardLayers(li, li + 1, &hidden, obs_ptr, threads));
        for (size_t i = 0; i < nb; ++i) {
          Merge(&prof.layers[l], obs[i]->layers_[l]);
          obs[i]->EndLayer(l);
        }
      }
    }
    if (progress) progress->Advance(1, "layer " + std::to_string(c.num_layers - 1));
    for (size_t i = 0; i < nb; ++i) {
      const Job& job = jobs[b0 + i];
      const int domain = text_domain[job.text];
      WindowObserver& o = *obs[i];
      for (size_t l = 0; l < prof.layers.size(); ++l) {
        if (!prof.layers[l].moe) continue;
        const auto& r = o.routed_[l];
        if (static_cast<int64_t>(r.experts.size()) != options.context * k) {
          return Status::Internal("layer " + std::to_string(l) +
                                  ": the engine reported no routing for a window");
        }
        folder.Add(static_cast<int>(l), domain, options.context, r.experts.data(),
                   r.weights.data());
      }
      if (trace) {
        for (int64_t t = 0; t < options.context; ++t) {
          for (size_t l = 0; l < prof.layers.size(); ++l) {
            if (!prof.layers[l].moe) continue;
            const auto& r = o.routed_[l];
            trace->WriteLine(static_cast<int>(l), job.token0 + t, k, r.experts.data() + t * k,
                             r.weights.data() + t * k, domains[static_cast<size_t>(domain)]);
          }
        }
      }
      obs[i].reset();
    }
  }
  if (progress) progress->Finish();
  folder.Finish();
  if (trace) MOEQ_RETURN_IF_ERROR(trace->Finish());
  prof.windows = static_cast<int64_t>(jobs.size());
  prof.tokens = prof.windows * options.context;
  return prof;
}

Result<RoutingProfile> ProfileRouting(const Engine& engine, std::span<const int32_t> tokens,
                                      const ProfileOptions& options) {
  CalibrationText t;
  t.tokens = tokens;
  return ProfileRouting(engine, std::span<const CalibrationText>(&t, 1), options);
}

artifacts::RoutingProfileArtifact RoutingProfileToArtifact(const RoutingProfile& p,
                                                           nlohmann::json header) {
  artifacts::RoutingProfileArtifact a;
  a.header = std::move(header);
  a.model = {p.model_type, p.num_experts, p.top_k, static_cast<int64_t>(p.layers.size()),
             p.hidden,     p.moe_ff};
  a.calibration = {p.tokens, p.windows, p.context, p.source};
  for (const DomainInfo& d : p.domains)
    a.domains.push_back({d.name, d.sources, d.sha256, d.tokens, d.windows});
  const double share =
      p.num_experts > 0 ? static_cast<double>(p.top_k) / static_cast<double>(p.num_experts) : 0.0;
  nlohmann::json hot = HotnessOptionsToJson(p.hotness);
  hot["uniform_share"] = share;
  hot["promote_frequency"] = p.hotness.promote_above * share;
  hot["demote_frequency"] = p.hotness.demote_below * share;
  a.hotness = std::move(hot);
  a.tiers = TierThresholdsToJson(p.tiers);
  a.top_pairs = p.top_pairs;
  for (const LayerProfile& l : p.layers) {
    artifacts::RoutingLayer lj;
    lj.layer = l.layer;
    lj.moe = l.moe;
    lj.tokens = l.tokens;
    if (l.moe) {
      const double assignments = static_cast<double>(l.tokens * p.top_k);
      int64_t mx = 0, mn = INT64_MAX, unused = 0, churn = 0, hottest = -1;
      double entropy = 0, hottest_frac = -1;
      int64_t tier_counts[4] = {0, 0, 0, 0};
      for (size_t e = 0; e < l.experts.size(); ++e) {
        const ExpertUsage& u = l.experts[e];
        const double frac = assignments > 0 ? static_cast<double>(u.count) / assignments : 0;
        artifacts::RoutingExpert ej;
        ej.expert = static_cast<int64_t>(e);
        ej.count = u.count;
        ej.frac = frac;
        ej.mean_gate = u.count ? u.gate_mass / static_cast<double>(u.count) : 0.0;
        ej.gate_mass = u.gate_mass;
        ej.mean_rank =
            u.count ? static_cast<double>(u.rank_sum) / static_cast<double>(u.count) : 0.0;
        ej.tier = std::string(TierName(u.tier));
        if (p.has_prob_mass) ej.prob_mass = u.prob_mass;
        ej.domain_counts.emplace();
        for (size_t d = 0; d < p.domains.size() && d < u.domain_counts.size(); ++d)
          (*ej.domain_counts)[p.domains[d].name] = u.domain_counts[d];
        const ExpertHotness& h = u.hotness;
        const double updates = static_cast<double>(l.hotness_updates);
        ej.hotness = artifacts::RoutingExpertHotness{
            .hot_fraction = updates > 0 ? static_cast<double>(h.hot_updates) / updates : 0.0,
            .promotions = h.promotions,
            .demotions = h.demotions,
            .hot_at_end = h.hot,
            .freq_mean = updates > 0 ? h.freq_sum / updates : 0.0,
            .freq_min = h.freq_min,
            .freq_max = h.freq_max};
        lj.experts.push_back(std::move(ej));
        churn += h.promotions + h.demotions;
        ++tier_counts[static_cast<int>(u.tier)];
        mx = std::max(mx, u.count);
        mn = std::min(mn, u.count);
        if (frac > hottest_frac) {
          hottest_frac = frac;
          hottest = static_cast<int64_t>(e);
        }
        if (u.count == 0) ++unused;
        if (frac > 0) entropy -= frac * std::log(frac);
      }
      const double mean = assignments / static_cast<double>(l.experts.size());
      artifacts::RoutingLayerSummary sum;
      for (int t = 0; t < 4; ++t)
        sum.tiers[std::string(TierName(static_cast<ExpertTier>(t)))] = tier_counts[t];
      sum.max_count = mx;
      sum.min_count = mn;
      sum.unused_experts = unused;
      sum.max_over_mean = mean > 0 ? static_cast<double>(mx) / mean : 0.0;
      sum.hottest_expert = hottest;
      sum.normalized_entropy =
          l.experts.size() > 1 ? entropy / std::log(static_cast<double>(l.experts.size())) : 0.0;
      lj.summary = std::move(sum);
      std::vector<artifacts::RoutingPair> pairs;
      for (const ExpertPair& pr : l.top_pairs) pairs.push_back({pr.a, pr.b, pr.count, pr.lift});
      lj.top_pairs = std::move(pairs);
      lj.hotness = artifacts::RoutingLayerHotness{
          .updates = l.hotness_updates,
          .mean_hot_set = l.hotness_updates > 0 ? static_cast<double>(l.hot_set_sum) /
                                                      static_cast<double>(l.hotness_updates)
                                                : 0.0,
          .churn = churn};
    }
    a.layers.push_back(std::move(lj));
  }
  return a;
}

Result<RoutingProfile> RoutingProfileFromArtifact(const artifacts::RoutingProfileArtifact& a,
                                                  std::string_view path) try {
  const std::string p(path);
  RoutingProfile prof;
  prof.model_type = a.model.model_type;
  prof.num_experts = a.model.num_experts;
  prof.top_k = a.model.top_k;
  prof.hidden = a.model.hidden_size;
  prof.moe_ff = a.model.moe_intermediate_size;
  prof.tokens = a.calibration.tokens;
  prof.windows = a.calibration.windows;
  prof.context = a.calibration.context;
  prof.source = a.calibration.source;
  for (const artifacts::RoutingDomain& d : a.domains)
    prof.domains.push_back({d.name, d.sources, d.sha256, d.tokens, d.windows});
  if (!a.hotness.is_null()) {
    nlohmann::json h = nlohmann::json::object();
    for (const char* k : {"window", "update_every", "promote_above", "demote_below"}) {
      if (!a.hotness.contains(k))
        return Status::Corruption(p + ": hotness: field '" + std::string(k) + "': missing");
      h[k] = a.hotness[k];
    }
    MOEQ_ASSIGN_OR_RETURN(prof.hotness, HotnessOptionsFromJson(h, p + ": hotness"));
  }
  if (!a.tiers.is_null()) {
    MOEQ_ASSIGN_OR_RETURN(prof.tiers, TierThresholdsFromJson(a.tiers, p + ": tiers"));
  }
  prof.top_pairs = a.top_pairs;
  bool all_prob = true;
  for (const artifacts::RoutingLayer& lj : a.layers) {
    LayerProfile l;
    l.layer = static_cast<int>(lj.layer);
    l.moe = lj.moe;
    l.tokens = lj.tokens;
    if (l.moe) {
      for (const artifacts::RoutingExpert& e : lj.experts) {
        ExpertUsage u;
        u.count = e.count;
        u.gate_mass = e.gate_mass;
        if (e.prob_mass)
          u.prob_mass = *e.prob_mass;
        else
          all_prob = false;
        u.rank_sum = std::llround(e.mean_rank * static_cast<double>(u.count));
        if (!e.tier.empty()) {
          auto t = ParseTier(e.tier);
          if (!t)
            return Status::Corruption(p + ": layer " + std::to_string(l.layer) + " expert " +
                                      std::to_string(l.experts.size()) + ": unknown tier " +
                                      JsonExcerpt(nlohmann::json(e.tier)));
          u.tier = *t;
        }
        if (e.domain_counts) {
          u.domain_counts.assign(prof.domains.size(), 0);
          for (size_t d = 0; d < prof.domains.size(); ++d) {
            auto it = e.domain_counts->find(prof.domains[d].name);
            if (it != e.domain_counts->end()) u.domain_counts[d] = it->second;
          }
        }
        if (e.hotness) {
          u.hotness.promotions = e.hotness->promotions;
          u.hotness.demotions = e.hotness->demotions;
          u.hotness.hot = e.hotness->hot_at_end;
          u.hotness.freq_min = e.hotness->freq_min;
          u.hotness.freq_max = e.hotness->freq_max;
        }
        l.experts.push_back(std::move(u));
      }
      if (lj.top_pairs) {
        for (const artifacts::RoutingPair& pr : *lj.top_pairs)
          l.top_pairs.push_back(
              {static_cast<int>(pr.a), static_cast<int>(pr.b), pr.count, pr.lift});
      }
      if (lj.hotness) l.hotness_updates = lj.hotness->updates;
    }
    prof.layers.push_back(std::move(l));
  }
  prof.has_prob_mass = all_prob;
  return prof;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Result<RoutingProfile> ReadRoutingProfileFile(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(artifacts::RoutingProfileArtifact a, artifacts::ReadRoutingProfile(path));
  return RoutingProfileFromArtifact(a, path);
}

Status WriteActivationStats(const std::string& path, const RoutingProfile& p,
                            const ArchAdapter& adapter, const ActivationStatsOptions& options,
                            AtomicWriteOptions write_options) {
  const double k = std::max(0.0, options.shrinkage_tokens);
  struct Entry {
    std::string name;
    std::vector<float> mean, importance;
    int64_t count;
    std::string gram;  // name of the gram tensor of its input ("" = none)
  };
  struct Gram {
    std::string name;
    int64_t width;
    std::vector<float> mean;
  };
  std::vector<Entry> entries;
  std::vector<Gram> grams;
  // (Σ + k·pool_mean) / (n + k); pool_sum / pool_n is the pooled mean (n = pool_n: unchanged).
  auto shrink = [k](const double* sum, int64_t n, const double* pool_sum, int64_t pool_n,
                    int64_t len, std::vector<float>* out) {
    out->resize(static_cast<size_t>(len));
    const bool pool = pool_sum != nullptr && pool_n > 0 && k > 0;
    const double den = static_cast<double>(n) + (pool ? k : 0.0);
    for (int64_t i = 0; i < len; ++i) {
      double v = sum[i];
      if (pool) v += k * pool_sum[i] / static_cast<double>(pool_n);
      (*out)[static_cast<size_t>(i)] = den > 0 ? static_cast<float>(v / den) : 0.0f;
    }
  };
  auto add = [&](const TensorId& id, const double* sq, int64_t width, int64_t count,
                 const double* pool_sq, int64_t pool_n, const std::string& gram) {
    Entry e{adapter.Name(id), std::vector<float>(static_cast<size_t>(width)), {}, count, gram};
    for (int64_t i = 0; i < width; ++i)
      e.mean[static_cast<size_t>(i)] =
          count ? static_cast<float>(sq[i] / static_cast<double>(count)) : 0.0f;
    shrink(sq, count, pool_sq, pool_n, width, &e.importance);
    entries.push_back(std::move(e));
  };
  auto add_gram = [&](const std::string& name, const std::vector<double>& all, size_t index,
                      int64_t width, int64_t n, const double* pool, int64_t pool_n) -> std::string {
    if (all.empty()) return "";
    Gram g{name + ".gram", width, {}};
    shrink(all.data() + index * static_cast<size_t>(width * width), n, pool, pool_n, width * width,
           &g.mean);
    grams.push_back(std::move(g));
    return grams.back().name;
  };
  for (const LayerProfile& l : p.layers) {
    if (l.attn_in_sq.empty()) continue;
    const int64_t H = static_cast<int64_t>(l.attn_in_sq.size());
    const std::string lp = "layers." + std::to_string(l.layer);
    const std::string attn_gram =
        add_gram(lp + ".attn_in", l.attn_in_gram, 0, H, l.tokens, nullptr, 0);
    for (TensorRole r : {TensorRole::kAttnQ, TensorRole::kAttnK, TensorRole::kAttnV}) {
      add({l.layer, -1, r}, l.attn_in_sq.data(), H, l.tokens, nullptr, 0, attn_gram);
    }
    const std::string mlp_gram =
        add_gram(lp + ".mlp_in", l.mlp_in_gram, 0, H, l.tokens, nullptr, 0);
    if (!l.moe) {
      for (TensorRole r : {TensorRole::kMlpGate, TensorRole::kMlpUp})
        add({l.layer, -1, r}, l.mlp_in_sq.data(), H, l.tokens, nullptr, 0, mlp_gram);
      continue;
    }
    add({l.layer, -1, TensorRole::kRouter}, l.mlp_in_sq.data(), H, l.tokens, nullptr, 0, mlp_gram);
    const int64_t ff = static_cast<int64_t>(l.expert_act_sq.size() / l.experts.size());
    // Pooled down-projection input: all experts' activations.
    std::vector<double> act_pool(static_cast<size_t>(ff), 0.0), act_pool_gram;
    int64_t act_n = 0;
    for (size_t e = 0; e < l.experts.size(); ++e) {
      act_n += l.experts[e].count;
      for (int64_t i = 0; i < ff; ++i)
        act_pool[static_cast<size_t>(i)] +=
            l.expert_act_sq[e * static_cast<size_t>(ff) + static_cast<size_t>(i)];
    }
    if (!l.expert_act_gram.empty()) {
      act_pool_gram.assign(static_cast<size_t>(ff * ff), 0.0);
      for (size_t e = 0; e < l.experts.size(); ++e)
        for (size_t i = 0; i < act_pool_gram.size(); ++i)
          act_pool_gram[i] += l.expert_act_gram[e * act_pool_gram.size() + i];
    }
    for (size_t e = 0; e < l.experts.size(); ++e) {
      const int64_t n = l.experts[e].count;
      const int ei = static_cast<int>(e);
      const std::string ep = lp + ".experts." + std::to_string(e);
      const std::string in_gram =
          add_gram(ep + ".in", l.expert_in_gram, e, H, n, l.mlp_in_gram.data(), l.tokens);
      const std::string act_gram =
          add_gram(ep + ".act", l.expert_act_gram, e, ff, n, act_pool_gram.data(), act_n);
      add({l.layer, ei, TensorRole::kExpertGate},
          l.expert_in_sq.data() + static_cast<int64_t>(e) * H, H, n, l.mlp_in_sq.data(), l.tokens,
          in_gram);
      add({l.layer, ei, TensorRole::kExpertUp}, l.expert_in_sq.data() + static_cast<int64_t>(e) * H,
          H, n, l.mlp_in_sq.data(), l.tokens, in_gram);
      add({l.layer, ei, TensorRole::kExpertDown},
          l.expert_act_sq.data() + static_cast<int64_t>(e) * ff, ff, n, act_pool.data(), act_n,
          act_gram);
    }
  }
  std::vector<TensorInfo> infos;
  nlohmann::json gram_of = nlohmann::json::object();
  for (const Entry& e : entries) {
    infos.push_back({e.name + ".in_sq_mean", DType::kF32, {static_cast<int64_t>(e.mean.size())}});
    infos.push_back(
        {e.name + ".importance", DType::kF32, {static_cast<int64_t>(e.importance.size())}});
    infos.push_back({e.name + ".count", DType::kI64, {1}});
    if (!e.gram.empty()) gram_of[e.name] = e.gram;
  }
  for (const Gram& g : grams) infos.push_back({g.name, DType::kF32, {g.width, g.width}});
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"moeq_schema", "moeq.activation_stats"},
                                             {"moeq_shrinkage_tokens", nlohmann::json(k).dump()}};
  if (!grams.empty()) meta["moeq_gram_of"] = gram_of.dump();
  MOEQ_ASSIGN_OR_RETURN(auto w, SafetensorsWriter::Create(path, infos, meta, write_options));
  for (const Entry& e : entries) {
    MOEQ_RETURN_IF_ERROR(w->Write(e.name + ".in_sq_mean", std::as_bytes(std::span(e.mean))));
    MOEQ_RETURN_IF_ERROR(w->Write(e.name + ".importance", std::as_bytes(std::span(e.importance))));
    MOEQ_RETURN_IF_ERROR(w->Write(e.name + ".count", std::as_bytes(std::span(&e.count, 1))));
  }
  for (const Gram& g : grams)
    MOEQ_RETURN_IF_ERROR(w->Write(g.name, std::as_bytes(std::span(g.mean))));
  return w->Finish();
}

}  // namespace moeq
