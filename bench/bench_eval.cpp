// bench_eval: moeq-eval throughput (library Evaluate, reference protocol: windows of 512 tokens
// run concurrently, each window one Forward call whose MoE layers sort the window's tokens by
// expert) against a straightforward per-token baseline of the same engine measured in the same
// run: Engine::Forward called on one token at a time (the same tokens, the same threads, calls
// spread over the threads). The baseline is the per-token cost without the attention over a KV
// cache that a real token-by-token evaluator would also pay, so it flatters the baseline and
// the reported speed-up is a lower bound. Running every position's prefix separately (the
// only exact per-token method without a KV cache) costs (context+1)/2 times more tokens again
// and is not measured.
//
//   bench_eval [MODEL_DIR...] [--threads N] [--windows N] [--baseline-tokens N]
//
// Without MODEL_DIR: <source>/models/tiny-qwen3moe and every <source>/../shared/models/*/ present.
// Text: <source>/data/moe-corpus/valid.txt tokenized with each model's tokenizer.json. The table
// goes to stderr, one JSON line to stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/base/parallel.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/eval/eval.h"
#include "moeq/tokenizer/tokenizer.h"

namespace {

struct Options {
  std::vector<std::string> models;
  int threads = 0;
  int64_t windows = 16;
  int64_t baseline_tokens = 2048;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void Die(const moeq::Status& st) {
  std::fprintf(stderr, "bench_eval: %s\n", st.ToString().c_str());
  std::exit(1);
}

nlohmann::json BenchModel(const std::string& dir, const Options& opt) {
  auto ckpt = moeq::Checkpoint::Open(dir);
  if (!ckpt.ok()) Die(ckpt.status());
  auto engine = moeq::Engine::Load(**ckpt, {opt.threads});
  if (!engine.ok()) Die(engine.status());
  auto tok = moeq::Tokenizer::Load(dir + "/tokenizer.json");
  if (!tok.ok()) Die(tok.status());
  auto text = moeq::ReadFile(std::string(moeq::kSourceDir) + "/data/moe-corpus/valid.txt");
  if (!text.ok()) Die(text.status());
  const size_t bytes = std::min<size_t>(text->size(), static_cast<size_t>(opt.windows) * 512 * 8);
  auto ids = (*tok)->Encode(std::string_view(*text).substr(0, bytes));
  if (!ids.ok()) Die(ids.status());

  // Windowed evaluation, as moeq-eval runs it (best of 2).
  moeq::EvalOptions eo;
  eo.progress = false;
  eo.threads = opt.threads;
  eo.protocol.context = 512;
  eo.protocol.max_chunks = opt.windows;
  double eval_tps = 0, ppl = 0;
  int64_t eval_tokens = 0;
  for (int rep = 0; rep < 2; ++rep) {
    auto r = moeq::Evaluate(**engine, *ids, eo);
    if (!r.ok()) Die(r.status());
    eval_tps = std::max(eval_tps, r->tokens_per_second);
    eval_tokens = r->windows * 512;
    ppl = r->ppl;
  }

  // Baseline: one token per Forward call, calls spread over the threads (best of 2).
  const int64_t n = std::min<int64_t>(opt.baseline_tokens, static_cast<int64_t>(ids->size()));
  double base_s = 1e300;
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<moeq::Status> errors(static_cast<size_t>(n));
    const double t0 = Now();
    moeq::ParallelFor(
        n,
        [&](int64_t i) {
          std::vector<float> logits;
          errors[static_cast<size_t>(i)] =
              (*engine)->Forward(std::span<const int32_t>(ids->data() + i, 1), &logits, nullptr, 1);
        },
        opt.threads, 16);
    base_s = std::min(base_s, Now() - t0);
    for (const auto& s : errors) {
      if (!s.ok()) Die(s);
    }
  }
  const double base_tps = static_cast<double>(n) / base_s;
  std::fprintf(stderr,
               "%-28s windowed eval %9.0f tok/s (%lld tokens, ppl %.3f)   per-token Forward %9.0f "
               "tok/s (%lld tokens)   ratio %.2fx\n",
               std::filesystem::path(dir).filename().c_str(), eval_tps,
               static_cast<long long>(eval_tokens), ppl, base_tps, static_cast<long long>(n),
               eval_tps / base_tps);
  return {{"model", dir},
          {"model_type", (*ckpt)->config().model_type},
          {"eval_tokens", eval_tokens},
          {"eval_tokens_per_second", eval_tps},
          {"baseline_tokens", n},
          {"baseline_tokens_per_second", base_tps},
          {"ratio", eval_tps / base_tps}};
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_eval: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads")
      opt.threads = std::atoi(next().c_str());
    else if (a == "--windows")
      opt.windows = std::atoll(next().c_str());
    else if (a == "--baseline-tokens")
      opt.baseline_tokens = std::atoll(next().c_str());
    else if (!a.empty() && a[0] == '-') {
      std::fprintf(
          stderr,
          "usage: bench_eval [MODEL_DIR...] [--threads N] [--windows N] [--baseline-tokens N]\n");
      return 2;
    } else {
      opt.models.push_back(a);
    }
  }
  if (opt.models.empty()) {
    const std::filesystem::path src(moeq::kSourceDir);
    opt.models.push_back((src / "models/tiny-qwen3moe").string());
    std::error_code ec;
    const auto shared = src / ".." / "shared" / "models";
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator(shared, ec)) {
      if (std::filesystem::exists(e.path() / "config.json")) found.push_back(e.path().string());
    }
    std::sort(found.begin(), found.end());
    opt.models.insert(opt.models.end(), found.begin(), found.end());
  }
  nlohmann::json results = nlohmann::json::array();
  for (const std::string& m : opt.models) results.push_back(BenchModel(m, opt));
  nlohmann::json out = {{"bench", "bench_eval"},
                        {"threads", moeq::ResolveThreads(opt.threads)},
                        {"results", results}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
