// Inline-SVG chart builders (svg.h).
#include "moeq/base/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace moeq::report {

namespace {

constexpr double kFontSize = 11.0;

Rgb Lerp(Rgb a, Rgb b, double t) {
  auto mix = [t](uint8_t x, uint8_t y) {
    return static_cast<uint8_t>(std::lround(x + (static_cast<double>(y) - x) * t));
  };
  return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

Rgb Ramp(const Rgb* stops, int n, double t) {
  t = std::clamp(t, 0.0, 1.0);
  const double pos = t * (n - 1);
  const int i = std::min(static_cast<int>(pos), n - 2);
  return Lerp(stops[i], stops[i + 1], pos - i);
}

std::string Text(double x, double y, std::string_view s, std::string_view anchor = "start",
                 double size = kFontSize, std::string_view extra = "") {
  return "<text x=\"" + Num(x) + "\" y=\"" + Num(y) + "\" font-size=\"" + Num(size) +
         "\" text-anchor=\"" + std::string(anchor) + "\"" + std::string(extra) + ">" +
         XmlEscape(s) + "</text>";
}

std::string Rect(double x, double y, double w, double h, Rgb fill, std::string_view extra = "") {
  return "<rect x=\"" + Num(x) + "\" y=\"" + Num(y) + "\" width=\"" + Num(w) + "\" height=\"" +
         Num(h) + "\" fill=\"" + CssColor(fill) + "\"" + std::string(extra);
}

std::string OpenSvg(std::string_view id, double w, double h) {
  return "<svg id=\"" + XmlEscape(id) +
         "\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" + Num(w) +
         "\" height=\"" + Num(h) + "\" viewBox=\"0 0 " + Num(w) + " " + Num(h) +
         "\" font-family=\"sans-serif\">";
}

// "Nice" tick values covering [lo, hi].
std::vector<double> Ticks(double lo, double hi, int target = 5) {
  std::vector<double> out;
  if (!(hi > lo)) {
    out.push_back(lo);
    return out;
  }
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return out;
}

// Axes frame with ticks for a plot area [x0, x0+w] × [y0, y0+h] mapping [xlo,xhi] × [ylo,yhi].
std::string Axes(double x0, double y0, double w, double h, double xlo, double xhi, double ylo,
                 double yhi, std::string_view x_label, std::string_view y_label,
                 bool x_is_log10 = false, bool x_ticks = true) {
  std::string s;
  const Rgb axis{80, 80, 80};
  s += "<line x1=\"" + Num(x0) + "\" y1=\"" + Num(y0 + h) + "\" x2=\"" + Num(x0 + w) + "\" y2=\"" +
       Num(y0 + h) + "\" stroke=\"" + CssColor(axis) + "\"/>";
  s += "<line x1=\"" + Num(x0) + "\" y1=\"" + Num(y0) + "\" x2=\"" + Num(x0) + "\" y2=\"" +
       Num(y0 + h) + "\" stroke=\"" + CssColor(axis) + "\"/>";
  for (double t : x_ticks ? Ticks(xlo, xhi) : std::vector<double>{}) {
    const double x = x0 + (xhi > xlo ? (t - xlo) / (xhi - xlo) * w : w / 2);
    s += "<line x1=\"" + Num(x) + "\" y1=\"" + Num(y0 + h) + "\" x2=\"" + Num(x) + "\" y2=\"" +
         Num(y0 + h + 4) + "\" stroke=\"" + CssColor(axis) + "\"/>";
    s += Text(x, y0 + h + 16, x_is_log10 ? "1e" + Num(t, 3) : Num(t, 3), "middle");
  }
  for (double t : Ticks(ylo, yhi)) {
    const double y = y0 + h - (yhi > ylo ? (t - ylo) / (yhi - ylo) * h : h / 2);
    s += "<line x1=\"" + Num(x0 - 4) + "\" y1=\"" + Num(y) + "\" x2=\"" + Num(x0 + w) + "\" y2=\"" +
         Num(y) + "\" stroke=\"#e4e4e4\"/>";
    s += Text(x0 - 6, y + 4, Num(t, 3), "end");
  }
  s += Text(x0 + w / 2, y0 + h + 32, x_label, "middle");
  s += Text(14, y0 + h / 2, y_label, "middle", kFontSize,
            " transform=\"rotate(-90 14 " + Num(y0 + h / 2) + ")\"");
  return s;
}

}  // namespace

std::string CssColor(Rgb c) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

Rgb Sequential(double t) {
  static constexpr Rgb kStops[] = {
      {33, 27, 84}, {44, 105, 142}, {33, 161, 135}, {122, 204, 84}, {249, 228, 40}};
  return Ramp(kStops, 5, t);
}

Rgb Diverging(double t) {
  static constexpr Rgb kStops[] = {
      {40, 82, 160}, {140, 180, 220}, {245, 245, 240}, {235, 150, 110}, {180, 30, 40}};
  return Ramp(kStops, 5, (std::clamp(t, -1.0, 1.0) + 1.0) / 2.0);
}

std::string XmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Num(double v, int digits) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
  return buf;
}

std::string RenderHeatmap(const Heatmap& hm) {
  const size_t rows = hm.row_labels.size();
  const size_t cols = hm.col_labels.size();
  const double cell = std::clamp(880.0 / std::max<size_t>(cols, 1), 5.0, 26.0);
  const double left = 96, top = 34;
  const double grid_w = cell * static_cast<double>(cols);
  const double grid_h = cell * static_cast<double>(rows);
  const double legend_h = hm.legend.empty() ? 0 : 26;
  const double width = std::max(left + grid_w + 20, 420.0);
  const double height = top + grid_h + 40 + legend_h;
  std::string s = OpenSvg(hm.id, width, height);
  s += Text(4, 16, hm.title, "start", 13, " font-weight=\"bold\"");
  // Column labels, thinned to one every ~28 px.
  const size_t col_step = std::max<size_t>(1, static_cast<size_t>(std::ceil(28.0 / cell)));
  for (size_t c = 0; c < cols; c += col_step) {
    s += Text(left + (static_cast<double>(c) + 0.5) * cell, top - 4, hm.col_labels[c], "middle", 9);
  }
  const size_t row_step = std::max<size_t>(1, static_cast<size_t>(std::ceil(12.0 / cell)));
  for (size_t r = 0; r < rows; ++r) {
    const double y = top + static_cast<double>(r) * cell;
    if (r % row_step == 0) s += Text(left - 4, y + cell / 2 + 3, hm.row_labels[r], "end", 9);
    for (size_t c = 0; c < cols; ++c) {
      const HeatCell& hc = hm.cells[r * cols + c];
      const double x = left + static_cast<double>(c) * cell;
      if (!hc.present) {
        s += Rect(x, y, cell, cell, Rgb{238, 238, 238}, "/>");
        continue;
      }
      s += Rect(x, y, cell, cell, hc.color, " class=\"cell\">");
      s += "<title>" + XmlEscape(hc.tooltip) + "</title></rect>";
    }
  }
  s += Text(left + grid_w / 2, top + grid_h + 14, hm.x_label, "middle");
  s += Text(12, top + grid_h / 2, hm.y_label, "middle", kFontSize,
            " transform=\"rotate(-90 12 " + Num(top + grid_h / 2) + ")\"");
  double lx = left;
  const double ly = top + grid_h + 24;
  for (const LegendEntry& e : hm.legend) {
    s += Rect(lx, ly, 12, 12, e.color, "/>");
    s += Text(lx + 16, ly + 10, e.label, "start", 10);
    lx += 24 + 6.0 * static_cast<double>(e.label.size());
  }
  s += "</svg>";
  return s;
}

std::string RenderHistogram(const Histogram& h) {
  std::vector<double> v;
  bool log_x = h.log_x;
  for (double x : h.values) {
    if (!std::isfinite(x)) continue;
    if (log_x && x <= 0) log_x = false;
    v.push_back(x);
  }
  if (log_x) {
    for (double& x : v) x = std::log10(x);
  }
  const double width = 300, height = 190, x0 = 46, y0 = 26, w = 236, ph = 118;
  std::string s = OpenSvg(h.id, width, height);
  s += Text(4, 14, h.title, "start", 12, " font-weight=\"bold\"");
  if (v.empty()) {
    s += Text(width / 2, height / 2, "no finite values", "middle");
    return s + "</svg>";
  }
  double lo = *std::min_element(v.begin(), v.end());
  double hi = *std::max_element(v.begin(), v.end());
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {
    lo -= 0.5;
    hi += 0.5;
  }
  const int bins = std::max(1, h.bins);
  std::vector<int64_t> counts(static_cast<size_t>(bins), 0);
  for (double x : v) {
    int b = static_cast<int>((x - lo) / (hi - lo) * bins);
    counts[static_cast<size_t>(std::clamp(b, 0, bins - 1))]++;
  }
  const double top = static_cast<double>(*std::max_element(counts.begin(), counts.end()));
  s += Axes(x0, y0, w, ph, lo, hi, 0, top, h.x_label + (log_x ? " (log10)" : ""), "tensors", log_x);
  const double bw = w / bins;
  for (int b = 0; b < bins; ++b) {
    const double bh = top > 0 ? static_cast<double>(counts[static_cast<size_t>(b)]) / top * ph : 0;
    if (bh <= 0) continue;
    s += Rect(x0 + b * bw + 0.5, y0 + ph - bh, std::max(bw - 1, 0.5), bh, Rgb{44, 105, 142},
              " class=\"bar\"><title>" + std::to_string(counts[static_cast<size_t>(b)]) +
                  " tensors</title></rect>");
  }
  s += Text(width - 4, 14, "n = " + std::to_string(v.size()), "end", 10);
  return s + "</svg>";
}

std::string RenderLineChart(const LineChart& c) {
  const double width = 640, height = 340, x0 = 70, y0 = 30, w = 540, h = 250;
  std::string s = OpenSvg(c.id, width, height);
  s += Text(4, 16, c.title, "start", 13, " font-weight=\"bold\"");
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const LineSeries& ls : c.series) {
    for (size_t i = 0; i < ls.x.size() && i < ls.y.size(); ++i) {
      if (!std::isfinite(ls.x[i]) || !std::isfinite(ls.y[i])) continue;
      xlo = std::min(xlo, ls.x[i]);
      xhi = std::max(xhi, ls.x[i]);
      ylo = std::min(ylo, ls.y[i]);
      yhi = std::max(yhi, ls.y[i]);
    }
  }
  if (!std::isfinite(xlo)) {
    s += Text(width / 2, height / 2, "no data", "middle");
    return s + "</svg>";
  }
  if (xhi <= xlo) xhi = xlo + 1;
  if (yhi <= ylo) yhi = ylo + 1;
  ylo = std::min(ylo, 0.0);
  s += Axes(x0, y0, w, h, xlo, xhi, ylo, yhi, c.x_label, c.y_label);
  auto px = [&](double x) { return x0 + (x - xlo) / (xhi - xlo) * w; };
  auto py = [&](double y) { return y0 + h - (y - ylo) / (yhi - ylo) * h; };
  double legend_y = y0 + 4;
  for (const LineSeries& ls : c.series) {
    std::string pts;
    for (size_t i = 0; i < ls.x.size() && i < ls.y.size(); ++i) {
      if (!std::isfinite(ls.x[i]) || !std::isfinite(ls.y[i])) continue;
      pts += Num(px(ls.x[i]), 6) + "," + Num(py(ls.y[i]), 6) + " ";
    }
    s += "<polyline class=\"series\" fill=\"none\" stroke-width=\"2\" stroke=\"" +
         CssColor(ls.color) + "\" points=\"" + pts + "\"/>";
    if (c.series.size() > 1 || !ls.label.empty()) {
      s += Rect(x0 + w - 150, legend_y, 10, 10, ls.color, "/>");
      s += Text(x0 + w - 136, legend_y + 9, ls.label, "start", 10);
      legend_y += 14;
    }
  }
  if (c.marker && !c.series.empty() && *c.marker < c.series[0].x.size()) {
    const double mx = px(c.series[0].x[*c.marker]), my = py(c.series[0].y[*c.marker]);
    s += "<circle class=\"marker\" cx=\"" + Num(mx, 6) + "\" cy=\"" + Num(my, 6) +
         "\" r=\"6\" fill=\"none\" stroke=\"#b41e28\" stroke-width=\"2\"/>";
    s += Text(mx + 9, my - 9, c.marker_label, "start", 11, " fill=\"#b41e28\"");
  }
  return s + "</svg>";
}

std::string RenderBarChart(const BarChart& c) {
  const size_t n = c.labels.size();
  const double bar = 46, x0 = 64, y0 = 30, h = 180;
  const double w = std::max(200.0, bar * static_cast<double>(n) + 20);
  const double width = x0 + w + 20, height = y0 + h + 60;
  std::string s = OpenSvg(c.id, width, height);
  s += Text(4, 16, c.title, "start", 13, " font-weight=\"bold\"");
  double hi = 0;
  for (double v : c.values) {
    if (std::isfinite(v)) hi = std::max(hi, v);
  }
  if (hi <= 0) hi = 1;
  s += Axes(x0, y0, w, h, 0, 1, 0, hi, "", c.y_label, false, false);
  for (size_t i = 0; i < n && i < c.values.size(); ++i) {
    const double v = std::isfinite(c.values[i]) ? std::max(c.values[i], 0.0) : 0.0;
    const double bh = v / hi * h;
    const double x = x0 + 10 + static_cast<double>(i) * bar;
    s += Rect(x, y0 + h - bh, bar - 12, bh, c.color,
              " class=\"bar\"><title>" + XmlEscape(c.labels[i]) + ": " + Num(c.values[i]) +
                  "</title></rect>");
    s += Text(x + (bar - 12) / 2, y0 + h - bh - 3, Num(c.values[i], 3), "middle", 9);
    s += Text(x + (bar - 12) / 2, y0 + h + 34 + (i % 2) * 11, c.labels[i], "middle", 9);
  }
  return s + "</svg>";
}

}  // namespace moeq::report
