// bench_quant: throughput of the sensitivity hot path — quantize + dequantize + error
// (MeasureFormatError) — for the eight MINT grid configs, on a synthetic [2048 x 768] bf16
// tensor and on a whole model, in GB/s of source weight bytes, next to memcpy of the same
// bytes measured in the same run. The table goes to stderr, one JSON line to stdout.
//
//   bench_quant [MODEL.safetensors] [--threads N] [--reps N]
//
// MODEL defaults to <source dir>/models/tiny-qwen3moe/model.safetensors, falling back to
// /work/shared/models/tiny-qwen3moe/model.safetensors.
#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "moeq/base/build_info.h"
#include "moeq/base/half.h"
#include "moeq/base/parallel.h"
#include "moeq/formats/safetensors.h"
#include "moeq/quant/quantizer.h"

namespace {

using moeq::quant::ErrorStats;
using moeq::quant::FormatTraits;

constexpr const char* kGridSpecs[] = {"2,32",  "3,64", "4,32",  "4,64",
                                      "4,128", "8,64", "8,128", "16"};

struct Options {
  std::string model;
  int threads = 0;  // 0 = all cores
  int reps = 5;     // timing repetitions; the best is reported
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best wall time of `reps` runs of fn().
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

void Clobber(void* p) { asm volatile("" : : "g"(p) : "memory"); }

[[noreturn]] void Die(const moeq::Status& st) {
  std::fprintf(stderr, "bench_quant: %s\n", st.ToString().c_str());
  std::exit(1);
}

std::vector<const FormatTraits*> GridFormats() {
  std::vector<const FormatTraits*> out;
  for (const char* spec : kGridSpecs) {
    auto f = moeq::quant::ParseFormatSpec(spec, moeq::DType::kBF16);
    if (!f.ok()) Die(f.status());
    out.push_back(*f);
  }
  return out;
}

// The human-readable table goes to stderr; stdout carries only the JSON line.
__attribute__((format(printf, 1, 2))) void Table(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
}

double Gbps(double bytes, double seconds) { return seconds > 0 ? bytes / seconds / 1e9 : 0.0; }

nlohmann::json BenchSynthetic(const Options& opt, const std::vector<const FormatTraits*>& grid) {
  const int64_t rows = 2048, cols = 768;
  moeq::TensorInfo info{"synthetic", moeq::DType::kBF16, {rows, cols}};
  std::vector<uint16_t> data(static_cast<size_t>(rows * cols));
  std::mt19937 rng(1234);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (auto& h : data) h = moeq::F32ToBf16(dist(rng));
  const moeq::TensorView view{&info, std::as_bytes(std::span<const uint16_t>(data))};
  const double bytes = static_cast<double>(info.nbytes());

  std::vector<std::byte> dst(view.data.size());
  const double t_memcpy = BestSeconds(opt.reps * 20, [&] {
    std::memcpy(dst.data(), view.data.data(), view.data.size());
    Clobber(dst.data());
  });
  const double memcpy_gbps = Gbps(bytes, t_memcpy);

  Table("\n[2048 x 768] bf16 synthetic (N(0, 0.02), seed 1234): %.2f MB, memcpy %.2f GB/s\n",
        bytes / 1e6, memcpy_gbps);
  Table("  %-8s %10s %9s %10s %9s %9s %8s\n", "format", "ms", "GB/s", "x memcpy", "NRMSE",
        "SQNR dB", "bpw");
  nlohmann::json configs = nlohmann::json::array();
  for (const FormatTraits* f : grid) {
    ErrorStats stats;
    const double t = BestSeconds(opt.reps, [&] {
      auto m = moeq::quant::MeasureFormatError(view, *f, opt.threads);
      if (!m.ok()) Die(m.status());
      stats = *m;
    });
    const double gbps = Gbps(bytes, t);
    Table("  %-8s %10.3f %9.3f %10.3f %9.5f %9.2f %8.3f\n", std::string(f->name).c_str(), t * 1e3,
          gbps, gbps / memcpy_gbps, stats.Nrmse(), stats.SqnrDb(),
          static_cast<double>(stats.storage_bytes) * 8.0 / static_cast<double>(rows * cols));
    configs.push_back({{"format", f->name},
                       {"seconds", t},
                       {"gbps", gbps},
                       {"ratio_to_memcpy", gbps / memcpy_gbps},
                       {"nrmse", stats.Nrmse()},
                       {"sqnr_db", stats.SqnrDb()},
                       {"storage_bytes", stats.storage_bytes}});
  }
  const double t_all = BestSeconds(opt.reps, [&] {
    auto m = moeq::quant::MeasureFormatErrors(view, grid, opt.threads);
    if (!m.ok()) Die(m.status());
  });
  Table("  all 8 in one pass: %.3f ms = %.3f GB/s of weights (%.3f GB/s per config)\n", t_all * 1e3,
        Gbps(bytes, t_all), Gbps(bytes * 8, t_all));
  return {{"shape", {rows, cols}},
          {"dtype", "BF16"},
          {"bytes", info.nbytes()},
          {"memcpy_gbps", memcpy_gbps},
          {"configs", configs},
          {"all_configs_one_pass_seconds", t_all},
          {"all_configs_one_pass_gbps", Gbps(bytes, t_all)}};
}

nlohmann::json BenchModel(const Options& opt, const std::vector<const FormatTraits*>& grid) {
  auto file = moeq::SafetensorsFile::Open(opt.model);
  if (!file.ok()) Die(file.status());
  std::vector<moeq::TensorView> views;
  uint64_t total_bytes = 0, max_bytes = 0;
  for (const auto& info : (*file)->tensors()) {
    if (info.shape.size() < 2 || !moeq::IsFloatDType(info.dtype)) continue;
    auto v = (*file)->View(info.name);
    if (!v.ok()) Die(v.status());
    views.push_back(*v);
    total_bytes += info.nbytes();
    max_bytes = std::max(max_bytes, info.nbytes());
  }
  const double bytes = static_cast<double>(total_bytes);

  std::vector<std::byte> dst(max_bytes);
  auto copy_all = [&] {
    for (const auto& v : views) {
      std::memcpy(dst.data(), v.data.data(), v.data.size());
      Clobber(dst.data());
    }
  };
  copy_all();  // fault the mapping in
  const double t_memcpy = BestSeconds(opt.reps * 4, copy_all);
  const double memcpy_gbps = Gbps(bytes, t_memcpy);

  Table("\nmodel %s: %zu 2-D/3-D tensors, %.2f MB, memcpy %.2f GB/s\n", opt.model.c_str(),
        views.size(), bytes / 1e6, memcpy_gbps);
  Table("  %-8s %10s %9s %10s %9s %9s %8s\n", "format", "ms", "GB/s", "x memcpy", "NRMSE",
        "SQNR dB", "skipped");
  nlohmann::json configs = nlohmann::json::array();
  for (const FormatTraits* f : grid) {
    ErrorStats total;
    int skipped = 0;
    double measured_bytes = 0;
    const double t = BestSeconds(opt.reps, [&] {
      total = ErrorStats();
      skipped = 0;
      measured_bytes = 0;
      for (const auto& v : views) {
        if (f->is_affine() && v.info->shape.back() % f->group_size != 0) {
          ++skipped;
          continue;
        }
        auto m = moeq::quant::MeasureFormatError(v, *f, opt.threads);
        if (!m.ok()) Die(m.status());
        total.Merge(*m);
        measured_bytes += static_cast<double>(v.info->nbytes());
      }
    });
    const double gbps = Gbps(measured_bytes, t);
    Table("  %-8s %10.3f %9.3f %10.3f %9.5f %9.2f %8d\n", std::string(f->name).c_str(), t * 1e3,
          gbps, gbps / memcpy_gbps, total.Nrmse(), total.SqnrDb(), skipped);
    configs.push_back({{"format", f->name},
                       {"seconds", t},
                       {"gbps", gbps},
                       {"ratio_to_memcpy", gbps / memcpy_gbps},
                       {"nrmse", total.Nrmse()},
                       {"sqnr_db", total.SqnrDb()},
                       {"storage_bytes", total.storage_bytes},
                       {"skipped_tensors", skipped}});
  }
  // How the sensitivity tool should drive it: all formats per tensor in one pass, tensors in
  // parallel (most tensors of an MoE are small experts that fit in a single row block).
  const int threads = moeq::ResolveThreads(opt.threads);
  const double t_all = BestSeconds(opt.reps, [&] {
    moeq::ParallelFor(
        static_cast<int64_t>(views.size()),
        [&](int64_t i) {
          const auto& v = views[static_cast<size_t>(i)];
          std::vector<const FormatTraits*> usable;
          for (const FormatTraits* f : grid) {
            if (!f->is_affine() || v.info->shape.back() % f->group_size == 0) usable.push_back(f);
          }
          auto m = moeq::quant::MeasureFormatErrors(v, usable, 1);
          if (!m.ok()) Die(m.status());
        },
        threads);
  });
  Table(
      "  all 8 in one pass, tensors in parallel: %.3f ms = %.3f GB/s of weights "
      "(%.3f GB/s per config)\n",
      t_all * 1e3, Gbps(bytes, t_all), Gbps(bytes * 8, t_all));
  return {{"path", opt.model},
          {"tensors", views.size()},
          {"bytes", total_bytes},
          {"memcpy_gbps", memcpy_gbps},
          {"configs", configs},
          {"all_configs_tensor_parallel_seconds", t_all},
          {"all_configs_tensor_parallel_gbps", Gbps(bytes, t_all)}};
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--threads" || a == "-t") && i + 1 < argc) {
      opt.threads = std::atoi(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      opt.reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_quant [MODEL.safetensors] [--threads N] [--reps N]\n");
      return 0;
    } else if (!a.empty() && a[0] != '-') {
      opt.model = a;
    } else {
      std::fprintf(stderr, "bench_quant: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (opt.model.empty()) {
    opt.model = std::string(moeq::kSourceDir) + "/models/tiny-qwen3moe/model.safetensors";
    if (!std::filesystem::exists(opt.model)) {
      opt.model = "/work/shared/models/tiny-qwen3moe/model.safetensors";
    }
  }
  const auto grid = GridFormats();
  Table("bench_quant: kernels %s, threads %d (requested %d), best of %d\n",
        std::string(moeq::quant::ActiveKernelName()).c_str(), moeq::ResolveThreads(opt.threads),
        opt.threads, opt.reps);
  nlohmann::json report = {{"bench", "bench_quant"},
                           {"kernels", moeq::quant::ActiveKernelName()},
                           {"threads", moeq::ResolveThreads(opt.threads)},
                           {"reps", opt.reps}};
  report["synthetic"] = BenchSynthetic(opt, grid);
  report["model"] = BenchModel(opt, grid);
  std::printf("%s\n", report.dump().c_str());
  return 0;
}
