// bench_gguf: WriteGguf throughput on whole models, in MB/s of source weight bytes, next to a
// plain copy of the same bytes (read through Checkpoint::View, written and fsynced) measured in
// the same run. Also prints what each model gets: file size, bits per weight, ggml types,
// fallbacks and promoted expert tensors. The table goes to stderr, one JSON line to stdout.
//
//   bench_gguf [MODEL_DIR ...] [--formats q4g64,q8g32,...] [--threads N] [--reps N] [--out DIR]
//
// MODEL_DIR defaults to <source dir>/models/tiny-qwen3moe plus every ../shared/models/* found.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeq/base/build_info.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/gguf_writer.h"
#include "moeq/export/quant_plan.h"

namespace {

namespace fs = std::filesystem;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Plain copy: every tensor's bytes written to `path`, fsynced. Returns seconds.
double PlainCopy(const moeq::Checkpoint& ckpt, const std::string& path, uint64_t* bytes) {
  const double t0 = Now();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return -1;
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);
  *bytes = 0;
  for (const auto& t : ckpt.tensors()) {
    auto v = ckpt.View(t.info.name);
    if (!v.ok()) continue;
    std::fwrite(v->data.data(), 1, v->data.size(), f);
    *bytes += v->data.size();
  }
  std::fflush(f);
  ::fsync(fileno(f));
  std::fclose(f);
  return Now() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models;
  std::vector<std::string> formats = {"q4g64", "q8g32", "q3g64", "keep"};
  int threads = 0, reps = 2;
  std::string out_dir = (fs::temp_directory_path() / "moeq-bench-gguf").string();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--out" && i + 1 < argc) {
      out_dir = argv[++i];
    } else if (a == "--formats" && i + 1 < argc) {
      formats.clear();
      std::string s = argv[++i];
      size_t p = 0;
      while (p <= s.size()) {
        const size_t q = s.find(',', p);
        formats.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
        if (q == std::string::npos) break;
        p = q + 1;
      }
    } else {
      models.push_back(a);
    }
  }
  if (models.empty()) {
    models.push_back(std::string(moeq::kSourceDir) + "/models/tiny-qwen3moe");
    const fs::path shared = fs::path(moeq::kSourceDir) / ".." / "shared" / "models";
    if (fs::exists(shared)) {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(shared)) {
        if (fs::exists(e.path() / "config.json")) found.push_back(fs::canonical(e.path()).string());
      }
      std::sort(found.begin(), found.end());
      models.insert(models.end(), found.begin(), found.end());
    }
  }
  fs::create_directories(out_dir);

  nlohmann::json results = nlohmann::json::array();
  std::fprintf(stderr, "%-16s %-6s %10s %6s %9s %9s %6s %4s %4s  %s\n", "model", "format",
               "file MB", "bpw", "gguf MB/s", "copy MB/s", "ratio", "fb", "prom", "types");
  for (const std::string& dir : models) {
    auto ck = moeq::Checkpoint::Open(dir);
    if (!ck.ok()) {
      std::fprintf(stderr, "%s: %s\n", dir.c_str(), ck.status().ToString().c_str());
      return 1;
    }
    const std::string name = fs::path(dir).filename().string();
    for (const std::string& fmt : formats) {
      moeq::QuantPlan plan;
      if (fmt != "keep") {
        const moeq::quant::FormatTraits* f = moeq::quant::FindFormat(fmt);
        if (!f) {
          std::fprintf(stderr, "unknown format %s\n", fmt.c_str());
          return 2;
        }
        auto p = moeq::MakeUniformPlan(**ck, *f);
        if (!p.ok()) {
          std::fprintf(stderr, "%s\n", p.status().ToString().c_str());
          return 1;
        }
        plan = *p;
      } else {
        plan.source = "keep";
      }
      const std::string out = out_dir + "/" + name + "-" + fmt + ".gguf";
      const std::string copy = out_dir + "/" + name + "-copy.bin";
      double best_gguf = 1e300, best_copy = 1e300;
      moeq::GgufWriteReport report;
      uint64_t src_bytes = 0;
      for (int r = 0; r < reps; ++r) {
        best_copy = std::min(best_copy, PlainCopy(**ck, copy, &src_bytes));
        moeq::GgufWriteOptions opt;
        opt.threads = threads;
        opt.progress = false;
        opt.report = &report;
        const double t0 = Now();
        const moeq::Status s = moeq::WriteGguf(**ck, plan, out, opt);
        const double dt = Now() - t0;
        if (!s.ok()) {
          std::fprintf(stderr, "%s %s: %s\n", name.c_str(), fmt.c_str(), s.ToString().c_str());
          return 1;
        }
        best_gguf = std::min(best_gguf, dt);
      }
      fs::remove(copy);
      const double mb = static_cast<double>(src_bytes) / 1e6;
      const double bpw = report.weights > 0 ? static_cast<double>(report.tensor_bytes) * 8.0 /
                                                  static_cast<double>(report.weights)
                                            : 0;
      const nlohmann::json types = report.TypeSummary();
      std::string type_list;
      for (const auto& [t, v] : types.items())
        type_list += t + ":" + std::to_string(v["tensors"].get<int>()) + " ";
      std::fprintf(stderr, "%-16s %-6s %10.3f %6.3f %9.1f %9.1f %6.3f %4d %4d  %s\n", name.c_str(),
                   fmt.c_str(), static_cast<double>(report.file_bytes) / 1e6, bpw, mb / best_gguf,
                   mb / best_copy, best_copy / best_gguf, report.fallback_tensors,
                   report.promoted_expert_tensors, type_list.c_str());
      results.push_back({{"model", name},
                         {"format", fmt},
                         {"file_bytes", report.file_bytes},
                         {"source_bytes", src_bytes},
                         {"bits_per_weight", bpw},
                         {"gguf_seconds", best_gguf},
                         {"copy_seconds", best_copy},
                         {"gguf_mb_per_s", mb / best_gguf},
                         {"copy_mb_per_s", mb / best_copy},
                         {"throughput_ratio_vs_copy", best_copy / best_gguf},
                         {"fallback_tensors", report.fallback_tensors},
                         {"promoted_expert_tensors", report.promoted_expert_tensors},
                         {"types", types}});
      fs::remove(out);
    }
  }
  std::printf("%s\n",
              nlohmann::json({{"bench", "gguf"}, {"threads", threads}, {"results", results}})
                  .dump()
                  .c_str());
  return 0;
}
