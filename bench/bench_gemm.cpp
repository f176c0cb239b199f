// bench_gemm: the machine's float32 GEMM rate for the bound of bench/scale (eval and profile
// tokens/s against FLOPs ÷ GEMM throughput). One thread, Eigen (the engine's float GEMM) on the
// shapes of a qwen3-30b-a3b layer over a batch of tokens: attention projections (tokens × 2048 ×
// 4096), one expert's projection over the tokens routed to it (256 × 2048 × 768) and lm_head
// rows (tokens × 2048 × 8192 of the 151,936). Reports GFLOP/s of wall time and GFLOP per CPU
// second (the figure that holds on a shared machine: it does not count time the process waited
// for a core). The table goes to stderr, one JSON object to stdout.
//
//   bench_gemm [--tokens N] [--reps N]
#include <sys/resource.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Shape {
  const char* name;
  long m, k, n;  // [m, k] x [k, n]
};

}  // namespace

int main(int argc, char** argv) {
  long tokens = 512;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens"))
      tokens = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps"))
      reps = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: bench_gemm [--tokens N] [--reps N]\n");
      return 2;
    }
  }
  Eigen::setNbThreads(1);
  const Shape shapes[] = {{"attention q (tokens x 2048 x 4096)", tokens, 2048, 4096},
                          {"expert gate (256 x 2048 x 768)", 256, 2048, 768},
                          {"lm_head slice (tokens x 2048 x 8192)", tokens, 2048, 8192}};
  std::string json = "{\"bench\": \"bench_gemm\", \"threads\": 1, \"shapes\": [";
  std::fprintf(stderr, "%-40s %10s %14s\n", "shape", "GFLOP/s", "GFLOP/CPU-s");
  double best_cpu_rate = 0;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; ++si) {
    const Shape& s = shapes[si];
    Eigen::MatrixXf a = Eigen::MatrixXf::Random(s.m, s.k);
    Eigen::MatrixXf b = Eigen::MatrixXf::Random(s.k, s.n);
    Eigen::MatrixXf c(s.m, s.n);
    c.noalias() = a * b;  // warm-up
    double wall = 1e30, cpu = 1e30;
    for (int r = 0; r < reps; ++r) {
      const double w0 = WallSeconds(), c0 = CpuSeconds();
      c.noalias() = a * b;
      wall = std::min(wall, WallSeconds() - w0);
      cpu = std::min(cpu, CpuSeconds() - c0);
    }
    const double flop =
        2.0 * static_cast<double>(s.m) * static_cast<double>(s.k) * static_cast<double>(s.n);
    const double rate = flop / wall / 1e9, cpu_rate = flop / std::max(cpu, 1e-9) / 1e9;
    best_cpu_rate = std::max(best_cpu_rate, cpu_rate);
    std::fprintf(stderr, "%-40s %10.1f %14.1f\n", s.name, rate, cpu_rate);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s{\"shape\": \"%s\", \"gflop_per_s\": %.2f, \"gflop_per_cpu_s\": %.2f, "
                  "\"check\": %.3f}",
                  si ? ", " : "", s.name, rate, cpu_rate, static_cast<double>(c(0, 0)));
    json += buf;
  }
  char tail[128];
  std::snprintf(tail, sizeof tail, "], \"best_gflop_per_cpu_s\": %.2f}", best_cpu_rate);
  std::printf("%s%s\n", json.c_str(), tail);
  return 0;
}
