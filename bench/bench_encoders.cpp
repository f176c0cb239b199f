// bench_encoders: cost of the data-aware quantization at real expert shapes (Qwen3-30B-A3B:
// hidden 2048, expert width 768) — [768 x 2048] (gate/up) and [2048 x 768] (down):
//   - statistics: accumulating the Gram matrix XᵀX of T tokens in double (what moeq-profile
//     --gram does per window, float rows converted to double) and the diagonal Σx², next to a
//     plain float GEMM XᵀX of the same size;
//   - encoders at q4g64: rtn, weighted, gptq (and gptq --act-order), next to a plain float GEMM
//     W·M with M [cols x cols], the size of GPTQ's dominant work (rows·cols² multiply-adds);
//   - memory: bytes of one input's Gram accumulator and the process's peak RSS.
// Every ratio is against a baseline measured in the same run. Table to stderr, JSON to stdout.
//
//   bench_encoders [--threads N] [--reps N] [--tokens T]
#include <sys/resource.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "moeq/base/parallel.h"
#include "moeq/quant/encoders.h"

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

void Clobber(void* p) { asm volatile("" : : "g"(p) : "memory"); }

using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, reps = 3;
  int64_t tokens = 4096;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--tokens" && i + 1 < argc)
      tokens = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_encoders [--threads N] [--reps N] [--tokens T]\n");
      return 2;
    }
  }
  const int nthreads = moeq::ResolveThreads(threads);
  nlohmann::json report = {
      {"bench", "bench_encoders"}, {"threads", nthreads}, {"reps", reps}, {"tokens", tokens}};
  nlohmann::json shapes = nlohmann::json::array();
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::fprintf(stderr, "%-12s %-18s %10s %12s %10s\n", "shape", "what", "ms", "GFLOP/s", "x GEMM");
  for (const auto& [rows, cols] :
       {std::pair<int64_t, int64_t>{768, 2048}, std::pair<int64_t, int64_t>{2048, 768}}) {
    const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
    // Correlated inputs (an AR(1) mix along the feature axis) and Gaussian weights.
    RowF x(tokens, cols);
    for (int64_t t = 0; t < tokens; ++t) {
      float prev = 0;
      for (int64_t c = 0; c < cols; ++c) {
        prev = 0.8f * prev + nd(rng);
        x(t, c) = prev;
      }
    }
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (auto& v : w) v = 0.02f * nd(rng);

    // Statistics: Gram in double (the profile's accumulation) vs float GEMM of the same size.
    RowD gram = RowD::Zero(cols, cols);
    const double t_gram = BestSeconds(reps, [&] {
      gram.setZero();
      const RowD xd = x.cast<double>();
      gram.noalias() += xd.transpose() * xd;
      Clobber(gram.data());
    });
    RowF gf(cols, cols);
    const double t_gemm_stats = BestSeconds(reps, [&] {
      gf.noalias() = x.transpose() * x;
      Clobber(gf.data());
    });
    std::vector<double> diag(static_cast<size_t>(cols));
    const double t_diag = BestSeconds(reps, [&] {
      std::fill(diag.begin(), diag.end(), 0.0);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t c = 0; c < cols; ++c)
          diag[static_cast<size_t>(c)] += static_cast<double>(x(t, c)) * x(t, c);
      Clobber(diag.data());
    });
    moeq::quant::InputStats st;
    st.count = tokens;
    st.gram.resize(static_cast<size_t>(cols * cols));
    st.diag.resize(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = 0; j < cols; ++j)
        st.gram[static_cast<size_t>(i * cols + j)] = gram(i, j) / static_cast<double>(tokens);
      st.diag[static_cast<size_t>(i)] = gram(i, i) / static_cast<double>(tokens);
    }

    // Encoders vs a float GEMM [rows, cols] x [cols, cols].
    RowF wm = Eigen::Map<const RowF>(w.data(), rows, cols);
    RowF m = RowF::Random(cols, cols), out(rows, cols);
    const double t_gemm = BestSeconds(reps, [&] {
      out.noalias() = wm * m;
      Clobber(out.data());
    });
    const double gemm_flops = 2.0 * static_cast<double>(rows) * cols * cols;
    const auto* fmt = moeq::quant::FindAffineFormat(4, 64);
    nlohmann::json enc = nlohmann::json::object();
    auto row = [&](const char* what, double secs, double flops, double base) {
      std::fprintf(stderr, "%-12s %-18s %10.2f %12.2f %10.2f\n", shape.c_str(), what, secs * 1e3,
                   flops > 0 ? flops / secs / 1e9 : 0.0, secs / base);
    };
    row("gram (double)", t_gram, 2.0 * tokens * cols * cols, t_gemm_stats);
    row("gemm XtX (float)", t_gemm_stats, 2.0 * tokens * cols * cols, t_gemm_stats);
    row("diag", t_diag, 2.0 * tokens * cols, t_gemm_stats);
    row("gemm W*M (float)", t_gemm, gemm_flops, t_gemm);
    for (const auto& [name, kind, act] :
         {std::tuple{"rtn", moeq::quant::EncoderKind::kRtn, false},
          std::tuple{"weighted", moeq::quant::EncoderKind::kWeighted, false},
          std::tuple{"gptq", moeq::quant::EncoderKind::kGptq, false},
          std::tuple{"gptq act-order", moeq::quant::EncoderKind::kGptq, true}}) {
      moeq::quant::EncoderOptions o;
      o.kind = kind;
      o.gptq_act_order = act;
      moeq::quant::QuantizedTensor last;
      const double t = BestSeconds(reps, [&] {
        auto q =
            moeq::quant::EncodeAffine(w, rows, cols, *fmt, moeq::DType::kBF16, o, &st, threads);
        if (!q.ok()) {
          std::fprintf(stderr, "%s\n", q.status().ToString().c_str());
          std::exit(1);
        }
        last = std::move(*q);
      });
      // Not timed: the activation-weighted error of the result.
      const double err = moeq::quant::MeasureWeightedError(
                             w, *moeq::quant::Dequantize(last, threads), rows, cols, st, threads)
                             ->Relative();
      row(name, t, kind == moeq::quant::EncoderKind::kGptq ? gemm_flops / 2 : 0.0, t_gemm);
      enc[name] = {{"ms", t * 1e3}, {"x_gemm", t / t_gemm}, {"act_rel_error", err}};
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    shapes.push_back({{"shape", {rows, cols}},
                      {"stats",
                       {{"gram_ms", t_gram * 1e3},
                        {"gemm_xtx_float_ms", t_gemm_stats * 1e3},
                        {"gram_x_gemm", t_gram / t_gemm_stats},
                        {"diag_ms", t_diag * 1e3},
                        {"gram_tokens_per_s", tokens / t_gram},
                        {"gram_accumulator_bytes", cols * cols * 8}}},
                      {"gemm_wm_ms", t_gemm * 1e3},
                      {"gemm_wm_gflops", gemm_flops / t_gemm / 1e9},
                      {"encoders_q4g64", enc},
                      {"max_rss_mib", static_cast<double>(ru.ru_maxrss) / 1024.0}});
  }
  report["shapes"] = shapes;
  std::printf("%s\n", report.dump().c_str());
  return 0;
}
