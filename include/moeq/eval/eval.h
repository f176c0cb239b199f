// Perplexity, KL divergence from a reference model, and the CI quality gate.
//
// Protocol: the whole text is tokenized once; windows of `context` tokens are cut from it
// (non-overlapping unless `stride` is set; a trailing partial window is dropped); each window
// runs as an independent sequence from position 0; within a window the predictions of the
// scored positions count (every position but the first, or only the second half as
// llama-perplexity does). Perplexity = exp(mean NLL over scored tokens), natural log.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/artifacts/eval.h"
#include "moeq/base/atomic_file.h"
#include "moeq/base/status.h"
#include "moeq/engine/engine.h"

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

/// A saved reference distribution (moeq-eval --save-logits; docs/artifacts.md): for every
/// scored token of the evaluated windows, in evaluation order, the `top_k` largest
/// log-probabilities of the model (descending, ties by lower id), the log of the probability
/// mass of all other tokens, the actual next token and its log-probability.
struct SavedLogits {
  /// The artefact header (schema moeq.reference_logits, inputs with model_fingerprint and
  /// text_sha256, "protocol"), stored in the file's metadata.
  nlohmann::json header;
  int64_t vocab = 0;
  int64_t top_k = 0;
  int64_t tokens = 0;                 ///< scored tokens
  std::vector<int32_t> ids;           ///< [tokens, top_k]
  std::vector<float> logprobs;        ///< [tokens, top_k], natural log
  std::vector<float> rest_logprob;    ///< [tokens] log(1 − Σ top_k p); −inf when top_k = vocab
  std::vector<int32_t> targets;       ///< [tokens] the token that followed
  std::vector<float> target_logprob;  ///< [tokens]
};

/// Writes `s` as safetensors (tensors ids, logprobs, rest_logprob, targets, target_logprob;
/// metadata moeq_schema = moeq.reference_logits, moeq_header = the header JSON). Atomic.
Status WriteSavedLogits(const std::string& path, const SavedLogits& s,
                        AtomicWriteOptions options = {.overwrite = true});
/// Reads and validates a saved-logits file (shapes, schema, header); errors name the file and
/// field.
Result<SavedLogits> ReadSavedLogits(const std::string& path);

struct EvalOptions {
  PerplexityProtocol protocol;
  int threads = 0;
  /// Show a progress bar / periodic progress lines on stderr.
  bool progress = true;
  /// Compare with this saved reference distribution instead of a reference model. It must come
  /// from the same windows: the scored tokens' count and ids are checked.
  const SavedLogits* saved_reference = nullptr;
  /// When set, record the evaluated model's distribution here, keeping `record_top_k` entries
  /// per scored token (0 or >= vocab: the whole vocabulary). The header is left to the caller.
  SavedLogits* record = nullptr;
  int64_t record_top_k = 64;
  /// Start from cached residual streams instead of the tokens (moeq-calibrate's probes reuse
  /// the reference pass): `layer_inputs` holds, for every window the protocol plans, the
  /// stream entering layer `start_layer` (start_layer = num_layers: the stream after the last
  /// layer, so only the head runs), as CacheLayerInputs returns them. Only layers from
  /// start_layer on run; with unchanged weights the logits are the same bits as from the tokens.
  int start_layer = 0;
  const std::vector<std::vector<float>>* layer_inputs = nullptr;
};

/// The residual stream entering each layer (index num_layers: after the last layer) for every
/// window Evaluate plans for `tokens` under options.protocol: [layer][window] -> [tokens,
/// hidden_size]. One layer-by-layer pass.
Result<std::vector<std::vector<std::vector<float>>>> CacheLayerInputs(
    const Engine& model, std::span<const int32_t> tokens, const EvalOptions& options);

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
  // With a reference model or saved reference logits:
  bool has_reference = false;
  /// "model" or "saved_logits"; with saved logits of top_k < vocab, KL is that of the
  /// distributions coarsened to the reference's top_k tokens plus one bin for the rest (a lower
  /// bound of the full KL).
  std::string reference_source;
  int64_t reference_top_k = 0;
  double reference_ppl = 0;
  double kl_mean = 0;  ///< mean over scored tokens of KL(P_ref || P_model), nats
  double kl_p99 = 0;
  double kl_max = 0;
  double top1_agreement = 0;  ///< fraction of scored tokens whose argmax agrees
};

/// Runs the protocol over `tokens`. When `reference` (or options.saved_reference) is given the
/// result carries KL divergence, top-1 agreement and the reference's perplexity on the same
/// windows. Giving both is an error.
Result<EvalResult> Evaluate(const Engine& model, std::span<const int32_t> tokens,
                            const EvalOptions& options, const Engine* reference = nullptr);

nlohmann::json ProtocolToJson(const PerplexityProtocol& p);
/// Sets the measured fields of eval.json (ppl ... reference) from `r`.
void FillEvalArtifact(const EvalResult& r, artifacts::EvalArtifact* e);

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
Status CheckGate(const EvalResult& result, const artifacts::EvalArtifact& run,
                 const artifacts::EvalArtifact* baseline, const GateOptions& gate);

}  // namespace moeq
