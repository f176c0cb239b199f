// bench_analyze: time of each sensitivity feature family (spectral = randomized SVD k=256,
// distributional = group kurtosis, functional = 4-bit g64 RTN + noise amplification, the
// 8-config rate-distortion grid) on random [2048 x 768] and [768 x 2048] tensors, and the
// whole-model moeq-analyze time and peak RSS, each next to the time of reading the same bytes
// (a sum over the data / over the mmapped tensors) measured in the same run. Table on stderr,
// one JSON object on stdout.
//
//   bench_analyze [MODEL_DIR...] [--threads N] [--reps N]
//
// Models default to <source dir>/models/tiny-qwen3moe plus every ../shared/models/* present.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeq-analyze/analyze_command.h"
#include "moeq/base/build_info.h"
#include "moeq/base/parallel.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/quant/quant_format.h"
#include "moeq/quant/quantizer.h"
#include "moeq/sensitivity/features.h"

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
double BestSeconds(int reps, F&& fn) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const double t0 = Now();
    fn();
    best = std::min(best, Now() - t0);
  }
  return best;
}

volatile double g_sink = 0;

double PeakRssMiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

[[noreturn]] void Die(const moeq::Status& s) {
  std::fprintf(stderr, "bench_analyze: %s\n", s.message().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, reps = 3;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::max(1, std::atoi(argv[++i]));
    else
      models.push_back(a);
  }
  if (models.empty()) {
    models.push_back(std::string(moeq::kSourceDir) + "/models/tiny-qwen3moe");
    std::error_code ec;
    const std::filesystem::path shared =
        std::filesystem::path(moeq::kSourceDir) / ".." / "shared" / "models";
    if (std::filesystem::is_directory(shared, ec)) {
      std::vector<std::string> found;
      for (const auto& e : std::filesystem::directory_iterator(shared, ec)) {
        if (std::filesystem::exists(e.path() / "config.json")) found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      models.insert(models.end(), found.begin(), found.end());
    }
  }
  nlohmann::json report = {
      {"bench", "analyze"}, {"threads", moeq::ResolveThreads(threads)}, {"reps", reps}};
  std::fprintf(stderr, "%-12s %-14s %10s %10s %8s\n", "shape", "family", "ms", "read ms", "ratio");

  const std::vector<std::pair<int64_t, int64_t>> shapes = {{2048, 768}, {768, 2048}};
  for (const auto& [rows, cols] : shapes) {
    std::vector<float> w(static_cast<size_t>(rows * cols));
    moeq::analyze::Gaussian g(1);
    for (float& x : w) x = static_cast<float>(0.02 * g.Next());
    const double read = BestSeconds(reps * 3, [&] {
      double s = 0;
      for (float x : w) s += x;
      g_sink = s;
    });
    moeq::TensorInfo info{"w", moeq::DType::kF32, {rows, cols}};
    moeq::TensorView view{&info, std::as_bytes(std::span(w))};
    std::vector<const moeq::quant::FormatTraits*> fmts;
    for (const char* spec : {"2,32", "3,64", "4,32", "4,64", "4,128", "8,64", "8,128", "16"}) {
      auto f = moeq::quant::ParseFormatSpec(spec, moeq::DType::kBF16);
      if (!f.ok()) Die(f.status());
      fmts.push_back(*f);
    }
    const double t_spec = BestSeconds(reps, [&] {
      g_sink = moeq::analyze::ComputeSpectral(w, rows, cols, {256, 10, 2, 7}, threads).sigma_max;
    });
    const double t_dist = BestSeconds(reps, [&] {
      g_sink = moeq::analyze::ComputeDistribution(w, rows, cols, 128, threads).group_p90;
    });
    const double t_func = BestSeconds(reps, [&] {
      auto q = moeq::quant::QuantizeAffine(w, rows, cols, 4, 64, moeq::DType::kBF16, threads);
      if (!q.ok()) Die(q.status());
      auto hat = moeq::quant::Dequantize(*q, threads);
      if (!hat.ok()) Die(hat.status());
      g_sink = moeq::analyze::NoiseAmplification(w, *hat, rows, cols, {}, 32, 3, threads);
    });
    const double t_rd = BestSeconds(reps, [&] {
      auto r = moeq::quant::MeasureFormatErrors(view, fmts, threads);
      if (!r.ok()) Die(r.status());
      g_sink = (*r)[0].error_sq_sum;
    });
    const std::string key = std::to_string(rows) + "x" + std::to_string(cols);
    nlohmann::json j = {{"read_ms", read * 1e3}};
    for (const auto& [name, t] :
         std::vector<std::pair<std::string, double>>{{"spectral", t_spec},
                                                     {"distributional", t_dist},
                                                     {"functional", t_func},
                                                     {"rd_grid", t_rd}}) {
      std::fprintf(stderr, "%-12s %-14s %10.2f %10.3f %8.1f\n", key.c_str(), name.c_str(), t * 1e3,
                   read * 1e3, t / read);
      j[name] = {{"ms", t * 1e3}, {"ratio_to_read", t / read}};
    }
    report["tensors"][key] = j;
  }

  for (const std::string& dir : models) {
    auto ck = moeq::Checkpoint::Open(dir);
    if (!ck.ok()) {
      std::fprintf(stderr, "skip %s: %s\n", dir.c_str(), ck.status().message().c_str());
      continue;
    }
    uint64_t bytes = 0;
    const double t_read = BestSeconds(1, [&] {
      double s = 0;
      for (const auto& t : (*ck)->tensors()) {
        auto v = (*ck)->View(t.info.name);
        if (!v.ok()) Die(v.status());
        const auto* p = reinterpret_cast<const unsigned char*>(v->data.data());
        uint64_t acc = 0;
        for (size_t i = 0; i < v->data.size(); ++i) acc += p[i];
        s += static_cast<double>(acc);
        bytes += v->data.size();
      }
      g_sink = s;
    });
    const std::string out = "/tmp/bench_analyze_" + std::to_string(::getpid()) + ".jsonl";
    moeq::AnalyzeCommandOptions o;
    o.model_dir = dir;
    o.output = out;
    moeq::ArtifactContext ctx;
    ctx.tool = "bench_analyze";
    ctx.threads = threads;
    ctx.force = true;
    ctx.progress = false;
    const double t0 = Now();
    const moeq::Status st = moeq::RunAnalyze(o, ctx);
    const double t_an = Now() - t0;
    if (!st.ok()) Die(st);
    std::filesystem::remove(out);
    const std::string name = std::filesystem::path(dir).filename().string() +
                             (dir.find("/shared/") != std::string::npos ? " (shared)" : "");
    std::fprintf(stderr,
                 "%-26s analyze %8.2f s   read %.3f s (%.1f MB)   ratio %.0f   peak RSS %.0f MiB\n",
                 name.c_str(), t_an, t_read, bytes / 1e6, t_an / t_read, PeakRssMiB());
    report["models"][name] = {{"analyze_s", t_an},
                              {"read_s", t_read},
                              {"bytes", bytes},
                              {"ratio_to_read", t_an / t_read},
                              {"peak_rss_mib", PeakRssMiB()}};
  }
  std::printf("%s\n", report.dump().c_str());
  return 0;
}
