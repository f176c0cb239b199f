// bench_speed: moeq's side of bench/speed/llamacpp_speed.sh (prefill and decode tokens/s of one
// model, to compare with llama.cpp on the same ids; bench/speed/README.md).
//
//   bench_speed MODEL_DIR (--text FILE | --ids FILE) [--tokens N] [--reps N] [--threads N]
//               [--decode-prompt N] [--decode N] [--dump-ids FILE] [--all-logits]
//               [--int8-activations]
//
// MODEL_DIR is a Hugging Face / MLX checkpoint; MLX-quantized tensors run from their packed codes
// (EngineOptions::packed_weights, as moeq-eval --packed), float ones from the mapped file.
// The first N tokens of the text (tokenized with the model's tokenizer.json) or of the ids file
// are the prompt.
//
// Prefill = what llama.cpp does for a prompt of N tokens in one batch: the embedding and every
// layer on the N tokens, then the final norm and lm_head for the LAST token only (llama.cpp
// computes logits for the last token of a prompt; --all-logits times Engine::Forward with the
// logits of every token, what moeq-eval computes). Load time is excluded: the engine is loaded and
// one untimed warm-up prefill run before the REPS timed ones.
// Decode = a prompt of --decode-prompt tokens (untimed), then --decode steps of one token each on
// the KV cache (Engine::ForwardIncremental), timed together; the time per token is reported.
//
// --dump-ids writes the ids used (a JSON array) for llamacpp_speed.mjs; with --reps 0 it only
// does that.
// Prints one JSON object on stdout: {"prefill_s": [per-rep wall seconds], "prefill_cpu_s":
// [per-rep CPU seconds of the process, all threads], "decode_s_per_token": [per-rep],
// "decode_cpu_s_per_token": [per-rep], ...}. bench/speed/llamacpp_speed.sh runs it alternately with
// llama.cpp and takes medians.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "moeq/base/parallel.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/tokenizer/text_input.h"
#include "moeq/tokenizer/tokenizer.h"

namespace {

struct Options {
  std::string model;
  std::string text;
  std::string ids;
  std::string dump_ids;
  int tokens = 512;
  int reps = 5;
  int threads = 2;
  int decode_prompt = 32;
  int decode = 0;
  bool all_logits = false;
  bool int8 = false;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the whole process (all threads), seconds.
double CpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

[[noreturn]] void Die(const moeq::Status& st) {
  std::fprintf(stderr, "bench_speed: %s\n", st.ToString().c_str());
  std::exit(1);
}

[[noreturn]] void Usage(const std::string& msg) {
  std::fprintf(stderr,
               "bench_speed: %s\nusage: bench_speed MODEL_DIR (--text FILE | --ids FILE) "
               "[--tokens N] [--reps N] [--threads N] [--decode-prompt N] [--decode N] "
               "[--dump-ids FILE] [--all-logits] [--int8-activations]\n",
               msg.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--text") {
      o.text = next();
    } else if (a == "--ids") {
      o.ids = next();
    } else if (a == "--dump-ids") {
      o.dump_ids = next();
    } else if (a == "--tokens") {
      o.tokens = std::atoi(next().c_str());
    } else if (a == "--reps") {
      o.reps = std::atoi(next().c_str());
    } else if (a == "--threads") {
      o.threads = std::atoi(next().c_str());
    } else if (a == "--decode-prompt") {
      o.decode_prompt = std::atoi(next().c_str());
    } else if (a == "--decode") {
      o.decode = std::atoi(next().c_str());
    } else if (a == "--all-logits") {
      o.all_logits = true;
    } else if (a == "--int8-activations") {
      o.int8 = true;
    } else if (!a.empty() && a[0] != '-' && o.model.empty()) {
      o.model = a;
    } else {
      Usage("unknown argument " + a);
    }
  }
  if (o.model.empty()) Usage("no MODEL_DIR");
  if (o.text.empty() == o.ids.empty()) Usage("give one of --text or --ids");
  if (o.tokens < 1 || o.reps < 0 || o.decode < 0 || o.decode_prompt < 1) Usage("bad counts");

  std::vector<int32_t> ids;
  if (!o.ids.empty()) {
    auto r = moeq::LoadTokenIds(o.ids);
    if (!r.ok()) Die(r.status());
    ids = std::move(*r);
  } else {
    moeq::TextInput in;
    in.text_file = o.text;
    auto r = moeq::LoadTokens(in, o.model);
    if (!r.ok()) Die(r.status());
    ids = std::move(r->ids);
  }
  const size_t need = static_cast<size_t>(std::max(o.tokens, o.decode_prompt + o.decode));
  if (ids.size() < need) {
    Usage("the input has " + std::to_string(ids.size()) + " tokens, " + std::to_string(need) +
          " are needed");
  }
  ids.resize(need);
  if (!o.dump_ids.empty()) {
    // A JSON array of ids (docs/tokens-format.md §1), which llamacpp_speed.mjs reads too.
    std::ofstream f(o.dump_ids);
    f << nlohmann::json(ids).dump() << "\n";
    if (!f.good()) {
      std::fprintf(stderr, "bench_speed: cannot write %s\n", o.dump_ids.c_str());
      return 1;
    }
    if (o.reps == 0) return 0;  // ids only
  }

  auto ckpt = moeq::Checkpoint::Open(o.model);
  if (!ckpt.ok()) Die(ckpt.status());
  moeq::EngineOptions eo;
  eo.threads = o.threads;
  eo.packed_weights = true;
  eo.int8_activations = o.int8;
  auto loaded = moeq::Engine::Load(**ckpt, eo);
  if (!loaded.ok()) Die(loaded.status());
  const moeq::Engine& e = **loaded;
  const int64_t H = e.config().hidden_size;

  const std::span<const int32_t> prompt(ids.data(), static_cast<size_t>(o.tokens));
  std::vector<std::vector<float>> hidden;
  std::vector<float> last, logits;
  auto prefill = [&] {
    if (o.all_logits) {
      if (auto st = e.Forward(prompt, &logits, nullptr, o.threads); !st.ok()) Die(st);
      return;
    }
    const std::span<const int32_t> windows[1] = {prompt};
    if (auto st = e.ForwardHidden(windows, &hidden, {}, o.threads); !st.ok()) Die(st);
    last.assign(hidden[0].end() - H, hidden[0].end());
    if (auto st = e.LogitsFromHidden(&last, &logits, o.threads); !st.ok()) Die(st);
  };
  prefill();  // warm-up: page in the weights, size the scratch buffers
  nlohmann::json prefill_s = nlohmann::json::array(), prefill_cpu_s = nlohmann::json::array();
  for (int r = 0; r < o.reps; ++r) {
    const double t0 = Now(), c0 = CpuNow();
    prefill();
    prefill_s.push_back(Now() - t0);
    prefill_cpu_s.push_back(CpuNow() - c0);
  }
  nlohmann::json decode_s = nlohmann::json::array(), decode_cpu_s = nlohmann::json::array();
  if (o.decode > 0) {
    for (int r = 0; r <= o.reps; ++r) {
      moeq::KvCache cache;
      const std::span<const int32_t> p(ids.data(), static_cast<size_t>(o.decode_prompt));
      if (auto st = e.ForwardIncremental(p, &cache, &logits, o.threads); !st.ok()) Die(st);
      const double t0 = Now(), c0 = CpuNow();
      for (int i = 0; i < o.decode; ++i) {
        const std::span<const int32_t> tok(ids.data() + o.decode_prompt + i, 1);
        if (auto st = e.ForwardIncremental(tok, &cache, &logits, o.threads); !st.ok()) Die(st);
      }
      if (r > 0) {  // rep 0 warms up
        decode_s.push_back((Now() - t0) / o.decode);
        decode_cpu_s.push_back((CpuNow() - c0) / o.decode);
      }
    }
  }
  nlohmann::json out = {{"bench", "bench_speed"},
                        {"model", o.model},
                        {"kernels", moeq::Engine::kernel_name()},
                        {"threads", moeq::ResolveThreads(o.threads)},
                        {"packed_tensors", e.packed_tensors()},
                        {"int8_activations", o.int8},
                        {"tokens", o.tokens},
                        {"all_logits", o.all_logits},
                        {"prefill_s", prefill_s},
                        {"prefill_cpu_s", prefill_cpu_s},
                        {"decode_prompt", o.decode_prompt},
                        {"decode_steps", o.decode},
                        {"decode_s_per_token", decode_s},
                        {"decode_cpu_s_per_token", decode_cpu_s}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
