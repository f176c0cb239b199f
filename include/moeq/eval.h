// Perplexity, KL divergence from a reference model, and the CI quality gate.
//
// Protocol: the whole text is tokenized once; windows of `context` tokens are cut from it
// (non-overlapping unless `stride` is set; a trailing partial window is dropped); each window
// runs as an independent sequence from position 0; within a window the predictions of the
// scored positions count (every position but the first, or only the second half as
// llama-perplexity does). Perplexity = exp(mean NLL over scored tokens), natural log.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "moeq/engine.h"
#include "moeq/status.h"

namespace moeq {

/// Which predictions of a window are scored.
enum class ScoredTokens {
  kAllButFirst,  ///< positions 1..n-1 predict tokens 1..n-1 from their prefix
  kSecondHalf,   ///< only tokens at positions >= n/2 + 1 (llama-perplexity)
};

struct PerplexityProtocol {
  /// Preset this came from: "reference", "mint", "llama" or "custom".
  std::string name = "reference";
  /// Tokens per window.
  int64_t context = 512;
  /// Distance between window starts; 0 = context (non-overlapping).
  int64_t stride = 0;
  ScoredTokens scored = ScoredTokens::kAllButFirst;
  /// Evaluate at most this many windows (0 = all), taken in order.
  int64_t max_chunks = 0;
  /// When > 0, draw this many windows at random (seeded, without replacement) among all
  /// windows instead of taking them in order (MINT: 256 windows of 2048, seed 42).
  int64_t samples = 0;
  uint64_t seed = 42;
  /// Replace each window's first token with this BOS id (llama-perplexity); -1 = off.
  int32_t bos_id = -1;
};

/// A named protocol for `config`'s model:
///  - "reference": context 512, non-overlapping, all but the first token scored, no BOS (the
///    protocol of the bundled models' reference perplexities);
///  - "mint": context min(2048, max_position_embeddings), 256 windows drawn with seed 42, all but
///    the first scored (MINT's WikiText-2 protocol);
///  - "llama": context 512, second half scored, BOS first when the model has one
///    (llama-perplexity's defaults).
Result<PerplexityProtocol> ProtocolPreset(std::string_view name, const ModelConfig& config,
                                          int32_t bos_id);

/// A window [start, start + context) of the token stream.
struct EvalWindow {
  int64_t start = 0;
};

/// The windows a protocol evaluates on `n_tokens` tokens, in evaluation order.
std::vector<EvalWindow> PlanWindows(int64_t n_tokens, const PerplexityProtocol& protocol);

struct EvalOptions {
  PerplexityProtocol protocol;
  int threads = 0;
  /// Show a progress bar / periodic progress lines on stderr.
  bool progress = true;
};

/// Results of one evaluation (and the comparison with a reference model when one was given).
struct EvalResult {
  double ppl = 0;
  double nll_mean = 0;
  double nll_stderr = 0;  ///< standard error of the mean NLL
  double ppl_stderr = 0;  ///< ppl * nll_stderr (first-order)
  int64_t tokens_scored = 0;
  int64_t windows = 0;
  double seconds = 0;
  double tokens_per_second = 0;  ///< tokens run through the model per second (not only scored)
  // With a reference model:
  bool has_reference = false;
  double reference_ppl = 0;
  double kl_mean = 0;   ///< mean over scored tokens of KL(P_ref || P_model), nats
  double kl_p99 = 0;
  double kl_max = 0;
  double top1_agreement = 0;  ///< fraction of scored tokens whose argmax agrees
};

/// Runs the protocol over `tokens`. When `reference` is given it runs on the same windows and
/// the result carries KL divergence, top-1 agreement and the reference's perplexity.
Result<EvalResult> Evaluate(const Engine& model, std::span<const int32_t> tokens,
                            const EvalOptions& options, const Engine* reference = nullptr);

nlohmann::json ProtocolToJson(const PerplexityProtocol& p);
nlohmann::json EvalResultToJson(const EvalResult& r);

/// Thresholds of the CI gate. Unset ones are not checked.
struct GateOptions {
  /// Maximum relative perplexity increase over the baseline, in percent (2 = +2%).
  std::optional<double> max_ppl_delta_pct;
  /// Maximum absolute perplexity increase over the baseline.
  std::optional<double> max_ppl_delta_abs;
  /// Maximum mean KL divergence from the reference (needs a reference run).
  std::optional<double> max_kl;
};

/// Compares `result` with a baseline eval.json. Returns GateFailed naming each exceeded
/// threshold with both numbers, InvalidArgument when the baseline was measured under another
/// protocol or on another text, OK otherwise. `text_sha256` is this run's input hash.
Status CheckGate(const EvalResult& result, const nlohmann::json& eval_json,
                 const nlohmann::json* baseline, const GateOptions& gate);

}  // namespace moeq
