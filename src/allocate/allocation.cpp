// Allocation policies (MINT MCKP, hotness-weighted MCKP, DynaMINT tiers), the SQNR veto, pins and
// bounds, and the allocation.json / summary outputs.
#include "moeq/allocate/allocation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "moeq/quant/quant_format.h"

namespace moeq::alloc {
namespace {

struct LayerRouting {
  std::vector<int64_t> counts;
  double mean = 0;
  std::vector<ExpertTier> tiers;
};

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string HumanBytes(uint64_t b) {
  const double x = static_cast<double>(b);
  if (x >= 1024.0 * 1024 * 1024) return Fixed(x / (1024.0 * 1024 * 1024), 3) + " GiB";
  if (x >= 1024.0 * 1024) return Fixed(x / (1024.0 * 1024), 3) + " MiB";
  if (x >= 1024.0) return Fixed(x / 1024.0, 1) + " KiB";
  return std::to_string(b) + " B";
}

// The config of `t` called `format` (a registry name or any spec ParseFormatSpec accepts), or -1.
// With several encoders per format, the one with the lowest error.
int FindConfig(const SensitivityTensor& t, const std::string& format) {
  auto best_named = [&](const std::string& name) {
    int best = -1;
    for (size_t c = 0; c < t.configs.size(); ++c) {
      if (t.configs[c].format != name) continue;
      if (best < 0 || t.configs[c].nrmse < t.configs[static_cast<size_t>(best)].nrmse)
        best = static_cast<int>(c);
    }
    return best;
  };
  if (int c = best_named(format); c >= 0) return c;
  const DType src = ParseDType(t.dtype).value_or(DType::kBF16);
  auto f = quant::ParseFormatSpec(format, src);
  if (!f.ok()) return -1;
  return best_named(std::string((*f)->name));
}

std::string ConfigList(const SensitivityTensor& t) {
  std::string s;
  for (const auto& c : t.configs) s += (s.empty() ? "" : ", ") + c.format;
  return s;
}

// Re-costs the model's items at the bytes of the written file; for a stacked target, one item
// per (layer, role) group of routed experts whose options are the formats every member can take
// (cost = Σ of the members' costs, bytes = what the writer stores for the group).
Status ApplyTargetCosting(const SensitivityFile& sens, const TargetCosting& tc,
                          AllocationModel* m) {
  if (!tc.item_bytes) return Status::Internal("target costing without an item_bytes function");
  std::vector<std::vector<size_t>> items;
  std::map<std::pair<int, int>, size_t> group_item;
  for (size_t ti = 0; ti < sens.tensors.size(); ++ti) {
    const SensitivityTensor& t = sens.tensors[ti];
    if (tc.stacked && IsExpertRole(t.role) && t.expert >= 0) {
      const auto key = std::make_pair(t.layer, static_cast<int>(t.role));
      auto [it, inserted] = group_item.emplace(key, items.size());
      if (inserted) items.emplace_back();
      items[it->second].push_back(ti);
    } else {
      items.push_back({ti});
    }
  }
  MckpProblem p;
  std::vector<std::vector<std::vector<int>>> item_configs;
  std::vector<uint64_t> ob;
  std::vector<double> oc;
  for (const auto& members : items) {
    // Per member: format -> (its lowest-cost option of that format, cost).
    std::vector<std::map<std::string, std::pair<int, double>>> per(members.size());
    std::vector<std::string> order;  // formats in the first member's option order
    for (size_t k = 0; k < members.size(); ++k) {
      const size_t ti = members[k];
      const uint32_t off = m->problem.offsets[ti];
      for (size_t o = 0; o < m->option_config[ti].size(); ++o) {
        const int c = m->option_config[ti][o];
        const double cost = m->problem.cost[off + o];
        const std::string& f = sens.tensors[ti].configs[static_cast<size_t>(c)].format;
        auto it = per[k].find(f);
        if (it == per[k].end()) {
          per[k].emplace(f, std::make_pair(c, cost));
          if (k == 0) order.push_back(f);
        } else if (cost < it->second.second) {
          it->second = {c, cost};
        }
      }
    }
    std::vector<const SensitivityTensor*> ptrs;
    for (size_t ti : members) ptrs.push_back(&sens.tensors[ti]);
    ob.clear();
    oc.clear();
    std::vector<std::vector<int>> configs;
    for (const std::string& f : order) {
      std::vector<int> cfgs;
      double cost = 0;
      for (size_t k = 0; k < members.size(); ++k) {
        auto it = per[k].find(f);
        if (it == per[k].end()) break;
        cfgs.push_back(it->second.first);
        cost += it->second.second;
      }
      if (cfgs.size() != members.size()) continue;
      auto bytes = tc.item_bytes(ptrs, f);
      if (!bytes.ok()) {
        return bytes.status().WithContext(sens.path + ": tensor '" + ptrs.front()->name +
                                          "', format " + f + ", target " + tc.target);
      }
      ob.push_back(*bytes);
      oc.push_back(cost);
      configs.push_back(std::move(cfgs));
    }
    if (configs.empty()) {
      const SensitivityTensor& t = *ptrs.front();
      return Status::Unsupported(
          sens.path + ": layer " + std::to_string(t.layer) + " " + t.role_name + ": its " +
          std::to_string(members.size()) +
          " experts have no format in common (tiers, pins, bounds or the SQNR veto gave them "
          "different ones); --target " +
          tc.target +
          " stores one format per (layer, projection): use --target mlx for per-expert formats");
    }
    p.AddItem(ob, oc);
    item_configs.push_back(std::move(configs));
  }
  m->problem = std::move(p);
  m->item_tensors = std::move(items);
  m->item_option_configs = std::move(item_configs);
  m->target = tc;
  m->full_precision_bytes = m->MaxFileBytes();
  return Status::Ok();
}

}  // namespace

Result<Policy> ParsePolicy(std::string_view name) {
  if (name == "mckp") return Policy::kMckp;
  if (name == "mckp-hotness") return Policy::kMckpHotness;
  if (name == "tiered") return Policy::kTiered;
  return Status::InvalidArgument("--policy '" + std::string(name) +
                                 "': expected mckp, mckp-hotness or tiered");
}

Result<Objective> ParseObjective(std::string_view name) {
  if (name == "nrmse") return Objective::kNrmse;
  if (name == "mse") return Objective::kMse;
  return Status::InvalidArgument("--objective '" + std::string(name) + "': expected nrmse or mse");
}

std::string_view ObjectiveName(Objective o) { return o == Objective::kMse ? "mse" : "nrmse"; }

std::string_view PolicyName(Policy p) {
  switch (p) {
    case Policy::kMckp:
      return "mckp";
    case Policy::kMckpHotness:
      return "mckp-hotness";
    case Policy::kTiered:
      return "tiered";
  }
  return "?";
}

Result<AllocationModel> BuildAllocationModel(const SensitivityFile& sens,
                                             const AllocationSettings& s) {
  if (s.policy != Policy::kMckp && !s.profile) {
    return Status::InvalidArgument("--policy " + std::string(PolicyName(s.policy)) +
                                   " needs a routing profile (--profile routing_profile.json)");
  }
  std::map<int, LayerRouting> routing;
  if (s.profile) {
    for (const auto& l : s.profile->layers) {
      if (!l.moe || l.experts.empty()) continue;
      LayerRouting r;
      for (const auto& e : l.experts) r.counts.push_back(e.count);
      double sum = 0;
      for (int64_t c : r.counts) sum += static_cast<double>(c);
      r.mean = sum / static_cast<double>(r.counts.size());
      r.tiers = AssignTiers(r.counts, s.tiers);
      routing[l.layer] = std::move(r);
    }
  }
  int last_layer = -1;
  for (const auto& t : sens.tensors) last_layer = std::max(last_layer, t.layer);
  // Exposure of routed experts (objective mse): top_k over the experts of the layer.
  std::map<int, int> experts_in_layer;
  for (const auto& t : sens.tensors) {
    if (IsExpertRole(t.role) && t.expert >= 0)
      experts_in_layer[t.layer] = std::max(experts_in_layer[t.layer], t.expert + 1);
  }
  int64_t top_k = s.profile ? s.profile->top_k : 0;
  if (top_k <= 0 && sens.header.contains("inputs") && sens.header["inputs"].is_object()) {
    const auto& in = sens.header["inputs"];
    if (in.contains("top_k") && in["top_k"].is_number_integer()) top_k = in["top_k"].get<int64_t>();
  }
  if (s.objective == Objective::kMse && !experts_in_layer.empty() && top_k <= 0) {
    return Status::InvalidArgument(
        sens.path +
        ": --objective mse needs the model's top_k (experts per token) for its routed "
        "experts: the header has no inputs.top_k (re-run moeq-analyze) and no --profile was given");
  }

  AllocationModel m;
  m.base.resize(sens.tensors.size());
  m.option_config.resize(sens.tensors.size());
  std::vector<uint64_t> ob;
  std::vector<double> oc;
  for (size_t ti = 0; ti < sens.tensors.size(); ++ti) {
    const SensitivityTensor& t = sens.tensors[ti];
    if (t.configs.empty())
      return Status::Corruption(sens.path + ":" + std::to_string(t.line) + ": tensor '" + t.name +
                                "' has no config");
    TensorDecision& d = m.base[ti];
    d.prior = PriorOf(t, s.priors, last_layer);
    d.reason = "chosen";
    m.total_params += t.params;
    uint64_t max_bytes = 0;
    for (const auto& c : t.configs) max_bytes = std::max(max_bytes, c.bytes);
    m.full_precision_bytes += max_bytes;

    // Routing: tier and hotness of a routed expert.
    const LayerRouting* lr = nullptr;
    if (IsExpertRole(t.role) && t.expert >= 0) {
      auto it = routing.find(t.layer);
      if (it != routing.end() && static_cast<size_t>(t.expert) < it->second.counts.size())
        lr = &it->second;
      if (s.profile && lr == nullptr) {
        return Status::InvalidArgument(sens.path + ":" + std::to_string(t.line) + ": tensor '" +
                                       t.name + "' (layer " + std::to_string(t.layer) +
                                       ", expert " + std::to_string(t.expert) +
                                       ") has no routing counts in the profile");
      }
    }
    if (s.objective == Objective::kMse && IsExpertRole(t.role) && t.expert >= 0) {
      d.exposure = std::min(
          1.0, static_cast<double>(top_k) / static_cast<double>(experts_in_layer[t.layer]));
    }
    std::optional<ExpertTier> tier;
    if (lr != nullptr) {
      tier = lr->tiers[static_cast<size_t>(t.expert)];
      d.tier = std::string(TierName(*tier));
      if (s.policy == Policy::kMckpHotness) {
        const double ratio =
            lr->mean > 0 ? static_cast<double>(lr->counts[static_cast<size_t>(t.expert)]) / lr->mean
                         : 1.0;
        d.alpha =
            std::clamp(std::pow(ratio, s.priors.gamma), s.priors.alpha_min, s.priors.alpha_max);
      }
    }

    // Rules: bounds intersect, the last matching pin wins.
    int min_bits = 0, max_bits = 0;
    const AllocRule* pin = nullptr;
    const AllocRule* bound_rule = nullptr;
    for (const auto& r : s.priors.rules) {
      if (!r.Matches(t)) continue;
      if (r.min_bits > 0) {
        min_bits = std::max(min_bits, r.min_bits);
        bound_rule = &r;
      }
      if (r.max_bits > 0) {
        max_bits = max_bits == 0 ? r.max_bits : std::min(max_bits, r.max_bits);
        bound_rule = &r;
      }
      if (!r.format.empty()) pin = &r;
    }
    std::vector<int> candidates;
    for (size_t c = 0; c < t.configs.size(); ++c) {
      const int bits = t.configs[c].bits;
      if (min_bits > 0 && bits < min_bits) continue;
      if (max_bits > 0 && bits > max_bits) continue;
      candidates.push_back(static_cast<int>(c));
    }
    if (candidates.empty()) {
      return Status::InvalidArgument(
          bound_rule->where + ": bits bounds [" + std::to_string(min_bits) + ", " +
          (max_bits ? std::to_string(max_bits) : std::string("∞")) +
          "] leave no config for tensor '" + t.name + "' (configs: " + ConfigList(t) + ")");
    }
    auto admissible = [&](int c) {
      return t.configs[static_cast<size_t>(c)].sqnr_db >= s.min_sqnr;
    };
    auto best_sqnr = [&](const std::vector<int>& from) {
      int best = from.front();
      for (int c : from) {
        if (t.configs[static_cast<size_t>(c)].sqnr_db >
            t.configs[static_cast<size_t>(best)].sqnr_db)
          best = c;
      }
      return best;
    };
    std::vector<int> options;
    if (pin != nullptr) {
      const int c = FindConfig(t, pin->format);
      if (c < 0) {
        return Status::InvalidArgument(
            pin->where + ": pins tensor '" + t.name + "' to '" + pin->format +
            "', which is not among its measured configs (" + ConfigList(t) + ")");
      }
      options = {c};
      d.reason = "pinned";
      if (!admissible(c)) d.note = "pinned below the SQNR floor";
    } else if (s.policy == Policy::kTiered && tier) {
      d.reason = "tier";
      const bool prune = *tier == ExpertTier::kPrunable && s.allow_prune;
      const std::string& fmt = *tier == ExpertTier::kCritical   ? s.tiers.critical_format
                               : *tier == ExpertTier::kStandard ? s.tiers.standard_format
                                                                : s.tiers.deprioritized_format;
      int c = FindConfig(t, fmt);
      if (c < 0) {
        return Status::Unsupported(sens.path + ":" + std::to_string(t.line) + ": tier format '" +
                                   fmt + "' of tensor '" + t.name + "' (" + d.tier +
                                   ") is not among its measured configs (" + ConfigList(t) + ")");
      }
      if (prune) {
        d.prune = true;  // stored as zeros: any format quantizes zeros exactly; keep the tier's
        options = {c};
      } else if (admissible(c) &&
                 std::find(candidates.begin(), candidates.end(), c) != candidates.end()) {
        options = {c};
      } else {
        // Bump to the cheapest admissible config with more bits (then any admissible one).
        const int tier_bits = t.configs[static_cast<size_t>(c)].bits;
        int bumped = -1;
        for (int pass = 0; pass < 2 && bumped < 0; ++pass) {
          for (int k : candidates) {
            if (!admissible(k) ||
                (pass == 0 && t.configs[static_cast<size_t>(k)].bits <= tier_bits))
              continue;
            if (bumped < 0 || t.configs[static_cast<size_t>(k)].bytes <
                                  t.configs[static_cast<size_t>(bumped)].bytes)
              bumped = k;
          }
        }
        if (bumped < 0) {
          bumped = best_sqnr(candidates);
          d.reason = "vetoed_forced";
          ++m.forced_tensors;
        }
        d.note =
            "tier format " + fmt + " " +
            (admissible(c)
                 ? std::string("outside the rule bounds")
                 : "vetoed (SQNR " + Fixed(t.configs[static_cast<size_t>(c)].sqnr_db, 2) + " dB)") +
            ": bumped to " + t.configs[static_cast<size_t>(bumped)].format;
        options = {bumped};
      }
    } else {
      for (int c : candidates) {
        if (admissible(c)) {
          options.push_back(c);
        } else {
          ++m.vetoed_configs;
        }
      }
      if (options.empty()) {
        options = {best_sqnr(candidates)};
        d.reason = "vetoed_forced";
        ++m.forced_tensors;
      }
    }
    ob.clear();
    oc.clear();
    for (int c : options) {
      const auto& cfg = t.configs[static_cast<size_t>(c)];
      ob.push_back(cfg.bytes);
      const double e = d.prune ? 1.0 : cfg.nrmse;
      // mse: the prior scales the error amplitude, so it enters the noise power squared.
      oc.push_back(s.objective == Objective::kMse ? d.prior * d.prior * d.alpha * d.exposure * e * e
                                                  : d.prior * d.alpha * e);
    }
    m.problem.AddItem(ob, oc);
    m.option_config[ti] = std::move(options);
  }
  if (s.target) MOEQ_RETURN_IF_ERROR(ApplyTargetCosting(sens, *s.target, &m));
  return m;
}

Result<AllocationResult> SolveAllocation(const SensitivityFile& sens, const AllocationModel& model,
                                         uint64_t budget, SolverKind solver) {
  MckpProblem p = model.problem;
  const uint64_t fixed = model.target ? model.target->fixed_bytes : 0;
  if (budget < fixed) {
    return Status::Unsupported("budget " + std::to_string(budget) + " bytes is below the " +
                               std::to_string(fixed) + " bytes the " + model.target->target +
                               " file spends whatever the allocation (header, metadata, tensors "
                               "not allocated)");
  }
  p.budget = budget - fixed;
  AllocationResult r;
  r.budget = budget;
  r.above_full_precision = p.budget >= p.MaxBytes();
  MOEQ_ASSIGN_OR_RETURN(r.solution, SolveMckp(p, solver));
  r.decisions = model.base;
  auto set = [&](size_t ti, int config) {
    TensorDecision& d = r.decisions[ti];
    d.config = config;
    const auto& cfg = sens.tensors[ti].configs[static_cast<size_t>(d.config)];
    d.nrmse = d.prune ? 1.0 : cfg.nrmse;
    d.sqnr_db = d.prune ? 0.0 : cfg.sqnr_db;
  };
  if (model.item_tensors.empty()) {
    for (size_t ti = 0; ti < sens.tensors.size(); ++ti)
      set(ti, model.option_config[ti][static_cast<size_t>(r.solution.choice[ti])]);
  } else {
    for (size_t i = 0; i < model.item_tensors.size(); ++i) {
      const auto& cfgs = model.item_option_configs[i][static_cast<size_t>(r.solution.choice[i])];
      for (size_t k = 0; k < model.item_tensors[i].size(); ++k)
        set(model.item_tensors[i][k], cfgs[k]);
    }
  }
  return r;
}

nlohmann::json AllocationToJson(const SensitivityFile& sens, const AllocationResult& r,
                                const AllocationModel& model, Policy policy,
                                std::optional<double> bpw) {
  nlohmann::json tensors = nlohmann::json::array();
  struct Tot {
    int64_t tensors = 0, params = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, Tot> by_role, by_format;
  std::map<int, Tot> by_layer;
  auto add = [](Tot& a, int64_t params, uint64_t bytes) {
    ++a.tensors;
    a.params += params;
    a.bytes += bytes;
  };
  for (size_t ti = 0; ti < sens.tensors.size(); ++ti) {
    const auto& t = sens.tensors[ti];
    const auto& d = r.decisions[ti];
    const auto& cfg = t.configs[static_cast<size_t>(d.config)];
    nlohmann::json o = {{"name", t.name},       {"format", cfg.format},
                        {"bits", cfg.bits},     {"group_size", cfg.group_size},
                        {"bytes", cfg.bytes},   {"nrmse", d.nrmse},
                        {"sqnr_db", d.sqnr_db}, {"prior", d.prior},
                        {"alpha", d.alpha},     {"reason", d.reason},
                        {"prune", d.prune},     {"role", t.role_name},
                        {"layer", t.layer},     {"expert", t.expert},
                        {"params", t.params}};
    if (!cfg.encoder.empty()) o["encoder"] = cfg.encoder;
    if (d.exposure != 1.0) o["exposure"] = d.exposure;
    if (!d.tier.empty()) o["tier"] = d.tier;
    if (!d.note.empty()) o["note"] = d.note;
    tensors.push_back(std::move(o));
    add(by_role[t.role_name], t.params, cfg.bytes);
    add(by_layer[t.layer], t.params, cfg.bytes);
    add(by_format[cfg.format], t.params, cfg.bytes);
  }
  auto tot_json = [](const Tot& a) {
    return nlohmann::json{
        {"tensors", a.tensors},
        {"params", a.params},
        {"bytes", a.bytes},
        {"bpw",
         a.params > 0 ? 8.0 * static_cast<double>(a.bytes) / static_cast<double>(a.params) : 0.0}};
  };
  nlohmann::json roles = nlohmann::json::object(), formats = nlohmann::json::object(),
                 layers = nlohmann::json::array();
  for (const auto& [k, v] : by_role) roles[k] = tot_json(v);
  for (const auto& [k, v] : by_format) formats[k] = tot_json(v);
  for (const auto& [k, v] : by_layer) {
    nlohmann::json l = tot_json(v);
    l["layer"] = k;
    layers.push_back(std::move(l));
  }
  const auto& s = r.solution;
  const double params = static_cast<double>(model.total_params);
  nlohmann::json budget = {
      {"bytes", r.budget},
      {"policy", std::string(PolicyName(policy))},
      {"scope",
       "the tensors listed in tensors[] (the quantizable tensors of the sensitivity file); "
       "tensors not listed keep their source dtype and are not counted"},
      {"min_feasible_bytes", model.problem.MinBytes()},
      {"full_precision_bytes", model.full_precision_bytes},
      {"above_full_precision", r.above_full_precision}};
  budget["bpw"] = bpw ? nlohmann::json(*bpw) : nlohmann::json(nullptr);
  if (model.target) {
    const auto& tc = *model.target;
    budget["target"] = tc.target;
    budget["scope"] =
        "the whole " + tc.target +
        " output (moeq-quantize): the tensors listed in tensors[] at the bytes that writer "
        "stores, plus fixed_bytes (header, metadata, tensors not listed, alignment)";
    budget["fixed_bytes"] = tc.fixed_bytes;
    budget["min_feasible_bytes"] = model.MinFileBytes();
    budget["per_expert_formats"] = !tc.stacked;
    budget["per_expert_formats_targets"] = nlohmann::json::array({"mlx"});
    budget["accuracy"] = tc.accuracy;
  }
  nlohmann::json result = {{"objective", s.objective},
                           {"lower_bound", s.lower_bound},
                           {"gap", s.gap},
                           {"bytes", s.bytes},
                           {"params", model.total_params},
                           {"bpw", params > 0 ? 8.0 * static_cast<double>(s.bytes) / params : 0.0},
                           {"solver", s.method},
                           {"vetoed_configs", model.vetoed_configs},
                           {"forced_tensors", model.forced_tensors}};
  if (model.target) {
    const uint64_t file = s.bytes + model.target->fixed_bytes;
    result["file_bytes"] = file;
    result["file_weights"] = model.target->weights;
    result["file_bpw"] = model.target->weights > 0 ? 8.0 * static_cast<double>(file) /
                                                         static_cast<double>(model.target->weights)
                                                   : 0.0;
  }
  return {{"budget", budget},
          {"result", result},
          {"tensors", tensors},
          {"totals", {{"by_role", roles}, {"by_layer", layers}, {"by_format", formats}}}};
}

std::string SummaryTable(const SensitivityFile& sens, const AllocationResult& r) {
  struct Row {
    int64_t tensors = 0, params = 0;
    uint64_t bytes = 0;
    std::map<std::string, int> formats;
  };
  std::map<std::string, Row> by_format, by_role;
  uint64_t total_bytes = 0;
  int64_t total_params = 0;
  for (size_t ti = 0; ti < sens.tensors.size(); ++ti) {
    const auto& t = sens.tensors[ti];
    const auto& cfg = t.configs[static_cast<size_t>(r.decisions[ti].config)];
    const std::string fmt = cfg.format +
                            (cfg.encoder.empty() || cfg.encoder == "rtn" ? "" : "+" + cfg.encoder) +
                            (r.decisions[ti].prune ? "(pruned)" : "");
    for (Row* row : {&by_format[fmt], &by_role[t.role_name]}) {
      ++row->tensors;
      row->params += t.params;
      row->bytes += cfg.bytes;
      ++row->formats[fmt];
    }
    total_bytes += cfg.bytes;
    total_params += t.params;
  }
  auto bpw = [](uint64_t b, int64_t p) {
    return p > 0 ? 8.0 * static_cast<double>(b) / static_cast<double>(p) : 0.0;
  };
  char line[256];
  std::string out = "format            tensors        params          bytes   share    bpw\n";
  for (const auto& [k, v] : by_format) {
    std::snprintf(
        line, sizeof line, "%-16s %8lld %13lld %14s %6.1f%% %6.3f\n", k.c_str(),
        static_cast<long long>(v.tensors), static_cast<long long>(v.params),
        HumanBytes(v.bytes).c_str(),
        total_bytes ? 100.0 * static_cast<double>(v.bytes) / static_cast<double>(total_bytes) : 0.0,
        bpw(v.bytes, v.params));
    out += line;
  }
  std::snprintf(line, sizeof line, "%-16s %8zu %13lld %14s %6.1f%% %6.3f\n\n", "total",
                sens.tensors.size(), static_cast<long long>(total_params),
                HumanBytes(total_bytes).c_str(), 100.0, bpw(total_bytes, total_params));
  out += line;
  out += "role              tensors        params          bytes    bpw  formats\n";
  for (const auto& [k, v] : by_role) {
    std::string mix;
    for (const auto& [f, n] : v.formats)
      mix += (mix.empty() ? "" : ", ") + f + "×" + std::to_string(n);
    std::snprintf(line, sizeof line, "%-16s %8lld %13lld %14s %6.3f  ", k.c_str(),
                  static_cast<long long>(v.tensors), static_cast<long long>(v.params),
                  HumanBytes(v.bytes).c_str(), bpw(v.bytes, v.params));
    out += line + mix + "\n";
  }
  return out;
}

}  // namespace moeq::alloc
