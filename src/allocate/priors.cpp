// Soft protection priors, hotness constants and pin/bound rules (configs/priors.json).
#include <algorithm>
#include <cmath>

#include "moeq/allocate/allocation.h"
#include "moeq/artifacts/allocate_rules.h"
#include "moeq/base/artifact.h"
#include "moeq/base/json_reader.h"
#include "moeq/quant/quant_format.h"

namespace moeq::alloc {
namespace {

Status Bad(std::string_view path, const std::string& field, const std::string& what) {
  return Status::InvalidArgument(std::string(path) + ": field '" + field + "': " + what);
}

Result<double> NonNegative(const nlohmann::json& v, std::string_view path,
                           const std::string& field) {
  if (!v.is_number()) return Bad(path, field, "expected a number, got " + JsonExcerpt(v));
  const double x = v.get<double>();
  if (!(x >= 0) || !std::isfinite(x))
    return Bad(path, field, "expected a finite number ≥ 0, got " + JsonExcerpt(v));
  return x;
}

Result<int> SmallInt(const nlohmann::json& v, std::string_view path, const std::string& field,
                     int lo, int hi) {
  if (!v.is_number_integer()) return Bad(path, field, "expected an integer, got " + JsonExcerpt(v));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    return Bad(
        path, field,
        "out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]: " + JsonExcerpt(v));
  return static_cast<int>(x);
}

Result<AllocRule> RuleFromJson(const nlohmann::json& r, std::string_view path,
                               const std::string& where) {
  if (!r.is_object()) return Bad(path, where, "expected an object");
  AllocRule rule;
  rule.where = std::string(path) + ": " + where;
  for (const auto& [key, value] : r.items()) {
    const std::string field = where + "." + key;
    if (key == "match") {
      if (!value.is_object()) return Bad(path, field, "expected an object");
      for (const auto& [mk, mv] : value.items()) {
        const std::string mf = field + "." + mk;
        if (mk == "role") {
          std::vector<nlohmann::json> names;
          if (mv.is_string()) {
            names.push_back(mv);
          } else if (mv.is_array()) {
            names.assign(mv.begin(), mv.end());
          } else {
            return Bad(path, mf, "expected a role name or a list of role names");
          }
          for (const auto& n : names) {
            if (!n.is_string()) return Bad(path, mf, "expected role names, got " + JsonExcerpt(n));
            auto role = ParseRole(n.get<std::string>());
            if (!role) return Bad(path, mf, "unknown role '" + n.get<std::string>() + "'");
            rule.roles.push_back(*role);
          }
        } else if (mk == "layers") {
          if (!mv.is_array() || mv.size() != 2)
            return Bad(path, mf, "expected [first, last] (inclusive)");
          MOEQ_ASSIGN_OR_RETURN(rule.layer_min, SmallInt(mv[0], path, mf, -1, 1'000'000));
          MOEQ_ASSIGN_OR_RETURN(rule.layer_max, SmallInt(mv[1], path, mf, -1, 1'000'000));
          if (rule.layer_max < rule.layer_min) return Bad(path, mf, "last < first");
          rule.has_layers = true;
        } else if (mk == "layer") {
          MOEQ_ASSIGN_OR_RETURN(rule.layer_min, SmallInt(mv, path, mf, -1, 1'000'000));
          rule.layer_max = rule.layer_min;
          rule.has_layers = true;
        } else if (mk == "experts") {
          if (!mv.is_array()) return Bad(path, mf, "expected a list of expert indices");
          for (const auto& e : mv) {
            MOEQ_ASSIGN_OR_RETURN(int x, SmallInt(e, path, mf, 0, 1'000'000));
            rule.experts.push_back(x);
          }
        } else if (mk == "name") {
          if (!mv.is_string()) return Bad(path, mf, "expected an exact tensor name");
          rule.name = mv.get<std::string>();
        } else {
          return Bad(path, mf, "unknown key (expected role, layers, layer, experts, name)");
        }
      }
    } else if (key == "format") {
      if (!value.is_string()) return Bad(path, field, "expected a format such as \"q8g64\"");
      auto f = quant::ParseFormatSpec(value.get<std::string>());
      if (!f.ok()) return Bad(path, field, f.status().message());
      rule.format = value.get<std::string>();
    } else if (key == "min_bits") {
      MOEQ_ASSIGN_OR_RETURN(rule.min_bits, SmallInt(value, path, field, 1, 32));
    } else if (key == "max_bits") {
      MOEQ_ASSIGN_OR_RETURN(rule.max_bits, SmallInt(value, path, field, 1, 32));
    } else if (key == "prior") {
      MOEQ_ASSIGN_OR_RETURN(rule.prior, NonNegative(value, path, field));
    } else if (key == "description") {
      continue;
    } else {
      return Bad(path, field,
                 "unknown key (expected match, format, min_bits, max_bits, prior, description)");
    }
  }
  if (rule.min_bits > 0 && rule.max_bits > 0 && rule.min_bits > rule.max_bits) {
    return Bad(path, where, "min_bits > max_bits");
  }
  if (rule.format.empty() && rule.min_bits == 0 && rule.max_bits == 0 && rule.prior < 0) {
    return Bad(path, where, "no action (expected format, min_bits, max_bits or prior)");
  }
  return rule;
}

Status RulesFromArray(const nlohmann::json& arr, std::string_view path, PriorsConfig* cfg) {
  if (!arr.is_array()) return Bad(path, "rules", "expected a list of rules");
  for (size_t i = 0; i < arr.size(); ++i) {
    MOEQ_ASSIGN_OR_RETURN(AllocRule r,
                          RuleFromJson(arr[i], path, "rules[" + std::to_string(i) + "]"));
    cfg->rules.push_back(std::move(r));
  }
  return Status::Ok();
}

}  // namespace

bool AllocRule::Matches(const SensitivityTensor& t) const {
  if (!roles.empty() && std::find(roles.begin(), roles.end(), t.role) == roles.end()) return false;
  if (has_layers && (t.layer < layer_min || t.layer > layer_max)) return false;
  if (!experts.empty() && std::find(experts.begin(), experts.end(), t.expert) == experts.end())
    return false;
  if (!name.empty() && name != t.name) return false;
  return true;
}

Result<PriorsConfig> PriorsFromJson(const nlohmann::json& j, std::string_view path) try {
  if (!j.is_object())
    return Status::InvalidArgument(std::string(path) + ": expected a JSON object");
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.priors", 1, path));
  PriorsConfig cfg;
  for (const auto& [key, value] : j.items()) {
    if (key == "schema" || key == "version" || key == "description" || key == "combine_note")
      continue;
    if (key == "default") {
      MOEQ_ASSIGN_OR_RETURN(cfg.default_prior, NonNegative(value, path, key));
    } else if (key == "roles") {
      if (!value.is_object()) return Bad(path, key, "expected an object {role name: prior}");
      cfg.roles.clear();
      for (const auto& [rk, rv] : value.items()) {
        auto role = ParseRole(rk);
        if (!role) return Bad(path, "roles." + rk, "unknown role");
        MOEQ_ASSIGN_OR_RETURN(double x, NonNegative(rv, path, "roles." + rk));
        cfg.roles.emplace_back(*role, x);
      }
    } else if (key == "vision") {
      MOEQ_ASSIGN_OR_RETURN(cfg.vision, NonNegative(value, path, key));
    } else if (key == "first_layer") {
      MOEQ_ASSIGN_OR_RETURN(cfg.first_layer, NonNegative(value, path, key));
    } else if (key == "last_layer") {
      MOEQ_ASSIGN_OR_RETURN(cfg.last_layer, NonNegative(value, path, key));
    } else if (key == "hotness") {
      if (!value.is_object())
        return Bad(path, key, "expected an object {gamma, alpha_min, alpha_max}");
      for (const auto& [hk, hv] : value.items()) {
        const std::string f = "hotness." + hk;
        if (hk == "gamma") {
          MOEQ_ASSIGN_OR_RETURN(cfg.gamma, NonNegative(hv, path, f));
        } else if (hk == "alpha_min") {
          MOEQ_ASSIGN_OR_RETURN(cfg.alpha_min, NonNegative(hv, path, f));
        } else if (hk == "alpha_max") {
          MOEQ_ASSIGN_OR_RETURN(cfg.alpha_max, NonNegative(hv, path, f));
        } else {
          return Bad(path, f, "unknown key (expected gamma, alpha_min, alpha_max)");
        }
      }
      if (cfg.alpha_min > cfg.alpha_max) return Bad(path, "hotness", "alpha_min > alpha_max");
    } else if (key == "rules") {
      MOEQ_RETURN_IF_ERROR(RulesFromArray(value, path, &cfg));
    } else {
      return Bad(
          path, key,
          "unknown key (expected default, roles, vision, first_layer, last_layer, hotness, rules)");
    }
  }
  return cfg;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Status AppendRules(const artifacts::AllocateRulesArtifact& rules, std::string_view path,
                   PriorsConfig* cfg) try {
  return RulesFromArray(rules.rules, path, cfg);
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(e));
}

Status AppendRulesFromJson(const nlohmann::json& j, std::string_view path, PriorsConfig* cfg) {
  MOEQ_ASSIGN_OR_RETURN(const artifacts::AllocateRulesArtifact a,
                        artifacts::ParseAllocateRules(j, path));
  return AppendRules(a, path, cfg);
}

nlohmann::json PriorsToJson(const PriorsConfig& cfg) {
  nlohmann::json roles = nlohmann::json::object();
  for (const auto& [role, prior] : cfg.roles) roles[std::string(RoleName(role))] = prior;
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : cfg.rules) {
    nlohmann::json m = nlohmann::json::object();
    if (!r.roles.empty()) {
      nlohmann::json names = nlohmann::json::array();
      for (auto role : r.roles) names.push_back(std::string(RoleName(role)));
      m["role"] = names;
    }
    if (r.has_layers) m["layers"] = {r.layer_min, r.layer_max};
    if (!r.experts.empty()) m["experts"] = r.experts;
    if (!r.name.empty()) m["name"] = r.name;
    nlohmann::json rj = {{"match", m}, {"from", r.where}};
    if (!r.format.empty()) rj["format"] = r.format;
    if (r.min_bits > 0) rj["min_bits"] = r.min_bits;
    if (r.max_bits > 0) rj["max_bits"] = r.max_bits;
    if (r.prior >= 0) rj["prior"] = r.prior;
    rules.push_back(rj);
  }
  return {{"default", cfg.default_prior},
          {"roles", roles},
          {"vision", cfg.vision},
          {"first_layer", cfg.first_layer},
          {"last_layer", cfg.last_layer},
          {"hotness",
           {{"gamma", cfg.gamma}, {"alpha_min", cfg.alpha_min}, {"alpha_max", cfg.alpha_max}}},
          {"rules", rules}};
}

double PriorOf(const SensitivityTensor& t, const PriorsConfig& cfg, int last_layer) {
  double prior = cfg.default_prior;
  for (const auto& [role, p] : cfg.roles) {
    if (role == t.role) prior = std::max(prior, p);
  }
  if (t.role_name.rfind("vision", 0) == 0) prior = std::max(prior, cfg.vision);
  if (t.layer == 0) prior = std::max(prior, cfg.first_layer);
  if (t.layer >= 0 && t.layer == last_layer) prior = std::max(prior, cfg.last_layer);
  for (const auto& r : cfg.rules) {
    if (r.prior >= 0 && r.Matches(t)) prior = r.prior;
  }
  return prior;
}

}  // namespace moeq::alloc
