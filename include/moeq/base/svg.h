// Small inline-SVG chart builders for moeq-report: heatmaps, histograms, line charts and bar
// charts. Output is deterministic text (fixed number formatting), self-contained (no fonts,
// scripts or external references).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moeq::report {

/// An sRGB colour.
struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};
std::string CssColor(Rgb c);
/// Sequential palette (dark blue → teal → yellow), t in [0, 1] (clamped).
Rgb Sequential(double t);
/// Diverging palette (blue → near-white → red), t in [-1, 1] (clamped).
Rgb Diverging(double t);

/// Escapes &, <, >, " for text and attribute values.
std::string XmlEscape(std::string_view s);
/// Fixed formatting for numbers printed in charts: up to `digits` significant digits.
std::string Num(double v, int digits = 4);

/// One heatmap cell: a colour, and the tooltip text (SVG <title>). An absent cell is drawn as
/// a light grey hatch-free square.
struct HeatCell {
  bool present = false;
  Rgb color;
  std::string tooltip;
};

/// A legend entry: a colour swatch and its label.
struct LegendEntry {
  Rgb color;
  std::string label;
};

struct Heatmap {
  std::string id;     ///< element id of the <svg>
  std::string title;  ///< caption above the grid
  std::vector<std::string> row_labels;
  std::vector<std::string> col_labels;  ///< may be thinned when there are many columns
  std::vector<HeatCell> cells;          ///< row-major [rows, cols]
  std::vector<LegendEntry> legend;
  std::string x_label, y_label;
};
std::string RenderHeatmap(const Heatmap& h);

/// Histogram of `values` in `bins` equal bins between their min and max (log10 of the values
/// when `log_x` and every value is > 0).
struct Histogram {
  std::string id, title, x_label;
  std::vector<double> values;
  int bins = 30;
  bool log_x = false;
};
std::string RenderHistogram(const Histogram& h);

struct LineSeries {
  std::string label;
  std::vector<double> x, y;
  Rgb color;
};
struct LineChart {
  std::string id, title, x_label, y_label;
  std::vector<LineSeries> series;
  /// Index into series[0] of a point to mark and annotate (e.g. the knee).
  std::optional<size_t> marker;
  std::string marker_label;
};
std::string RenderLineChart(const LineChart& c);

struct BarChart {
  std::string id, title, y_label;
  std::vector<std::string> labels;
  std::vector<double> values;
  Rgb color;
};
std::string RenderBarChart(const BarChart& c);

}  // namespace moeq::report
