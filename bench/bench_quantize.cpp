// bench_quantize: end-to-end write throughput of moeq-quantize (MLX output, --uniform 4
// --group 64 and --uniform 8 --group 64) on a model directory, next to a plain copy of the
// same source bytes into a fresh directory (read + write + fsync-free) measured in the same
// run. Reports source GB/s and the ratio quantize/copy. Table to stderr, one JSON line to stdout.
//
//   bench_quantize [MODEL_DIR] [--threads N] [--reps N]
//
// MODEL_DIR defaults to <source dir>/models/tiny-qwen3moe.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeq-quantize/quantize_command.h"
#include "moeq/base/build_info.h"

namespace fs = std::filesystem;

namespace {

double Seconds(const std::chrono::steady_clock::time_point& t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

uint64_t DirBytes(const std::string& dir, bool only_safetensors) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    if (only_safetensors && e.path().extension() != ".safetensors") continue;
    n += e.file_size();
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = std::string(moeq::kSourceDir) + "/models/tiny-qwen3moe";
  int threads = 0, reps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      model = a;
    }
  }
  if (!fs::exists(model + "/config.json")) {
    std::fprintf(stderr, "bench_quantize: %s is not a model directory\n", model.c_str());
    return 1;
  }
  const fs::path scratch =
      fs::temp_directory_path() / ("bench_quantize-" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  const uint64_t src_bytes = DirBytes(model, true);

  // Baseline: plain copy of the safetensors files.
  double copy_best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const fs::path dst = scratch / "copy";
    fs::remove_all(dst);
    fs::create_directories(dst);
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& e : fs::directory_iterator(model)) {
      if (e.path().extension() == ".safetensors")
        fs::copy_file(e.path(), dst / e.path().filename());
    }
    copy_best = std::min(copy_best, Seconds(t0));
  }

  nlohmann::json report = {{"model", model},
                           {"source_bytes", src_bytes},
                           {"copy_seconds", copy_best},
                           {"copy_gbps", src_bytes / copy_best / 1e9}};
  std::fprintf(stderr, "%-14s %10s %12s %10s %10s\n", "run", "seconds", "out bytes", "src GB/s",
               "vs copy");
  std::fprintf(stderr, "%-14s %10.3f %12llu %10.3f %10.2f\n", "plain copy", copy_best,
               static_cast<unsigned long long>(src_bytes), src_bytes / copy_best / 1e9, 1.0);
  for (int bits : {4, 8}) {
    double best = 1e30;
    uint64_t out_bytes = 0;
    for (int r = 0; r < reps; ++r) {
      moeq::QuantizeCommandOptions o;
      o.model_dir = model;
      o.output = (scratch / ("q" + std::to_string(bits))).string();
      o.uniform_bits = bits;
      o.group_size = 64;
      moeq::ArtifactContext ctx;
      ctx.tool = "bench_quantize";
      ctx.progress = false;
      ctx.force = true;
      ctx.threads = threads;
      const auto t0 = std::chrono::steady_clock::now();
      moeq::Status s = moeq::RunQuantize(o, ctx);
      const double secs = Seconds(t0);
      if (!s.ok()) {
        std::fprintf(stderr, "bench_quantize: %s\n", s.ToString().c_str());
        fs::remove_all(scratch);
        return 1;
      }
      best = std::min(best, secs);
      out_bytes = DirBytes(o.output, true);
    }
    const std::string key = "q" + std::to_string(bits) + "g64";
    report[key] = {{"seconds", best},
                   {"output_bytes", out_bytes},
                   {"source_gbps", src_bytes / best / 1e9},
                   {"time_vs_copy", best / copy_best}};
    std::fprintf(stderr, "%-14s %10.3f %12llu %10.3f %10.2f\n", key.c_str(), best,
                 static_cast<unsigned long long>(out_bytes), src_bytes / best / 1e9,
                 best / copy_best);
  }
  fs::remove_all(scratch);
  std::printf("%s\n", report.dump().c_str());
  return 0;
}
