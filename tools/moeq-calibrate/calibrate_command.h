// moeq-calibrate: measured priors for moeq-allocate.
//
// MINT's priors (embeddings 10, lm_head 10, router 8, ...) are fixed guesses of how much a unit
// of quantization error of each kind of tensor costs. moeq-calibrate measures it per model: for
// every quantizable role (embedding, lm_head, router, attn_q, ..., expert_down) it quantizes ONLY
// the tensors of that role (by default: of that role in one layer) with a probe format (q4g64),
// runs the model on calibration text and measures the mean KL divergence of the token distributions
// from the unquantized model's. The role's sensitivity is that KL over the noise the allocator
// predicts for it, Σ exposure·NRMSE² of its tensors at the probe format (the `mse` objective's cost
// with prior 1), and its prior is sqrt(sensitivity / median sensitivity over the roles), so that
// the `mse` objective Σ π²·α·x·NRMSE² becomes, to first order, the predicted KL. The output is a
// moeq.allocate_rules file (one prior rule per role) for `moeq-allocate --rules`.
#pragma once

#include <cstdint>
#include <string>

#include "moeq/base/artifact.h"
#include "moeq/base/status.h"
#include "moeq/tokenizer/text_input.h"

namespace moeq {

struct CalibrateCommandOptions {
  std::string model_dir;
  /// sensitivity.jsonl of the same model (moeq-analyze): the predicted noise per role.
  std::string sensitivity;
  /// Calibration text (or token ids): never the text the plan is evaluated on.
  TextInput input;
  /// Windows of `context` tokens run per probe.
  int64_t windows = 16;
  int64_t context = 512;
  /// The format each role is probed with (a grid config of the sensitivity file).
  std::string probe_format = "q4g64";
  /// Reference distribution entries kept per token (KL over these + one bin for the rest).
  int64_t top_k = 256;
  /// Probe every (role, layer) on its own (model-level tensors such as the embeddings are one
  /// group each); false: every role over all layers at once (fewer, coarser probes).
  bool per_layer = true;
  /// Calibrate with a sensitivity file of another model (fingerprints differ): warn only.
  bool allow_model_mismatch = false;
  /// How a probe's KL is obtained (docs/scale.md):
  ///  "kl": measured — the model runs from the first layer the probe touches (from the cached
  ///        reference stream) to the logits: Σ over probes of the remaining depth, quadratic in
  ///        the number of layers with per-layer probes;
  ///  "local": estimated — only the probed layer runs (from the cached stream); the change of
  ///        its output, relative to the final residual stream, is converted to KL by a factor
  ///        measured on the last layer's probes (whose KL is measured): about one forward pass
  ///        for all probes, whatever the depth;
  ///  "auto": "kl" when its probes cost at most 10 forward passes, else "local".
  /// Default "kl": on the bundled model the local estimate ranks the probes only roughly
  /// (Spearman 0.79 against measured KL) and its plan had 5x the KL (docs/scale.md).
  std::string method = "kl";
  /// moeq.allocate_rules JSON to write.
  std::string output = "calibrated_priors.json";
};

Status RunCalibrate(const CalibrateCommandOptions& options, const ArtifactContext& ctx);

}  // namespace moeq
