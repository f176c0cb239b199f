// Budget sweep: predicted objective against size, as CSV and a self-contained SVG plot.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "moeq/allocate/allocation.h"
#include "moeq/base/svg.h"

namespace moeq::alloc {
namespace {

// The report's number formatting, with the curve's precision by default.
std::string Num(double v, int digits = 6) { return report::Num(v, digits); }

}  // namespace

Result<std::vector<CurvePoint>> BudgetCurve(const AllocationModel& model, int points,
                                            SolverKind solver) {
  if (points < 2)
    return Status::InvalidArgument("--curve " + std::to_string(points) +
                                   ": need at least 2 points");
  const uint64_t lo = model.problem.MinBytes(), hi = model.problem.MaxBytes();
  std::vector<CurvePoint> curve;
  MckpProblem p = model.problem;
  for (int k = 0; k < points; ++k) {
    const double t = static_cast<double>(k) / (points - 1);
    const uint64_t b =
        k == points - 1 ? hi
                        : lo + static_cast<uint64_t>(std::floor(t * static_cast<double>(hi - lo)));
    p.budget = b;
    MOEQ_ASSIGN_OR_RETURN(MckpSolution s, SolveMckp(p, solver));
    CurvePoint pt{b, s.bytes, s.objective, s.lower_bound, s.gap};
    // The heuristic repair is not monotone in the budget; a smaller budget's allocation is
    // feasible for a larger one, so keep it when it is better (the curve never rises).
    if (!curve.empty() && curve.back().objective < pt.objective) {
      pt.bytes = curve.back().bytes;
      pt.objective = curve.back().objective;
      pt.gap =
          pt.objective > 0 ? std::max(0.0, (pt.objective - pt.lower_bound) / pt.objective) : 0.0;
    }
    curve.push_back(pt);
  }
  // With a target the curve is in bytes of the whole written file.
  if (model.target) {
    for (CurvePoint& pt : curve) {
      pt.budget += model.target->fixed_bytes;
      pt.bytes += model.target->fixed_bytes;
    }
  }
  return curve;
}

size_t CurveKnee(const std::vector<CurvePoint>& c) {
  if (c.size() < 3) return 0;
  const double x0 = static_cast<double>(c.front().budget),
               x1 = static_cast<double>(c.back().budget);
  double y0 = c.front().objective, y1 = c.front().objective;
  for (const auto& p : c) {
    y0 = std::min(y0, p.objective);
    y1 = std::max(y1, p.objective);
  }
  const double dx = x1 > x0 ? x1 - x0 : 1.0, dy = y1 > y0 ? y1 - y0 : 1.0;
  auto nx = [&](const CurvePoint& p) { return (static_cast<double>(p.budget) - x0) / dx; };
  auto ny = [&](const CurvePoint& p) { return (p.objective - y0) / dy; };
  // Chord from the first to the last point; distance of every point to it.
  const double ax = nx(c.front()), ay = ny(c.front()), bx = nx(c.back()), by = ny(c.back());
  const double len = std::hypot(bx - ax, by - ay);
  size_t best = 0;
  double best_d = -1;
  for (size_t i = 0; i < c.size(); ++i) {
    const double d =
        len > 0 ? std::abs((bx - ax) * (ay - ny(c[i])) - (ax - nx(c[i])) * (by - ay)) / len : 0.0;
    if (d > best_d + 1e-12) {
      best_d = d;
      best = i;
    }
  }
  return best;
}

std::string CurveCsv(const std::vector<CurvePoint>& curve, int64_t params) {
  const size_t knee = CurveKnee(curve);
  std::string out = "budget_bytes,budget_gib,bytes,bpw,objective,lower_bound,gap,knee\n";
  for (size_t i = 0; i < curve.size(); ++i) {
    const auto& p = curve[i];
    const double bpw =
        params > 0 ? 8.0 * static_cast<double>(p.bytes) / static_cast<double>(params) : 0.0;
    out += std::to_string(p.budget) + "," +
           Num(static_cast<double>(p.budget) / (1024.0 * 1024 * 1024), 8) + "," +
           std::to_string(p.bytes) + "," + Num(bpw, 6) + "," + Num(p.objective, 10) + "," +
           Num(p.lower_bound, 10) + "," + Num(p.gap, 4) + "," +
           (i == knee && curve.size() >= 3 ? "1" : "0") + "\n";
  }
  return out;
}

std::string CurveSvg(const std::vector<CurvePoint>& curve, int64_t params, std::string_view title,
                     std::string_view objective_label) {
  const double W = 720, H = 440, L = 80, R = 30, T = 40, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  // x in MiB or GiB, whichever reads better.
  const double max_b = curve.empty() ? 1.0 : static_cast<double>(curve.back().budget);
  const bool gib = max_b >= 1024.0 * 1024 * 1024;
  const double unit = gib ? 1024.0 * 1024 * 1024 : 1024.0 * 1024;
  double x0 = curve.empty() ? 0 : static_cast<double>(curve.front().budget) / unit,
         x1 = max_b / unit;
  double y0 = 0, y1 = 0;
  for (const auto& p : curve) y1 = std::max(y1, p.objective);
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * pw; };
  auto Y = [&](double v) { return T + ph - (v - y0) / (y1 - y0) * ph; };
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + Num(W) + "\" height=\"" +
                  Num(H) + "\" viewBox=\"0 0 " + Num(W) + " " + Num(H) +
                  "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + Num(W / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" +
       report::XmlEscape(title) + "</text>\n";
  // Axes and ticks.
  s += "<line x1=\"" + Num(L) + "\" y1=\"" + Num(T + ph) + "\" x2=\"" + Num(L + pw) + "\" y2=\"" +
       Num(T + ph) + "\" stroke=\"black\"/>\n";
  s += "<line x1=\"" + Num(L) + "\" y1=\"" + Num(T) + "\" x2=\"" + Num(L) + "\" y2=\"" +
       Num(T + ph) + "\" stroke=\"black\"/>\n";
  for (int k = 0; k <= 5; ++k) {
    const double xv = x0 + (x1 - x0) * k / 5, yv = y0 + (y1 - y0) * k / 5;
    s += "<line x1=\"" + Num(X(xv)) + "\" y1=\"" + Num(T + ph) + "\" x2=\"" + Num(X(xv)) +
         "\" y2=\"" + Num(T + ph + 5) + "\" stroke=\"black\"/>\n";
    s += "<text x=\"" + Num(X(xv)) + "\" y=\"" + Num(T + ph + 18) + "\" text-anchor=\"middle\">" +
         Num(xv, 4) + "</text>\n";
    s += "<line x1=\"" + Num(L - 5) + "\" y1=\"" + Num(Y(yv)) + "\" x2=\"" + Num(L) + "\" y2=\"" +
         Num(Y(yv)) + "\" stroke=\"black\"/>\n";
    s += "<line x1=\"" + Num(L) + "\" y1=\"" + Num(Y(yv)) + "\" x2=\"" + Num(L + pw) + "\" y2=\"" +
         Num(Y(yv)) + "\" stroke=\"#eee\"/>\n";
    s += "<text x=\"" + Num(L - 8) + "\" y=\"" + Num(Y(yv) + 4) + "\" text-anchor=\"end\">" +
         Num(yv, 4) + "</text>\n";
  }
  s += "<text x=\"" + Num(L + pw / 2) + "\" y=\"" + Num(H - 15) +
       "\" text-anchor=\"middle\">size of the allocated tensors (" + (gib ? "GiB" : "MiB") +
       ")</text>\n";
  s += "<text transform=\"translate(18," + Num(T + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">predicted objective " +
       report::XmlEscape(objective_label) + "</text>\n";
  // The curve.
  std::string pts;
  for (const auto& p : curve)
    pts += Num(X(static_cast<double>(p.budget) / unit)) + "," + Num(Y(p.objective)) + " ";
  s += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"" + pts + "\"/>\n";
  for (const auto& p : curve) {
    s += "<circle cx=\"" + Num(X(static_cast<double>(p.budget) / unit)) + "\" cy=\"" +
         Num(Y(p.objective)) + "\" r=\"2.5\" fill=\"#1f77b4\"/>\n";
  }
  if (curve.size() >= 3) {
    const auto& k = curve[CurveKnee(curve)];
    const double kx = X(static_cast<double>(k.budget) / unit), ky = Y(k.objective);
    s += "<circle cx=\"" + Num(kx) + "\" cy=\"" + Num(ky) +
         "\" r=\"6\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>\n";
    const double bpw =
        params > 0 ? 8.0 * static_cast<double>(k.bytes) / static_cast<double>(params) : 0.0;
    s += "<text x=\"" + Num(kx + 10) + "\" y=\"" + Num(ky - 10) +
         "\" fill=\"#d62728\">knee: " + Num(static_cast<double>(k.budget) / unit, 4) +
         (gib ? " GiB" : " MiB") + ", " + Num(bpw, 3) + " bpw, objective " + Num(k.objective, 4) +
         "</text>\n";
  }
  s += "</svg>\n";
  return s;
}

}  // namespace moeq::alloc
