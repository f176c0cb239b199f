// moeq-report: the HTML report (report_command.h).
#include "moeq-report/report_command.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "moeq/artifacts/allocation.h"
#include "moeq/artifacts/eval.h"
#include "moeq/artifacts/model_match.h"
#include "moeq/artifacts/routing_profile.h"
#include "moeq/artifacts/sensitivity.h"
#include "moeq/base/artifact.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/base/svg.h"
#include "moeq/model/arch.h"
#include "moeq/quant/quant_format.h"

namespace moeq {

namespace {

using report::Rgb;

// ----------------------------------------------------------------------------------------------
// Inputs

struct TensorMeta {
  std::string role;
  int layer = -1;
  int expert = -1;
  int64_t params = 0;
  nlohmann::json features;  // the first row's features object
};

struct SensitivityData {
  std::vector<std::string> order;  // tensors in file order
  std::map<std::string, TensorMeta, std::less<>> tensors;
  std::vector<std::string> formats;  // grid order
  std::map<std::string, std::vector<double>> sqnr_by_format;
};

struct AllocEntry {
  std::string name, format, role, tier, reason;
  int layer = -1, expert = -1;
  bool prune = false;
  bool located = false;
  double nrmse = NAN, sqnr = NAN;
  double bytes = 0;
};

struct EvalEntry {
  std::string label, path;
  artifacts::EvalArtifact e;
};

std::string Where(const std::string& path, int64_t line) {
  return path + (line > 0 ? ":" + std::to_string(line) : "");
}

template <typename T>
Result<T> Field(const nlohmann::json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return Status::InvalidArgument(where + ": missing field '" + key + "'");
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception&) {
    return Status::InvalidArgument(where + ": field '" + key + "' has the wrong type (" +
                                   JsonExcerpt(*it) + ")");
  }
}

Result<SensitivityData> ReadSensitivity(const std::string& path, nlohmann::json* header) {
  MOEQ_ASSIGN_OR_RETURN(artifacts::SensitivityArtifact a, artifacts::ReadSensitivityFile(path));
  SensitivityData d;
  std::set<std::string> seen_formats;
  for (const artifacts::SensitivityRow& r : a.rows) {
    auto [it, inserted] = d.tensors.try_emplace(r.tensor);
    if (inserted) {
      it->second.role = r.role;
      it->second.layer = r.layer;
      it->second.expert = r.expert;
      it->second.params = r.params;
      it->second.features = r.features;
      d.order.push_back(r.tensor);
    }
    if (seen_formats.insert(r.format).second) d.formats.push_back(r.format);
    d.sqnr_by_format[r.format].push_back(r.sqnr_db);
  }
  *header = std::move(a.header);
  return d;
}

Result<std::vector<AllocEntry>> ReadAllocation(const std::string& path, nlohmann::json* header) {
  MOEQ_ASSIGN_OR_RETURN(artifacts::AllocationArtifact a, artifacts::ReadAllocation(path));
  std::vector<AllocEntry> out;
  for (const artifacts::AllocationTensor& t : a.tensors) {
    AllocEntry e;
    e.name = t.name;
    e.format = t.format;
    e.prune = t.prune.value_or(false);
    e.tier = t.tier.value_or("");
    e.reason = t.reason.value_or("");
    e.nrmse = t.nrmse.value_or(NAN);
    e.sqnr = t.sqnr_db.value_or(NAN);
    e.bytes = t.bytes ? static_cast<double>(*t.bytes) : 0.0;
    if (t.role && t.layer && t.expert) {
      e.role = *t.role;
      e.layer = static_cast<int>(*t.layer);
      e.expert = static_cast<int>(*t.expert);
      e.located = true;
    }
    out.push_back(std::move(e));
  }
  *header = a.header;
  for (const auto& [k, v] : a.sections.items()) (*header)[k] = v;
  return out;
}

struct CurveData {
  std::vector<double> bytes, objective;
  std::optional<size_t> knee;
};

Result<CurveData> ReadCurve(const std::string& path) try {
  MOEQ_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::istringstream in(text);
  std::string line;
  std::vector<std::string> cols;
  int bytes_col = -1, obj_col = -1, knee_col = -1;
  CurveData c;
  int64_t n = 0;
  auto split = [](const std::string& s) {
    std::vector<std::string> v;
    std::string cur;
    for (char ch : s) {
      if (ch == ',') {
        v.push_back(cur);
        cur.clear();
      } else if (ch != '\r') {
        cur += ch;
      }
    }
    v.push_back(cur);
    return v;
  };
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line);
    if (cols.empty()) {
      cols = f;
      for (size_t i = 0; i < cols.size(); ++i) {
        const std::string& name = cols[i];
        if (bytes_col < 0 && (name == "bytes" || name.find("bytes") != std::string::npos))
          bytes_col = static_cast<int>(i);
        if (obj_col < 0 && name.find("objective") != std::string::npos)
          obj_col = static_cast<int>(i);
        if (name == "knee") knee_col = static_cast<int>(i);
      }
      if (bytes_col < 0 || obj_col < 0) {
        return Status::InvalidArgument(
            Where(path, n) + ": the header needs a 'bytes' column and an 'objective' column");
      }
      continue;
    }
    auto num = [&](int col, double* out) -> Status {
      if (col >= static_cast<int>(f.size())) {
        return Status::InvalidArgument(Where(path, n) + ": missing column '" +
                                       cols[static_cast<size_t>(col)] + "'");
      }
      char* end = nullptr;
      const std::string& s = f[static_cast<size_t>(col)];
      *out = std::strtod(s.c_str(), &end);
      if (s.empty() || end != s.c_str() + s.size()) {
        return Status::InvalidArgument(Where(path, n) + ": column '" +
                                       cols[static_cast<size_t>(col)] + "' is not a number: '" + s +
                                       "'");
      }
      return Status::Ok();
    };
    double b = 0, o = 0, k = 0;
    MOEQ_RETURN_IF_ERROR(num(bytes_col, &b));
    MOEQ_RETURN_IF_ERROR(num(obj_col, &o));
    if (knee_col >= 0) {
      MOEQ_RETURN_IF_ERROR(num(knee_col, &k));
      if (k != 0) c.knee = c.bytes.size();
    }
    c.bytes.push_back(b);
    c.objective.push_back(o);
  }
  if (c.bytes.empty()) return Status::InvalidArgument(path + ": no data rows");
  if (!c.knee && c.bytes.size() >= 3) {
    // The knee: the point farthest from the chord between the ends, in normalised coordinates.
    const double x0 = c.bytes.front(), x1 = c.bytes.back();
    const double y0 = c.objective.front(), y1 = c.objective.back();
    const double sx = std::abs(x1 - x0) > 0 ? std::abs(x1 - x0) : 1,
                 sy = std::abs(y1 - y0) > 0 ? std::abs(y1 - y0) : 1;
    double best = -1;
    for (size_t i = 0; i < c.bytes.size(); ++i) {
      const double u = (c.bytes[i] - x0) / sx, v = (c.objective[i] - y0) / sy;
      const double du = (x1 - x0) / sx, dv = (y1 - y0) / sy;
      const double dist = std::abs(u * dv - v * du) / std::max(std::hypot(du, dv), 1e-12);
      if (dist > best) {
        best = dist;
        c.knee = i;
      }
    }
  }
  return c;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(path + ": " + JsonExceptionText(e));
}

// ----------------------------------------------------------------------------------------------
// Sections

Rgb BitsColor(int bits) {
  switch (bits) {
    case 2:
      return {215, 48, 39};
    case 3:
      return {244, 130, 70};
    case 4:
      return {250, 205, 100};
    case 5:
      return {200, 225, 120};
    case 6:
      return {130, 200, 100};
    case 8:
      return {30, 150, 80};
    case 16:
      return {70, 115, 180};
    default:
      return {50, 55, 150};
  }
}
constexpr Rgb kPrunedColor{25, 25, 25};

int FormatBits(const std::string& name) {
  const quant::FormatTraits* f = quant::FindFormat(name);
  return f != nullptr ? f->bits : 16;
}

std::string LayerLabel(int layer) { return layer < 0 ? "model" : "L" + std::to_string(layer); }

std::string AllocationSection(std::vector<AllocEntry>& entries, const SensitivityData* sens,
                              const nlohmann::json& header) {
  // Locate every tensor (role, layer, expert): from the allocation itself or the sensitivity file.
  int64_t unlocated = 0;
  for (AllocEntry& e : entries) {
    if (e.located || sens == nullptr) continue;
    auto it = sens->tensors.find(e.name);
    if (it == sens->tensors.end()) continue;
    e.role = it->second.role;
    e.layer = it->second.layer;
    e.expert = it->second.expert;
    e.located = true;
  }
  std::map<std::string, std::map<std::pair<int, int>, const AllocEntry*>>
      experts;                                                      // role -> (layer, expert)
  std::map<std::pair<int, std::string>, const AllocEntry*> others;  // (layer, role)
  std::set<int> bits_seen;
  bool pruned_seen = false;
  std::map<std::string, int64_t> format_counts;
  for (const AllocEntry& e : entries) {
    format_counts[e.format]++;
    if (!e.located) {
      ++unlocated;
      continue;
    }
    bits_seen.insert(FormatBits(e.format));
    pruned_seen |= e.prune;
    if (e.expert >= 0) {
      experts[e.role][{e.layer, e.expert}] = &e;
    } else {
      others[{e.layer, e.role}] = &e;
    }
  }
  std::vector<report::LegendEntry> legend;
  for (int b : bits_seen)
    legend.push_back(
        {BitsColor(b), b >= 16 ? std::to_string(b) + "-bit float" : std::to_string(b) + "-bit"});
  if (pruned_seen) legend.push_back({kPrunedColor, "pruned"});
  auto cell = [](const AllocEntry& e) {
    report::HeatCell c;
    c.present = true;
    c.color = e.prune ? kPrunedColor : BitsColor(FormatBits(e.format));
    c.tooltip = e.name + ": " + e.format + (e.prune ? " (pruned)" : "") +
                (std::isfinite(e.nrmse) ? ", NRMSE " + report::Num(e.nrmse) : "") +
                (std::isfinite(e.sqnr) ? ", SQNR " + report::Num(e.sqnr) + " dB" : "") +
                (e.tier.empty() ? "" : ", tier " + e.tier) +
                (e.reason.empty() ? "" : ", " + e.reason);
    return c;
  };

  std::string s = "<section id=\"allocation\"><h2>Bit allocation</h2>";
  if (header.contains("result")) {
    const auto& r = header["result"];
    s += "<p class=\"summary\">";
    for (const char* key : {"bytes", "bpw", "objective", "lower_bound", "gap"}) {
      if (r.contains(key))
        s += std::string(key) + " <b>" + report::XmlEscape(r[key].dump()) + "</b> &nbsp; ";
    }
    s += "</p>";
  }
  s += "<table><tr><th>format</th><th>tensors</th></tr>";
  for (const auto& [fmt, n] : format_counts) {
    s += "<tr><td>" + report::XmlEscape(fmt) + "</td><td>" + std::to_string(n) + "</td></tr>";
  }
  s += "</table>";
  for (const auto& [role, cells] : experts) {
    std::set<int> layers;
    int max_expert = 0;
    for (const auto& [key, e] : cells) {
      layers.insert(key.first);
      max_expert = std::max(max_expert, key.second);
    }
    report::Heatmap h;
    h.id = "chart-alloc-" + role;
    h.title = "Routed experts, " + role + ": format per layer × expert";
    h.x_label = "expert";
    h.y_label = "layer";
    for (int l : layers) h.row_labels.push_back(LayerLabel(l));
    for (int x = 0; x <= max_expert; ++x) h.col_labels.push_back(std::to_string(x));
    for (int l : layers) {
      for (int x = 0; x <= max_expert; ++x) {
        auto it = cells.find({l, x});
        h.cells.push_back(it == cells.end() ? report::HeatCell{} : cell(*it->second));
      }
    }
    h.legend = legend;
    s += "<figure>" + report::RenderHeatmap(h) + "</figure>";
  }
  if (!others.empty()) {
    std::set<int> layers;
    std::vector<std::string> roles;
    for (TensorRole r : AllRoles()) {
      const std::string name(RoleName(r));
      for (const auto& [key, e] : others) {
        if (key.second == name) {
          roles.push_back(name);
          break;
        }
      }
    }
    for (const auto& [key, e] : others) {
      layers.insert(key.first);
      if (std::find(roles.begin(), roles.end(), key.second) == roles.end())
        roles.push_back(key.second);
    }
    report::Heatmap h;
    h.id = "chart-alloc-layers";
    h.title = "Other tensors: format per layer × role";
    h.x_label = "role";
    h.y_label = "layer";
    for (size_t i = 0; i < roles.size(); ++i) h.col_labels.push_back(std::to_string(i));
    for (int l : layers) h.row_labels.push_back(LayerLabel(l));
    for (int l : layers) {
      for (const std::string& r : roles) {
        auto it = others.find({l, r});
        h.cells.push_back(it == others.end() ? report::HeatCell{} : cell(*it->second));
      }
    }
    h.legend = legend;
    s += "<figure>" + report::RenderHeatmap(h) + "<figcaption>columns: ";
    for (size_t i = 0; i < roles.size(); ++i)
      s += (i ? ", " : "") + std::to_string(i) + " = " + report::XmlEscape(roles[i]);
    s += "</figcaption></figure>";
  }
  if (unlocated > 0) {
    s += "<p class=\"note\">" + std::to_string(unlocated) +
         " tensors could not be placed on a heatmap (no role/layer/expert in the allocation and no "
         "sensitivity file naming them).</p>";
  }
  return s + "</section>";
}

std::string RoutingSection(const artifacts::RoutingProfileArtifact& p) {
  report::Heatmap h;
  h.id = "chart-routing";
  h.title = "Routing hotness: selections per expert relative to the layer mean (log2)";
  h.x_label = "expert";
  h.y_label = "layer";
  size_t max_experts = 0;
  std::vector<std::vector<std::pair<int64_t, std::string>>> rows;
  for (const artifacts::RoutingLayer& l : p.layers) {
    if (l.experts.empty()) continue;
    std::vector<std::pair<int64_t, std::string>> row;
    for (const artifacts::RoutingExpert& x : l.experts) row.emplace_back(x.count, x.tier);
    max_experts = std::max(max_experts, row.size());
    h.row_labels.push_back(LayerLabel(static_cast<int>(l.layer)));
    rows.push_back(std::move(row));
  }
  if (rows.empty())
    return std::string(
        "<section id=\"routing\"><h2>Routing</h2><p>No MoE layers in the profile.</p></section>");
  for (size_t e = 0; e < max_experts; ++e) h.col_labels.push_back(std::to_string(e));
  for (size_t r = 0; r < rows.size(); ++r) {
    double mean = 0;
    for (const auto& [c, t] : rows[r]) mean += static_cast<double>(c);
    mean /= static_cast<double>(rows[r].size());
    for (size_t e = 0; e < max_experts; ++e) {
      report::HeatCell c;
      if (e < rows[r].size()) {
        const double ratio = mean > 0 ? static_cast<double>(rows[r][e].first) / mean : 0;
        c.present = true;
        c.color = report::Diverging(ratio > 0 ? std::log2(ratio) / 2.0 : -1.0);
        c.tooltip = h.row_labels[r] + " expert " + std::to_string(e) + ": " +
                    std::to_string(rows[r][e].first) + " selections, " + report::Num(ratio, 3) +
                    "× the mean" + (rows[r][e].second.empty() ? "" : ", tier " + rows[r][e].second);
      }
      h.cells.push_back(c);
    }
  }
  h.legend = {{report::Diverging(-1), "≤ 1/4× mean"},
              {report::Diverging(0), "mean"},
              {report::Diverging(1), "≥ 4× mean"}};
  std::string s = "<section id=\"routing\"><h2>Routing hotness</h2>";
  const artifacts::RoutingCalibration& cal = p.calibration;
  const nlohmann::json cj = {{"tokens", cal.tokens},
                             {"windows", cal.windows},
                             {"context", cal.context},
                             {"source", cal.source}};
  s += "<p class=\"summary\">calibration: " + report::XmlEscape(cj.dump()) + "</p>";
  return s + "<figure>" + report::RenderHeatmap(h) + "</figure></section>";
}

std::string CurveSection(const CurveData& c) {
  report::LineChart lc;
  lc.id = "chart-curve";
  lc.title = "Budget curve: predicted objective (moeq-allocate --objective) against size";
  const double max_bytes = *std::max_element(c.bytes.begin(), c.bytes.end());
  const bool gib = max_bytes >= 1024.0 * 1024 * 1024;
  const double unit = gib ? 1024.0 * 1024 * 1024 : 1024.0 * 1024;
  lc.x_label = gib ? "size (GiB)" : "size (MiB)";
  lc.y_label = "objective";
  report::LineSeries ls;
  ls.color = {44, 105, 142};
  for (size_t i = 0; i < c.bytes.size(); ++i) {
    ls.x.push_back(c.bytes[i] / unit);
    ls.y.push_back(c.objective[i]);
  }
  lc.series.push_back(ls);
  if (c.knee) {
    lc.marker = *c.knee;
    lc.marker_label = "knee: " + report::Num(c.bytes[*c.knee] / unit, 4) + (gib ? " GiB" : " MiB");
  }
  return "<section id=\"curve\"><h2>Budget curve</h2><figure>" + report::RenderLineChart(lc) +
         "</figure></section>";
}

std::string FeatureSection(const SensitivityData& d) {
  // The schema's features but svd_rank (a setting more than a feature), then any other key
  // (svd_rank among them) in name order.
  std::vector<std::string> keys;
  for (const std::string& k : artifacts::SensitivityFeatureNames()) {
    if (k != "svd_rank") keys.push_back(k);
  }
  std::set<std::string> extra;
  for (const auto& name : d.order) {
    for (const auto& [k, v] : d.tensors.at(name).features.items()) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) extra.insert(k);
    }
  }
  keys.insert(keys.end(), extra.begin(), extra.end());
  std::string s = "<section id=\"features\"><h2>Sensitivity features</h2><p class=\"summary\">" +
                  std::to_string(d.order.size()) + " tensors analysed.</p><div class=\"grid\">";
  for (const std::string& k : keys) {
    report::Histogram h;
    for (const auto& name : d.order) {
      const auto& f = d.tensors.at(name).features;
      auto it = f.find(k);
      if (it != f.end() && it->is_number()) h.values.push_back(it->get<double>());
    }
    if (h.values.empty()) continue;
    double lo = *std::min_element(h.values.begin(), h.values.end());
    double hi = *std::max_element(h.values.begin(), h.values.end());
    h.log_x = lo > 0 && hi / lo > 100;
    h.id = "chart-feature-" + k;
    h.title = k;
    h.x_label = k;
    s += "<figure>" + report::RenderHistogram(h) + "</figure>";
  }
  s += "</div><h3>SQNR per grid configuration</h3><div class=\"grid\">";
  for (const std::string& fmt : d.formats) {
    report::Histogram h;
    h.id = "chart-sqnr-" + fmt;
    h.title = "SQNR at " + fmt + " (dB)";
    h.x_label = "dB";
    for (double v : d.sqnr_by_format.at(fmt)) {
      if (std::abs(v) < 199.0) h.values.push_back(v);  // drop the ±200 dB cap of lossless configs
    }
    if (h.values.empty()) continue;
    s += "<figure>" + report::RenderHistogram(h) + "</figure>";
  }
  return s + "</div></section>";
}

Result<std::vector<EvalEntry>> ReadEvals(const std::vector<std::string>& specs) {
  std::vector<EvalEntry> evals;
  for (const std::string& spec : specs) {
    EvalEntry e;
    const size_t eq = spec.find('=');
    e.path = eq == std::string::npos ? spec : spec.substr(eq + 1);
    e.label =
        eq == std::string::npos ? std::filesystem::path(spec).stem().string() : spec.substr(0, eq);
    MOEQ_ASSIGN_OR_RETURN(e.e, artifacts::ReadEval(e.path));
    evals.push_back(std::move(e));
  }
  return evals;
}

std::string FixedText(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  if (std::fabs(v) < 0.5 * std::pow(10.0, -digits)) v = 0.0;  // no "-0.00"
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string SizeText(double bytes) {
  if (!std::isfinite(bytes) || bytes <= 0) return "-";
  if (bytes >= 1024.0 * 1024 * 1024) return FixedText(bytes / (1024.0 * 1024 * 1024), 2) + " GiB";
  if (bytes >= 1024.0 * 1024) return FixedText(bytes / (1024.0 * 1024), 2) + " MiB";
  return FixedText(bytes / 1024.0, 1) + " KiB";
}

std::string EvalSection(const std::vector<EvalEntry>& evals) {
  std::string s =
      "<section id=\"eval\"><h2>Evaluation</h2><table><tr><th>model</th><th>PPL</th>"
      "<th>ΔPPL %</th><th>KL mean</th><th>KL p99</th><th>top-1 agreement</th>"
      "<th>tokens scored</th></tr>";
  report::BarChart kl{
      "chart-eval-kl", "Mean KL divergence from the reference (nats/token)", "KL", {}, {},
      {180, 30, 40}};
  report::BarChart ppl{"chart-eval-ppl", "Perplexity", "PPL", {}, {}, {44, 105, 142}};
  auto cellnum = [](std::optional<double> v, int digits) -> std::string {
    return v ? report::Num(*v, digits) : "–";
  };
  bool any_kl = false;
  for (const EvalEntry& entry : evals) {
    const artifacts::EvalArtifact& e = entry.e;
    const auto& ref = e.reference;
    auto refnum = [&ref](double artifacts::EvalReference::*f) -> std::optional<double> {
      return ref ? std::optional<double>((*ref).*f) : std::nullopt;
    };
    s += "<tr><td>" + report::XmlEscape(entry.label) + "</td><td>" + cellnum(e.ppl, 6) +
         "</td><td>" + cellnum(refnum(&artifacts::EvalReference::ppl_delta_pct), 3) + "</td><td>" +
         cellnum(refnum(&artifacts::EvalReference::kl_mean), 4) + "</td><td>" +
         cellnum(refnum(&artifacts::EvalReference::kl_p99), 4) + "</td><td>" +
         cellnum(refnum(&artifacts::EvalReference::top1_agreement), 4) + "</td><td>" +
         cellnum(static_cast<double>(e.tokens_scored), 10) + "</td></tr>";
    ppl.labels.push_back(entry.label);
    ppl.values.push_back(e.ppl);
    if (ref) {
      any_kl = true;
      kl.labels.push_back(entry.label);
      kl.values.push_back(ref->kl_mean);
    }
  }
  s += "</table><div class=\"grid\"><figure>" + report::RenderBarChart(ppl) + "</figure>";
  if (any_kl) s += "<figure>" + report::RenderBarChart(kl) + "</figure>";
  return s + "</div></section>";
}

constexpr const char* kStyle =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}"
    "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid "
    "#ccc;padding-bottom:4px;margin-top:32px}"
    "h3{font-size:15px}nav a{margin-right:14px}table{border-collapse:collapse;margin:8px 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
    "th{background:#f3f3f3}td:first-child{text-align:left}figure{margin:8px 8px 16px 0}"
    ".grid{display:flex;flex-wrap:wrap}.summary,.note{font-size:13px;color:#444}"
    "figcaption{font-size:11px;color:#555;max-width:900px}footer{margin-top:40px;font-size:11px;"
    "color:#777}";

}  // namespace

Result<std::string> BuildReportHtml(const ReportCommandOptions& o, const ArtifactContext& ctx) {
  if (o.profile.empty() && o.sensitivity.empty() && o.allocation.empty() && o.curve.empty() &&
      o.evals.empty()) {
    return Status::InvalidArgument(
        "nothing to report: give at least one of --profile, --sensitivity, --allocation, --curve, "
        "--eval");
  }
  // The artefacts of one model: every fingerprint must agree with the first one recorded.
  std::vector<artifacts::ModelIdentity> models;
  std::optional<SensitivityData> sens;
  if (!o.sensitivity.empty()) {
    nlohmann::json header;
    MOEQ_ASSIGN_OR_RETURN(sens, ReadSensitivity(o.sensitivity, &header));
    models.push_back({o.sensitivity, artifacts::ModelFingerprintOf(header)});
  }
  std::vector<AllocEntry> alloc_entries;
  nlohmann::json alloc_header;
  if (!o.allocation.empty()) {
    MOEQ_ASSIGN_OR_RETURN(alloc_entries, ReadAllocation(o.allocation, &alloc_header));
    models.push_back({o.allocation, artifacts::ModelFingerprintOf(alloc_header)});
  }
  artifacts::RoutingProfileArtifact profile;
  if (!o.profile.empty()) {
    MOEQ_ASSIGN_OR_RETURN(profile, artifacts::ReadRoutingProfile(o.profile));
    models.push_back({o.profile, artifacts::ModelFingerprintOf(profile.header)});
  }
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].fingerprint.empty()) continue;
    for (size_t k = i + 1; k < models.size(); ++k) {
      MOEQ_RETURN_IF_ERROR(
          artifacts::RequireSameModel(models[i], models[k], o.allow_model_mismatch));
    }
    break;
  }
  std::vector<std::pair<std::string, std::string>> sections;  // id, html
  if (!o.allocation.empty()) {
    sections.emplace_back("allocation",
                          AllocationSection(alloc_entries, sens ? &*sens : nullptr, alloc_header));
  }
  if (!o.profile.empty()) {
    sections.emplace_back("routing", RoutingSection(profile));
  }
  if (!o.curve.empty()) {
    MOEQ_ASSIGN_OR_RETURN(CurveData c, ReadCurve(o.curve));
    sections.emplace_back("curve", CurveSection(c));
  }
  if (sens) sections.emplace_back("features", FeatureSection(*sens));
  if (!o.evals.empty()) {
    MOEQ_ASSIGN_OR_RETURN(std::vector<EvalEntry> evals, ReadEvals(o.evals));
    sections.emplace_back("eval", EvalSection(evals));
  }
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
                     report::XmlEscape(o.title) + "</title><style>" + kStyle +
                     "</style></head><body><h1>" + report::XmlEscape(o.title) + "</h1><nav>";
  for (const auto& [id, body] : sections) html += "<a href=\"#" + id + "\">" + id + "</a>";
  html += "</nav>\n";
  for (const auto& [id, body] : sections) html += body + "\n";
  html += "<footer>Produced by " + report::XmlEscape(ctx.tool.empty() ? "moeq" : ctx.tool) + " " +
          kVersion + ". Inputs:";
  for (const std::string* p : {&o.profile, &o.sensitivity, &o.allocation, &o.curve}) {
    if (!p->empty()) html += " " + report::XmlEscape(*p);
  }
  for (const std::string& e : o.evals) html += " " + report::XmlEscape(e);
  html += "</footer></body></html>\n";
  return html;
}

Result<std::string> EvalComparisonTable(const std::vector<std::string>& specs,
                                        std::string_view format, std::string_view baseline) {
  if (format != "text" && format != "markdown") {
    return Status::InvalidArgument("--table '" + std::string(format) +
                                   "': expected text or markdown");
  }
  if (specs.empty()) return Status::InvalidArgument("--table needs at least one --eval");
  MOEQ_ASSIGN_OR_RETURN(std::vector<EvalEntry> evals, ReadEvals(specs));
  double base_kl = NAN;
  if (!baseline.empty()) {
    auto it = std::find_if(evals.begin(), evals.end(),
                           [&](const EvalEntry& e) { return e.label == baseline; });
    if (it == evals.end()) {
      return Status::InvalidArgument("--table-baseline '" + std::string(baseline) +
                                     "': no --eval has that label");
    }
    base_kl = it->e.reference ? it->e.reference->kl_mean : NAN;
  }
  std::vector<std::string> head = {"model",  "bytes",   "bpw",    "PPL",
                                   "ΔPPL %", "KL mean", "KL p99", "top-1 %"};
  if (!baseline.empty()) head.push_back("KL / " + std::string(baseline));
  std::vector<std::vector<std::string>> rows;
  for (const EvalEntry& entry : evals) {
    const artifacts::EvalArtifact& e = entry.e;
    const auto& ref = e.reference;
    const auto& size = e.model_size;
    const double kl = ref ? ref->kl_mean : NAN;
    std::vector<std::string> r = {entry.label,
                                  SizeText(size ? static_cast<double>(size->bytes) : NAN),
                                  FixedText(size ? size->bpw : NAN, 3),
                                  FixedText(e.ppl, 3),
                                  FixedText(ref ? ref->ppl_delta_pct : NAN, 2),
                                  FixedText(kl, 5),
                                  FixedText(ref ? ref->kl_p99 : NAN, 4),
                                  FixedText(ref ? 100.0 * ref->top1_agreement : NAN, 2)};
    if (!baseline.empty()) r.push_back(base_kl > 0 ? FixedText(kl / base_kl, 3) : "-");
    rows.push_back(std::move(r));
  }
  // Display width of a UTF-8 cell (code points; the headers use only narrow ones).
  auto width = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  };
  std::vector<size_t> w(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    w[c] = width(head[c]);
    for (const auto& r : rows) w[c] = std::max(w[c], width(r[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = format == "markdown" ? "|" : "";
    for (size_t c = 0; c < cells.size(); ++c) {
      const std::string pad(w[c] - width(cells[c]), ' ');
      const std::string cell = c == 0 ? cells[c] + pad : pad + cells[c];
      s += format == "markdown" ? " " + cell + " |" : (c ? "  " : "") + cell;
    }
    return s + "\n";
  };
  std::string out = line(head);
  if (format == "markdown") {
    out += "|";
    for (size_t c = 0; c < head.size(); ++c) {
      out += c == 0 ? " " + std::string(w[c], '-') + " |"
                    : " " + std::string(w[c] > 1 ? w[c] - 1 : 1, '-') + ": |";
    }
    out += "\n";
  } else {
    size_t total = 0;
    for (size_t c = 0; c < w.size(); ++c) total += w[c] + (c ? 2 : 0);
    out += std::string(total, '-') + "\n";
  }
  for (const auto& r : rows) out += line(r);
  return out;
}

Status RunReport(const ReportCommandOptions& o, const ArtifactContext& ctx) {
  if (!o.table.empty()) {
    MOEQ_ASSIGN_OR_RETURN(std::string table,
                          EvalComparisonTable(o.evals, o.table, o.table_baseline));
    std::fputs(table.c_str(), stdout);
    std::fflush(stdout);
    if (!o.html) return Status::Ok();
  } else if (!o.html) {
    return Status::InvalidArgument("--no-html without --table: nothing to do");
  }
  std::vector<std::string> inputs;
  for (const std::string* p : {&o.profile, &o.sensitivity, &o.allocation, &o.curve}) {
    if (!p->empty()) inputs.push_back(*p);
  }
  for (const std::string& e : o.evals) {
    const size_t eq = e.find('=');
    inputs.push_back(eq == std::string::npos ? e : e.substr(eq + 1));
  }
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, inputs, ctx.force));
  MOEQ_ASSIGN_OR_RETURN(std::string html, BuildReportHtml(o, ctx));
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(o.output, html, {.overwrite = ctx.force}));
  size_t charts = 0;
  for (size_t pos = 0; (pos = html.find("<svg ", pos)) != std::string::npos; ++pos) ++charts;
  spdlog::info("wrote {} ({} charts, {:.1f} KiB)", o.output, charts,
               static_cast<double>(html.size()) / 1024.0);
  return Status::Ok();
}

}  // namespace moeq
