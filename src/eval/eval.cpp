// Perplexity and KL evaluation over windows of a token stream, and the CI gate.
#include "moeq/eval/eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "moeq/base/json_reader.h"
#include "moeq/base/parallel.h"
#include "moeq/base/progress.h"

namespace moeq {
namespace {

// Hidden states of one batch of windows held at once by Evaluate (model and reference together).
constexpr int64_t kEvalHiddenBudgetBytes = int64_t{1} << 30;

// Log-softmax of one logits row, in double.
void LogSoftmax(const float* logits, int64_t n, std::vector<double>* out) {
  out->resize(static_cast<size_t>(n));
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i)
    (*out)[static_cast<size_t>(i)] = static_cast<double>(logits[i]) - lse;
}

int64_t Argmax(const float* p, int64_t n) { return std::max_element(p, p + n) - p; }

// Per-window partial results, reduced in window order for determinism.
struct WindowStats {
  double nll_sum = 0, nll_sq_sum = 0, ref_nll_sum = 0;
  int64_t scored = 0, agree = 0;
  std::vector<float> kl;  // per scored token
  // Recorded distribution (--save-logits).
  std::vector<int32_t> ids, targets;
  std::vector<float> logprobs, rest, target_lp;
};

// KL(P_ref || Q) from a saved top-k reference row: the top-k bins plus one bin for the rest.
double SavedKl(const SavedLogits& s, int64_t n, const std::vector<double>& lq) {
  const int32_t* ids = s.ids.data() + n * s.top_k;
  const float* lp = s.logprobs.data() + n * s.top_k;
  double kl = 0, q_top = 0;
  for (int64_t i = 0; i < s.top_k; ++i) {
    const double a = lp[i];
    const double b = lq[static_cast<size_t>(ids[i])];
    kl += std::exp(a) * (a - b);
    q_top += std::exp(b);
  }
  const double lr = s.rest_logprob[static_cast<size_t>(n)];
  if (std::isfinite(lr)) {
    const double q_rest = std::max(1.0 - q_top, 1e-300);
    kl += std::exp(lr) * (lr - std::log(q_rest));
  }
  return kl;
}

// Uniform integer in [0, n) from a 64-bit generator, identical on every platform.
uint64_t Bounded(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

}  // namespace

Result<PerplexityProtocol> ProtocolPreset(std::string_view name, const ModelConfig& config,
                                          int32_t bos_id) {
  PerplexityProtocol p;
  p.name = std::string(name);
  if (name == "reference") return p;
  if (name == "mint") {
    p.context = config.max_position_embeddings > 0
                    ? std::min<int64_t>(2048, config.max_position_embeddings)
                    : 2048;
    p.samples = 256;
    p.seed = 42;
    return p;
  }
  if (name == "llama") {
    p.scored = ScoredTokens::kSecondHalf;
    p.bos_id = bos_id;
    return p;
  }
  return Status::InvalidArgument("unknown perplexity protocol '" + std::string(name) +
                                 "' (known: reference, mint, llama)");
}

std::vector<EvalWindow> PlanWindows(int64_t n_tokens, const PerplexityProtocol& p) {
  std::vector<EvalWindow> all;
  const int64_t stride = p.stride > 0 ? p.stride : p.context;
  if (p.context < 2) return all;
  for (int64_t s = 0; s + p.context <= n_tokens; s += stride) all.push_back({s});
  if (p.samples > 0 && p.samples < static_cast<int64_t>(all.size())) {
    // Partial Fisher-Yates: the first `samples` entries become a uniform sample.
    std::mt19937_64 rng(p.seed);
    for (int64_t i = 0; i < p.samples; ++i) {
      const uint64_t j =
          static_cast<uint64_t>(i) + Bounded(rng, all.size() - static_cast<uint64_t>(i));
      std::swap(all[static_cast<size_t>(i)], all[j]);
    }
    all.resize(static_cast<size_t>(p.samples));
    std::sort(all.begin(), all.end(),
              [](const EvalWindow& a, const EvalWindow& b) { return a.start < b.start; });
  }
  if (p.max_chunks > 0 && p.max_chunks < static_cast<int64_t>(all.size()))
    all.resize(static_cast<size_t>(p.max_chunks));
  return all;
}

Result<std::vector<std::vector<std::vector<float>>>> CacheLayerInputs(
    const Engine& model, std::span<const int32_t> tokens, const EvalOptions& options) {
  const PerplexityProtocol& p = options.protocol;
  const auto windows = PlanWindows(static_cast<int64_t>(tokens.size()), p);
  const int N = static_cast<int>(model.config().num_layers);
  std::vector<std::vector<std::vector<float>>> cache(static_cast<size_t>(N + 1));
  std::vector<std::vector<float>> hidden(windows.size());
  for (size_t w = 0; w < windows.size(); ++w) {
    std::vector<int32_t> ids(tokens.begin() + windows[w].start,
                             tokens.begin() + windows[w].start + p.context);
    if (p.bos_id >= 0) ids[0] = p.bos_id;
    MOEQ_RETURN_IF_ERROR(model.Embed(ids, &hidden[w]));
  }
  for (int l = 0; l < N; ++l) {
    cache[static_cast<size_t>(l)] = hidden;
    MOEQ_RETURN_IF_ERROR(model.ForwardLayers(l, l + 1, &hidden, {}, options.threads));
  }
  cache[static_cast<size_t>(N)] = std::move(hidden);
  return cache;
}

Result<EvalResult> Evaluate(const Engine& model, std::span<const int32_t> tokens,
                            const EvalOptions& options, const Engine* reference) {
  const PerplexityProtocol& p = options.protocol;
  const auto windows = PlanWindows(static_cast<int64_t>(tokens.size()), p);
  if (windows.empty()) {
    return Status::InvalidArgument("the text has " + std::to_string(tokens.size()) +
                                   " tokens, fewer than one window of " +
                                   std::to_string(p.context));
  }
  if (reference && reference->vocab_size() != model.vocab_size()) {
    return Status::InvalidArgument(
        "the reference model's vocabulary (" + std::to_string(reference->vocab_size()) +
        ") differs from the model's (" + std::to_string(model.vocab_size()) + ")");
  }
  const SavedLogits* saved = options.saved_reference;
  if (saved && reference)
    return Status::InvalidArgument("give a reference model or saved reference logits, not both");
  if (saved && saved->vocab != model.vocab_size()) {
    return Status::InvalidArgument("the saved reference logits have a vocabulary of " +
                                   std::to_string(saved->vocab) + ", the model " +
                                   std::to_string(model.vocab_size()));
  }
  if (options.layer_inputs && options.layer_inputs->size() != windows.size()) {
    return Status::InvalidArgument(
        "cached layer inputs for " + std::to_string(options.layer_inputs->size()) +
        " windows, the protocol plans " + std::to_string(windows.size()));
  }
  if (options.layer_inputs &&
      (options.start_layer < 0 || options.start_layer > model.config().num_layers)) {
    return Status::InvalidArgument("start_layer " + std::to_string(options.start_layer) +
                                   " outside the model");
  }
  const int64_t V = model.vocab_size();
  const int64_t first = p.scored == ScoredTokens::kSecondHalf ? p.context / 2 : 0;
  const int64_t per_window = p.context - 1 - first;  // scored tokens per window
  if (saved && saved->tokens != per_window * static_cast<int64_t>(windows.size())) {
    return Status::InvalidArgument(
        "the saved reference logits hold " + std::to_string(saved->tokens) +
        " scored tokens, this evaluation scores " +
        std::to_string(per_window * static_cast<int64_t>(windows.size())) +
        " (another text or protocol?)");
  }
  const int64_t record_k = options.record_top_k <= 0 ? V : std::min(options.record_top_k, V);
  std::vector<WindowStats> stats(windows.size());
  std::optional<Progress> progress;
  if (options.progress) progress.emplace("eval", static_cast<int64_t>(windows.size()), "windows");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Status> errors(windows.size());
  // Windows go through the model layer by layer in batches (Engine::ForwardHidden: each weight
  // is read once per batch, not once per window); the batch is bounded by the memory of its
  // hidden states. Then each window's logits and statistics, windows concurrently, each
  // single-threaded. The logits are bit-identical to Engine::Forward's on each window.
  const int64_t H = model.config().hidden_size;
  const int64_t per_window_bytes =
      p.context * H * static_cast<int64_t>(sizeof(float)) * (reference ? 2 : 1);
  const int64_t batch = std::max<int64_t>(
      ResolveThreads(options.threads),
      std::min<int64_t>(static_cast<int64_t>(windows.size()),
                        kEvalHiddenBudgetBytes / std::max<int64_t>(1, per_window_bytes)));
  for (int64_t b0 = 0; b0 < static_cast<int64_t>(windows.size()); b0 += batch) {
    const int64_t nb = std::min<int64_t>(batch, static_cast<int64_t>(windows.size()) - b0);
    std::vector<std::vector<int32_t>> batch_ids(static_cast<size_t>(nb));
    std::vector<std::span<const int32_t>> spans;
    for (int64_t i = 0; i < nb; ++i) {
      const EvalWindow& win = windows[static_cast<size_t>(b0 + i)];
      auto& ids = batch_ids[static_cast<size_t>(i)];
      ids.assign(tokens.begin() + win.start, tokens.begin() + win.start + p.context);
      if (p.bos_id >= 0) ids[0] = p.bos_id;
      spans.push_back(ids);
    }
    std::vector<std::vector<float>> hidden, ref_hidden;
    if (options.layer_inputs) {
      hidden.assign(options.layer_inputs->begin() + b0, options.layer_inputs->begin() + b0 + nb);
      MOEQ_RETURN_IF_ERROR(model.ForwardLayers(options.start_layer,
                                               static_cast<int>(model.config().num_layers), &hidden,
                                               {}, options.threads));
    } else {
      MOEQ_RETURN_IF_ERROR(model.ForwardHidden(spans, &hidden, {}, options.threads));
    }
    if (reference)
      MOEQ_RETURN_IF_ERROR(reference->ForwardHidden(spans, &ref_hidden, {}, options.threads));
    ParallelFor(
        nb,
        [&](int64_t bi) {
          const int64_t w = b0 + bi;
          const std::vector<int32_t>& ids = batch_ids[static_cast<size_t>(bi)];
          std::vector<float> logits, ref_logits;
          Status s = model.LogitsFromHidden(&hidden[static_cast<size_t>(bi)], &logits, 1);
          if (s.ok() && reference)
            s = reference->LogitsFromHidden(&ref_hidden[static_cast<size_t>(bi)], &ref_logits, 1);
          hidden[static_cast<size_t>(bi)] = {};
          if (reference) ref_hidden[static_cast<size_t>(bi)] = {};
          if (!s.ok()) {
            errors[static_cast<size_t>(w)] = s;
            return;
          }
          WindowStats& st = stats[static_cast<size_t>(w)];
          std::vector<double> lp, lq;
          std::vector<int32_t> order;
          for (int64_t i = first; i + 1 < p.context; ++i) {
            const int32_t target = ids[static_cast<size_t>(i + 1)];
            LogSoftmax(logits.data() + i * V, V, &lq);
            const double nll = -lq[static_cast<size_t>(target)];
            st.nll_sum += nll;
            st.nll_sq_sum += nll * nll;
            ++st.scored;
            if (options.record) {
              order.resize(static_cast<size_t>(V));
              for (int64_t v = 0; v < V; ++v)
                order[static_cast<size_t>(v)] = static_cast<int32_t>(v);
              auto by_prob = [&](int32_t a, int32_t b) {
                const double x = lq[static_cast<size_t>(a)], y = lq[static_cast<size_t>(b)];
                return x != y ? x > y : a < b;
              };
              std::partial_sort(order.begin(), order.begin() + record_k, order.end(), by_prob);
              double rest = 0;
              for (int64_t v = record_k; v < V; ++v)
                rest += std::exp(lq[static_cast<size_t>(order[static_cast<size_t>(v)])]);
              for (int64_t r = 0; r < record_k; ++r) {
                st.ids.push_back(order[static_cast<size_t>(r)]);
                st.logprobs.push_back(
                    static_cast<float>(lq[static_cast<size_t>(order[static_cast<size_t>(r)])]));
              }
              st.rest.push_back(record_k < V ? static_cast<float>(std::log(rest)) : -INFINITY);
              st.targets.push_back(target);
              st.target_lp.push_back(static_cast<float>(lq[static_cast<size_t>(target)]));
            }
            if (saved) {
              const int64_t n = w * per_window + (i - first);
              if (saved->targets[static_cast<size_t>(n)] != target) {
                errors[static_cast<size_t>(w)] = Status::InvalidArgument(
                    "the saved reference logits do not match this text: scored token " +
                    std::to_string(n) + " is " +
                    std::to_string(saved->targets[static_cast<size_t>(n)]) + " there and " +
                    std::to_string(target) + " here");
                return;
              }
              st.ref_nll_sum += -static_cast<double>(saved->target_logprob[static_cast<size_t>(n)]);
              st.kl.push_back(static_cast<float>(std::max(0.0, SavedKl(*saved, n, lq))));
              if (saved->ids[static_cast<size_t>(n * saved->top_k)] ==
                  Argmax(logits.data() + i * V, V))
                ++st.agree;
            }
            if (reference) {
              const float* rl = ref_logits.data() + i * V;
              LogSoftmax(rl, V, &lp);
              st.ref_nll_sum += -lp[static_cast<size_t>(target)];
              double kl = 0;
              for (int64_t v = 0; v < V; ++v) {
                const double a = lp[static_cast<size_t>(v)];
                kl += std::exp(a) * (a - lq[static_cast<size_t>(v)]);
              }
              st.kl.push_back(static_cast<float>(std::max(0.0, kl)));
              if (Argmax(rl, V) == Argmax(logits.data() + i * V, V)) ++st.agree;
            }
          }
          if (progress) progress->Advance(1);
        },
        options.threads);
  }
  for (const Status& s : errors) MOEQ_RETURN_IF_ERROR(s);
  if (progress) progress->Finish();

  EvalResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.windows = static_cast<int64_t>(windows.size());
  double nll = 0, nll_sq = 0, ref_nll = 0;
  int64_t agree = 0;
  std::vector<float> kl;
  for (const WindowStats& st : stats) {
    nll += st.nll_sum;
    nll_sq += st.nll_sq_sum;
    ref_nll += st.ref_nll_sum;
    r.tokens_scored += st.scored;
    agree += st.agree;
    kl.insert(kl.end(), st.kl.begin(), st.kl.end());
  }
  const double n = static_cast<double>(r.tokens_scored);
  r.nll_mean = nll / n;
  r.ppl = std::exp(r.nll_mean);
  if (r.tokens_scored > 1) {
    const double var = std::max(0.0, nll_sq / n - r.nll_mean * r.nll_mean);
    r.nll_stderr = std::sqrt(var / (n - 1));
  }
  r.ppl_stderr = r.ppl * r.nll_stderr;
  const double run_tokens = static_cast<double>(r.windows * p.context) * (reference ? 2.0 : 1.0);
  r.tokens_per_second = r.seconds > 0 ? run_tokens / r.seconds : 0;
  if (options.record) {
    SavedLogits& rec = *options.record;
    rec.vocab = V;
    rec.top_k = record_k;
    rec.tokens = r.tokens_scored;
    rec.ids.clear();
    rec.logprobs.clear();
    rec.rest_logprob.clear();
    rec.targets.clear();
    rec.target_logprob.clear();
    for (const WindowStats& st : stats) {
      rec.ids.insert(rec.ids.end(), st.ids.begin(), st.ids.end());
      rec.logprobs.insert(rec.logprobs.end(), st.logprobs.begin(), st.logprobs.end());
      rec.rest_logprob.insert(rec.rest_logprob.end(), st.rest.begin(), st.rest.end());
      rec.targets.insert(rec.targets.end(), st.targets.begin(), st.targets.end());
      rec.target_logprob.insert(rec.target_logprob.end(), st.target_lp.begin(), st.target_lp.end());
    }
  }
  if (reference || saved) {
    r.has_reference = true;
    r.reference_source = reference ? "model" : "saved_logits";
    r.reference_top_k = reference ? V : saved->top_k;
    r.reference_ppl = std::exp(ref_nll / n);
    double kl_sum = 0;
    for (float k : kl) kl_sum += k;
    r.kl_mean = kl_sum / n;
    std::vector<float> sorted = kl;
    std::sort(sorted.begin(), sorted.end());
    r.kl_max = sorted.back();
    r.kl_p99 = sorted[static_cast<size_t>(
        std::min<double>(sorted.size() - 1, std::ceil(0.99 * sorted.size()) - 1))];
    r.top1_agreement = static_cast<double>(agree) / n;
  }
  return r;
}

nlohmann::json ProtocolToJson(const PerplexityProtocol& p) {
  return {{"name", p.name},
          {"context", p.context},
          {"stride", p.stride > 0 ? p.stride : p.context},
          {"scored", p.scored == ScoredTokens::kAllButFirst ? "all_but_first" : "second_half"},
          {"max_chunks", p.max_chunks},
          {"samples", p.samples},
          {"seed", p.seed},
          {"bos_id", p.bos_id}};
}

void FillEvalArtifact(const EvalResult& r, artifacts::EvalArtifact* e) {
  e->ppl = r.ppl;
  e->nll_mean = r.nll_mean;
  e->nll_stderr = r.nll_stderr;
  e->ppl_stderr = r.ppl_stderr;
  e->tokens_scored = r.tokens_scored;
  e->windows = r.windows;
  e->seconds = r.seconds;
  e->tokens_per_second = r.tokens_per_second;
  e->reference.reset();
  if (r.has_reference) {
    artifacts::EvalReference ref;
    ref.source = r.reference_source;
    ref.top_k = r.reference_top_k;
    ref.ppl = r.reference_ppl;
    ref.ppl_delta = r.ppl - r.reference_ppl;
    ref.ppl_delta_pct = 100.0 * (r.ppl - r.reference_ppl) / r.reference_ppl;
    ref.kl_mean = r.kl_mean;
    ref.kl_p99 = r.kl_p99;
    ref.kl_max = r.kl_max;
    ref.top1_agreement = r.top1_agreement;
    e->reference = ref;
  }
}

Status CheckGate(const EvalResult& result, const artifacts::EvalArtifact& run,
                 const artifacts::EvalArtifact* baseline, const GateOptions& gate) {
  std::vector<std::string> failures;
  if (gate.max_ppl_delta_pct || gate.max_ppl_delta_abs) {
    if (!baseline) return Status::InvalidArgument("--max-ppl-delta needs --baseline eval.json");
    if (baseline->protocol != run.protocol) {
      return Status::InvalidArgument(
          "baseline: field 'protocol' differs from this run's (" + JsonExcerpt(baseline->protocol) +
          " vs " + JsonExcerpt(run.protocol) + "); perplexities are not comparable");
    }
    if (baseline->text_sha256 != run.text_sha256) {
      return Status::InvalidArgument("baseline: field 'text_sha256' differs from this run's (\"" +
                                     baseline->text_sha256 + "\" vs \"" + run.text_sha256 +
                                     "\"); perplexities are not comparable");
    }
    const double base = baseline->ppl;
    const double delta = result.ppl - base;
    const double pct = 100.0 * delta / base;
    char buf[256];
    if (gate.max_ppl_delta_pct && pct > *gate.max_ppl_delta_pct) {
      std::snprintf(buf, sizeof buf,
                    "perplexity %.4f is %+.3f%% from the baseline %.4f, over the limit of %+.3f%%",
                    result.ppl, pct, base, *gate.max_ppl_delta_pct);
      failures.push_back(buf);
    }
    if (gate.max_ppl_delta_abs && delta > *gate.max_ppl_delta_abs) {
      std::snprintf(buf, sizeof buf,
                    "perplexity %.4f is %+.4f from the baseline %.4f, over the limit of %+.4f",
                    result.ppl, delta, base, *gate.max_ppl_delta_abs);
      failures.push_back(buf);
    }
  }
  if (gate.max_kl) {
    if (!result.has_reference)
      return Status::InvalidArgument(
          "--max-kl needs --reference MODEL_DIR or --reference-logits FILE");
    if (result.kl_mean > *gate.max_kl) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "mean KL divergence %.6f exceeds the limit of %.6f",
                    result.kl_mean, *gate.max_kl);
      failures.push_back(buf);
    }
  }
  if (failures.empty()) return Status::Ok();
  std::string msg = "quality gate failed: ";
  for (size_t i = 0; i < failures.size(); ++i) msg += (i ? "; " : "") + failures[i];
  return Status::GateFailed(msg);
}

}  // namespace moeq
