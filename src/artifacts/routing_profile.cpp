#include "moeq/artifacts/routing_profile.h"

#include "artifacts/fields.h"
#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"

namespace moeq::artifacts {
namespace {

constexpr const char* kEnvelope[] = {"schema", "version", "producer", "inputs", "options"};
constexpr const char* kBody[] = {"model", "calibration",  "domains", "hotness",
                                 "tiers", "coactivation", "layers"};

bool OneOf(const std::string& k, const auto& names) {
  for (const char* n : names) {
    if (k == n) return true;
  }
  return false;
}

Result<const nlohmann::json*> Object(const nlohmann::json& j, const char* key, const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_object()) return c.Error(key, "expected an object");
  return v;
}

Result<const nlohmann::json*> Array(const nlohmann::json& j, const char* key, const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_array()) return c.Error(key, "expected an array");
  return v;
}

// An optional field: *out keeps its default when the key is absent.
template <class T, class Get>
Status Opt(const nlohmann::json& j, const char* key, const FieldCtx& c, T* out, Get get) {
  if (FindField(j, key) == nullptr) return Status::Ok();
  auto r = get(j, key, c);
  if (!r.ok()) return r.status();
  *out = static_cast<T>(*r);
  return Status::Ok();
}

Result<std::vector<std::string>> Strings(const nlohmann::json& j, const char* key,
                                         const FieldCtx& c) {
  std::vector<std::string> out;
  const auto* v = FindField(j, key);
  if (v == nullptr) return out;
  if (!v->is_array()) return c.Error(key, "expected an array of strings");
  for (const auto& s : *v) {
    if (!s.is_string()) return c.Error(key, "expected strings, got " + JsonExcerpt(s));
    out.push_back(s.get<std::string>());
  }
  return out;
}

Result<std::map<std::string, int64_t>> Counts(const nlohmann::json& j, const char* key,
                                              const FieldCtx& c) {
  MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* o, Object(j, key, c));
  std::map<std::string, int64_t> out;
  for (const auto& [k, v] : o->items()) {
    if (!v.is_number_integer()) return c.Error(std::string(key) + "." + k, "expected an integer");
    out[k] = v.get<int64_t>();
  }
  return out;
}

Result<RoutingExpert> ParseExpert(const nlohmann::json& e, const FieldCtx& c, size_t index) {
  if (!e.is_object()) return Status::Corruption(c.where + " must be an object");
  RoutingExpert x;
  x.expert = static_cast<int64_t>(index);
  MOEQ_RETURN_IF_ERROR(Opt(e, "expert", c, &x.expert, GetInt));
  MOEQ_ASSIGN_OR_RETURN(x.count, GetInt(e, "count", c));
  if (x.count < 0) return c.Error("count", "negative");
  MOEQ_ASSIGN_OR_RETURN(x.gate_mass, GetNumber(e, "gate_mass", c));
  MOEQ_RETURN_IF_ERROR(Opt(e, "frac", c, &x.frac, GetNumber));
  MOEQ_RETURN_IF_ERROR(Opt(e, "mean_gate", c, &x.mean_gate, GetNumber));
  MOEQ_RETURN_IF_ERROR(Opt(e, "mean_rank", c, &x.mean_rank, GetNumber));
  if (FindField(e, "prob_mass") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(x.prob_mass, GetNumber(e, "prob_mass", c));
  }
  MOEQ_RETURN_IF_ERROR(Opt(e, "tier", c, &x.tier, GetString));
  if (FindField(e, "domain_counts") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(x.domain_counts, Counts(e, "domain_counts", c));
  }
  if (FindField(e, "hotness") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* h, Object(e, "hotness", c));
    const FieldCtx hc{c.where + ".hotness"};
    RoutingExpertHotness eh;
    MOEQ_RETURN_IF_ERROR(Opt(*h, "hot_fraction", hc, &eh.hot_fraction, GetNumber));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "promotions", hc, &eh.promotions, GetInt));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "demotions", hc, &eh.demotions, GetInt));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "hot_at_end", hc, &eh.hot_at_end, GetBool));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "freq_mean", hc, &eh.freq_mean, GetNumber));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "freq_min", hc, &eh.freq_min, GetNumber));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "freq_max", hc, &eh.freq_max, GetNumber));
    x.hotness = eh;
  }
  return x;
}

Result<RoutingLayer> ParseLayer(const nlohmann::json& lj, const FieldCtx& c) {
  if (!lj.is_object()) return Status::Corruption(c.where + " must be an object");
  RoutingLayer l;
  MOEQ_ASSIGN_OR_RETURN(l.layer, GetInt(lj, "layer", c));
  MOEQ_ASSIGN_OR_RETURN(l.moe, GetBool(lj, "moe", c));
  MOEQ_ASSIGN_OR_RETURN(l.tokens, GetInt(lj, "tokens", c));
  if (!l.moe) return l;
  MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* ex, Array(lj, "experts", c));
  for (size_t e = 0; e < ex->size(); ++e) {
    const FieldCtx ec{c.where + ".experts[" + std::to_string(e) + "]"};
    MOEQ_ASSIGN_OR_RETURN(RoutingExpert x, ParseExpert((*ex)[e], ec, e));
    l.experts.push_back(std::move(x));
  }
  if (FindField(lj, "summary") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* s, Object(lj, "summary", c));
    const FieldCtx sc{c.where + ".summary"};
    RoutingLayerSummary sum;
    MOEQ_ASSIGN_OR_RETURN(sum.max_count, GetInt(*s, "max_count", sc));
    MOEQ_ASSIGN_OR_RETURN(sum.min_count, GetInt(*s, "min_count", sc));
    MOEQ_ASSIGN_OR_RETURN(sum.unused_experts, GetInt(*s, "unused_experts", sc));
    MOEQ_ASSIGN_OR_RETURN(sum.max_over_mean, GetNumber(*s, "max_over_mean", sc));
    MOEQ_ASSIGN_OR_RETURN(sum.hottest_expert, GetInt(*s, "hottest_expert", sc));
    MOEQ_ASSIGN_OR_RETURN(sum.normalized_entropy, GetNumber(*s, "normalized_entropy", sc));
    MOEQ_ASSIGN_OR_RETURN(sum.tiers, Counts(*s, "tiers", sc));
    l.summary = std::move(sum);
  }
  if (FindField(lj, "coactivation") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* co, Object(lj, "coactivation", c));
    const FieldCtx cc{c.where + ".coactivation"};
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* tp, Array(*co, "top_pairs", cc));
    std::vector<RoutingPair> pairs;
    for (size_t i = 0; i < tp->size(); ++i) {
      const FieldCtx pc{cc.where + ".top_pairs[" + std::to_string(i) + "]"};
      const nlohmann::json& pj = (*tp)[i];
      RoutingPair p;
      const auto* ab = FindField(pj, "experts");
      if (ab == nullptr) return pc.Error("experts", "missing");
      if (!ab->is_array() || ab->size() != 2 || !(*ab)[0].is_number_integer() ||
          !(*ab)[1].is_number_integer())
        return pc.Error("experts", "expected [a, b], got " + JsonExcerpt(*ab));
      p.a = (*ab)[0].get<int64_t>();
      p.b = (*ab)[1].get<int64_t>();
      MOEQ_ASSIGN_OR_RETURN(p.count, GetInt(pj, "count", pc));
      MOEQ_ASSIGN_OR_RETURN(p.lift, GetNumber(pj, "lift", pc));
      pairs.push_back(p);
    }
    l.top_pairs = std::move(pairs);
  }
  if (FindField(lj, "hotness") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* h, Object(lj, "hotness", c));
    const FieldCtx hc{c.where + ".hotness"};
    RoutingLayerHotness lh;
    MOEQ_RETURN_IF_ERROR(Opt(*h, "updates", hc, &lh.updates, GetInt));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "mean_hot_set", hc, &lh.mean_hot_set, GetNumber));
    MOEQ_RETURN_IF_ERROR(Opt(*h, "churn", hc, &lh.churn, GetInt));
    l.hotness = lh;
  }
  return l;
}

}  // namespace

Result<RoutingProfileArtifact> ParseRoutingProfile(const nlohmann::json& j,
                                                   std::string_view path) try {
  if (!j.is_object())
    return Status::Corruption(std::string(path) + ": expected a JSON object (a routing profile)");
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, kRoutingProfileSchema, kRoutingProfileVersion, path));
  const FieldCtx c{std::string(path)};
  RoutingProfileArtifact p;
  for (const auto& [k, v] : j.items()) {
    if (OneOf(k, kEnvelope)) {
      p.header[k] = v;
    } else if (!OneOf(k, kBody)) {
      p.sections[k] = v;
    }
  }
  MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* m, Object(j, "model", c));
  const FieldCtx mc{c.where + ": model"};
  MOEQ_ASSIGN_OR_RETURN(p.model.model_type, GetString(*m, "model_type", mc));
  MOEQ_ASSIGN_OR_RETURN(p.model.num_experts, GetInt(*m, "num_experts", mc));
  MOEQ_ASSIGN_OR_RETURN(p.model.top_k, GetInt(*m, "top_k", mc));
  MOEQ_RETURN_IF_ERROR(Opt(*m, "num_layers", mc, &p.model.num_layers, GetInt));
  MOEQ_RETURN_IF_ERROR(Opt(*m, "hidden_size", mc, &p.model.hidden_size, GetInt));
  MOEQ_RETURN_IF_ERROR(
      Opt(*m, "moe_intermediate_size", mc, &p.model.moe_intermediate_size, GetInt));

  MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* cal, Object(j, "calibration", c));
  const FieldCtx cc{c.where + ": calibration"};
  MOEQ_ASSIGN_OR_RETURN(p.calibration.tokens, GetInt(*cal, "tokens", cc));
  MOEQ_ASSIGN_OR_RETURN(p.calibration.windows, GetInt(*cal, "windows", cc));
  MOEQ_ASSIGN_OR_RETURN(p.calibration.context, GetInt(*cal, "context", cc));
  MOEQ_RETURN_IF_ERROR(Opt(*cal, "source", cc, &p.calibration.source, GetString));

  if (FindField(j, "domains") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* ds, Array(j, "domains", c));
    for (size_t i = 0; i < ds->size(); ++i) {
      const FieldCtx dc{c.where + ": domains[" + std::to_string(i) + "]"};
      const nlohmann::json& d = (*ds)[i];
      if (!d.is_object()) return Status::Corruption(dc.where + " must be an object");
      RoutingDomain di;
      MOEQ_ASSIGN_OR_RETURN(di.name, GetString(d, "name", dc));
      MOEQ_ASSIGN_OR_RETURN(di.sources, Strings(d, "sources", dc));
      MOEQ_ASSIGN_OR_RETURN(di.sha256, Strings(d, "sha256", dc));
      MOEQ_RETURN_IF_ERROR(Opt(d, "tokens", dc, &di.tokens, GetInt));
      MOEQ_RETURN_IF_ERROR(Opt(d, "windows", dc, &di.windows, GetInt));
      p.domains.push_back(std::move(di));
    }
  }
  if (FindField(j, "hotness") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* h, Object(j, "hotness", c));
    p.hotness = *h;
  }
  if (FindField(j, "tiers") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* t, Object(j, "tiers", c));
    p.tiers = *t;
  }
  if (FindField(j, "coactivation") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* co, Object(j, "coactivation", c));
    MOEQ_RETURN_IF_ERROR(
        Opt(*co, "top_pairs", FieldCtx{c.where + ": coactivation"}, &p.top_pairs, GetInt));
  }
  MOEQ_ASSIGN_OR_RETURN(const nlohmann::json* layers, Array(j, "layers", c));
  for (size_t i = 0; i < layers->size(); ++i) {
    const FieldCtx lc{c.where + ": layers[" + std::to_string(i) + "]"};
    MOEQ_ASSIGN_OR_RETURN(RoutingLayer l, ParseLayer((*layers)[i], lc));
    p.layers.push_back(std::move(l));
  }
  return p;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Result<RoutingProfileArtifact> ReadRoutingProfile(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  return ParseRoutingProfile(j, path);
}

nlohmann::json RoutingProfileToJson(const RoutingProfileArtifact& p) {
  nlohmann::json j = p.header;
  for (const auto& [k, v] : p.sections.items()) j[k] = v;
  const RoutingModelInfo& m = p.model;
  j["model"] = {{"model_type", m.model_type},
                {"num_experts", m.num_experts},
                {"top_k", m.top_k},
                {"num_layers", m.num_layers},
                {"hidden_size", m.hidden_size},
                {"moe_intermediate_size", m.moe_intermediate_size}};
  const RoutingCalibration& cal = p.calibration;
  j["calibration"] = {{"tokens", cal.tokens},
                      {"windows", cal.windows},
                      {"context", cal.context},
                      {"source", cal.source}};
  nlohmann::json domains = nlohmann::json::array();
  for (const RoutingDomain& d : p.domains) {
    domains.push_back({{"name", d.name},
                       {"sources", d.sources},
                       {"sha256", d.sha256},
                       {"tokens", d.tokens},
                       {"windows", d.windows}});
  }
  j["domains"] = std::move(domains);
  if (!p.hotness.is_null()) j["hotness"] = p.hotness;
  if (!p.tiers.is_null()) j["tiers"] = p.tiers;
  j["coactivation"] = {{"top_pairs", p.top_pairs}};
  nlohmann::json layers = nlohmann::json::array();
  for (const RoutingLayer& l : p.layers) {
    nlohmann::json lj = {{"layer", l.layer}, {"moe", l.moe}, {"tokens", l.tokens}};
    if (l.moe) {
      nlohmann::json ex = nlohmann::json::array();
      for (const RoutingExpert& x : l.experts) {
        nlohmann::json ej = {{"expert", x.expert},       {"count", x.count},
                             {"frac", x.frac},           {"mean_gate", x.mean_gate},
                             {"gate_mass", x.gate_mass}, {"mean_rank", x.mean_rank}};
        if (!x.tier.empty()) ej["tier"] = x.tier;
        if (x.prob_mass) ej["prob_mass"] = *x.prob_mass;
        if (x.domain_counts) {
          nlohmann::json dc = nlohmann::json::object();
          for (const auto& [name, n] : *x.domain_counts) dc[name] = n;
          ej["domain_counts"] = std::move(dc);
        }
        if (x.hotness) {
          const RoutingExpertHotness& h = *x.hotness;
          ej["hotness"] = {{"hot_fraction", h.hot_fraction}, {"promotions", h.promotions},
                           {"demotions", h.demotions},       {"hot_at_end", h.hot_at_end},
                           {"freq_mean", h.freq_mean},       {"freq_min", h.freq_min},
                           {"freq_max", h.freq_max}};
        }
        ex.push_back(std::move(ej));
      }
      lj["experts"] = std::move(ex);
      if (l.summary) {
        const RoutingLayerSummary& s = *l.summary;
        nlohmann::json tiers = nlohmann::json::object();
        for (const auto& [name, n] : s.tiers) tiers[name] = n;
        lj["summary"] = {
            {"max_count", s.max_count},           {"min_count", s.min_count},
            {"unused_experts", s.unused_experts}, {"max_over_mean", s.max_over_mean},
            {"hottest_expert", s.hottest_expert}, {"normalized_entropy", s.normalized_entropy},
            {"tiers", std::move(tiers)}};
      }
      if (l.top_pairs) {
        nlohmann::json pairs = nlohmann::json::array();
        for (const RoutingPair& pr : *l.top_pairs)
          pairs.push_back({{"experts", {pr.a, pr.b}}, {"count", pr.count}, {"lift", pr.lift}});
        lj["coactivation"] = {{"top_pairs", std::move(pairs)}};
      }
      if (l.hotness) {
        lj["hotness"] = {{"updates", l.hotness->updates},
                         {"mean_hot_set", l.hotness->mean_hot_set},
                         {"churn", l.hotness->churn}};
      }
    }
    layers.push_back(std::move(lj));
  }
  j["layers"] = std::move(layers);
  return j;
}

}  // namespace moeq::artifacts
