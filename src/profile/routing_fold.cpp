// Routing statistics folded token by token: counts, gate mass, rank, co-activation, per-domain
// counts, hotness over time (DynaExq-style sliding window with hysteresis) and DynaMINT tiers.
#include "profile/routing_fold.h"

#include <algorithm>
#include <cmath>

#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"

namespace moeq {

// ---- HotnessOptions ----------------------------------------------------------------------

Result<HotnessOptions> HotnessOptionsFromJson(const nlohmann::json& j, std::string_view path) {
  const std::string p(path);
  if (!j.is_object()) return Status::InvalidArgument(p + ": expected a JSON object");
  if (j.contains("schema")) MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.hotness", 1, path));
  HotnessOptions h;
  for (const auto& [key, v] : j.items()) {
    if (key == "schema" || key == "version" || key == "description") continue;
    if (key == "window" || key == "update_every") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1) {
        return Status::InvalidArgument(p + ": field '" + key +
                                       "' must be a positive integer, got " + JsonExcerpt(v));
      }
      (key == "window" ? h.window : h.update_every) = v.get<int64_t>();
    } else if (key == "promote_above" || key == "demote_below") {
      if (!v.is_number() || !(v.get<double>() >= 0) || !std::isfinite(v.get<double>())) {
        return Status::InvalidArgument(p + ": field '" + key +
                                       "' must be a non-negative number, got " + JsonExcerpt(v));
      }
      (key == "promote_above" ? h.promote_above : h.demote_below) = v.get<double>();
    } else {
      return Status::InvalidArgument(p + ": unknown field '" + key + "'");
    }
  }
  if (h.demote_below > h.promote_above) {
    return Status::InvalidArgument(p + ": field 'demote_below' (" + std::to_string(h.demote_below) +
                                   ") must not exceed 'promote_above' (" +
                                   std::to_string(h.promote_above) + ")");
  }
  return h;
}

Result<HotnessOptions> LoadHotnessOptions(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(auto j, ReadJsonFile(path));
  return HotnessOptionsFromJson(j, path);
}

nlohmann::json HotnessOptionsToJson(const HotnessOptions& h) {
  return {{"window", h.window},
          {"update_every", h.update_every},
          {"promote_above", h.promote_above},
          {"demote_below", h.demote_below}};
}

// ---- HotnessTracker ----------------------------------------------------------------------

HotnessTracker::HotnessTracker(int64_t num_experts, int64_t top_k, const HotnessOptions& options)
    : opt_(options), num_experts_(num_experts), top_k_(top_k) {
  const double share =
      num_experts > 0 ? static_cast<double>(top_k) / static_cast<double>(num_experts) : 0;
  promote_ = options.promote_above * share;
  demote_ = options.demote_below * share;
  ring_.assign(static_cast<size_t>(std::max<int64_t>(1, options.window) * top_k), -1);
  window_count_.assign(static_cast<size_t>(num_experts), 0);
  experts_.resize(static_cast<size_t>(num_experts));
}

void HotnessTracker::AddToken(std::span<const int32_t> experts) {
  const int64_t slot = tokens_ % opt_.window;
  int32_t* r = ring_.data() + slot * top_k_;
  for (int64_t j = 0; j < top_k_; ++j) {
    if (r[j] >= 0) --window_count_[static_cast<size_t>(r[j])];
    r[j] = j < static_cast<int64_t>(experts.size()) ? experts[static_cast<size_t>(j)] : -1;
    if (r[j] >= 0) ++window_count_[static_cast<size_t>(r[j])];
  }
  ++tokens_;
  if (tokens_ >= opt_.window && (tokens_ - opt_.window) % opt_.update_every == 0) Update();
}

void HotnessTracker::Update() {
  const bool first = updates_ == 0;
  for (int64_t e = 0; e < num_experts_; ++e) {
    ExpertHotness& h = experts_[static_cast<size_t>(e)];
    const double f = static_cast<double>(window_count_[static_cast<size_t>(e)]) /
                     static_cast<double>(opt_.window);
    if (first) {
      h.hot = f > promote_;
      h.freq_min = h.freq_max = f;
    } else if (!h.hot && f > promote_) {
      h.hot = true;
      ++h.promotions;
    } else if (h.hot && f < demote_) {
      h.hot = false;
      ++h.demotions;
    }
    h.freq_sum += f;
    h.freq_min = std::min(h.freq_min, f);
    h.freq_max = std::max(h.freq_max, f);
    if (h.hot) {
      ++h.hot_updates;
      ++hot_set_sum_;
    }
  }
  ++updates_;
}

namespace internal {

RoutingProfile MakeBlankProfile(const ModelConfig& c, const std::vector<std::string>& domains,
                                bool activations, const ProfileOptions& options) {
  RoutingProfile prof;
  prof.model_type = c.model_type;
  prof.num_experts = c.num_experts;
  prof.top_k = c.top_k;
  prof.hidden = c.hidden_size;
  prof.moe_ff = c.moe_intermediate_size;
  prof.context = options.context;
  prof.hotness = options.hotness;
  prof.tiers = options.tiers;
  prof.top_pairs = options.top_pairs;
  for (const std::string& d : domains) prof.domains.push_back({d, {}, {}, 0, 0});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerProfile lp;
    lp.layer = static_cast<int>(l);
    lp.moe = c.IsMoeLayer(l);
    const size_t h2 = static_cast<size_t>(c.hidden_size * c.hidden_size);
    const bool gram = activations && options.gram;
    if (activations) {
      lp.attn_in_sq.assign(static_cast<size_t>(c.hidden_size), 0.0);
      lp.mlp_in_sq.assign(static_cast<size_t>(c.hidden_size), 0.0);
    }
    if (gram) {
      lp.attn_in_gram.assign(h2, 0.0);
      lp.mlp_in_gram.assign(h2, 0.0);
    }
    if (lp.moe) {
      lp.experts.resize(static_cast<size_t>(c.num_experts));
      for (ExpertUsage& u : lp.experts) u.domain_counts.assign(domains.size(), 0);
      lp.pair_counts.assign(static_cast<size_t>(c.num_experts * c.num_experts), 0);
      if (activations) {
        lp.expert_in_sq.assign(static_cast<size_t>(c.num_experts * c.hidden_size), 0.0);
        lp.expert_act_sq.assign(static_cast<size_t>(c.num_experts * c.moe_intermediate_size), 0.0);
      }
      if (gram) {
        lp.expert_in_gram.assign(static_cast<size_t>(c.num_experts) * h2, 0.0);
        lp.expert_act_gram.assign(
            static_cast<size_t>(c.num_experts * c.moe_intermediate_size * c.moe_intermediate_size),
            0.0);
      }
    }
    prof.layers.push_back(std::move(lp));
  }
  return prof;
}

int DomainIndex(std::vector<std::string>* domains, const std::string& name) {
  auto it = std::find(domains->begin(), domains->end(), name);
  if (it != domains->end()) return static_cast<int>(it - domains->begin());
  domains->push_back(name);
  return static_cast<int>(domains->size() - 1);
}

RoutingFolder::RoutingFolder(RoutingProfile* profile) : p_(profile) {
  hot_.resize(p_->layers.size());
  for (size_t l = 0; l < p_->layers.size(); ++l) {
    if (p_->layers[l].moe) hot_[l] = HotnessTracker(p_->num_experts, p_->top_k, p_->hotness);
  }
}

void RoutingFolder::Add(int layer, int domain, int64_t tokens, const int32_t* experts,
                        const float* weights) {
  LayerProfile& l = p_->layers[static_cast<size_t>(layer)];
  HotnessTracker& hot = hot_[static_cast<size_t>(layer)];
  const int64_t k = p_->top_k, E = p_->num_experts;
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t* ids = experts + t * k;
    const float* w = weights + t * k;
    for (int64_t j = 0; j < k; ++j) {
      ExpertUsage& u = l.experts[static_cast<size_t>(ids[j])];
      ++u.count;
      u.gate_mass += w[j];
      u.rank_sum += j;
      ++u.domain_counts[static_cast<size_t>(domain)];
      for (int64_t j2 = j + 1; j2 < k; ++j2) {
        const int64_t a = std::min(ids[j], ids[j2]), b = std::max(ids[j], ids[j2]);
        ++l.pair_counts[static_cast<size_t>(a * E + b)];
      }
    }
    hot.AddToken(std::span<const int32_t>(ids, static_cast<size_t>(k)));
  }
}

void RoutingFolder::Finish() {
  const int64_t E = p_->num_experts;
  for (size_t li = 0; li < p_->layers.size(); ++li) {
    LayerProfile& l = p_->layers[li];
    if (!l.moe) continue;
    const HotnessTracker& hot = hot_[li];
    l.hotness_updates = hot.updates();
    l.hot_set_sum = hot.hot_set_sum();
    std::vector<int64_t> counts;
    for (size_t e = 0; e < l.experts.size(); ++e) {
      l.experts[e].hotness = hot.experts()[e];
      counts.push_back(l.experts[e].count);
    }
    const auto tiers = AssignTiers(counts, p_->tiers);
    for (size_t e = 0; e < l.experts.size(); ++e) l.experts[e].tier = tiers[e];
    // Top pairs: by count (descending), ties by (a, b).
    std::vector<ExpertPair> pairs;
    for (int64_t a = 0; a < E; ++a) {
      for (int64_t b = a + 1; b < E; ++b) {
        const int64_t n = l.pair_counts[static_cast<size_t>(a * E + b)];
        if (n > 0) pairs.push_back({static_cast<int>(a), static_cast<int>(b), n, 0.0});
      }
    }
    const size_t keep =
        std::min(pairs.size(), static_cast<size_t>(std::max<int64_t>(0, p_->top_pairs)));
    std::partial_sort(pairs.begin(), pairs.begin() + static_cast<std::ptrdiff_t>(keep), pairs.end(),
                      [](const ExpertPair& x, const ExpertPair& y) {
                        if (x.count != y.count) return x.count > y.count;
                        return x.a != y.a ? x.a < y.a : x.b < y.b;
                      });
    pairs.resize(keep);
    const double tokens = static_cast<double>(hot.tokens());
    for (ExpertPair& pr : pairs) {
      const double ca = static_cast<double>(l.experts[static_cast<size_t>(pr.a)].count);
      const double cb = static_cast<double>(l.experts[static_cast<size_t>(pr.b)].count);
      pr.lift = ca > 0 && cb > 0 ? static_cast<double>(pr.count) * tokens / (ca * cb) : 0.0;
    }
    l.top_pairs = std::move(pairs);
  }
}

}  // namespace internal
}  // namespace moeq
