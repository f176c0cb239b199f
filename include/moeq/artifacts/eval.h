// eval.json (schema moeq.eval, version 1): written by moeq-eval, read by moeq-eval (--baseline,
// the CI gate) and moeq-report. docs/artifacts.md describes the fields.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "moeq/base/status.h"

namespace moeq::artifacts {

inline constexpr std::string_view kEvalSchema = "moeq.eval";
inline constexpr int kEvalVersion = 1;

/// `reference`: the run against a reference model or saved logits.
struct EvalReference {
  std::string source;  ///< "model" or "saved_logits"
  int64_t top_k = 0;
  double ppl = 0;
  double ppl_delta = 0;
  double ppl_delta_pct = 0;
  double kl_mean = 0;
  double kl_p99 = 0;
  double kl_max = 0;
  double top1_agreement = 0;
};

/// `model_size`: what the evaluated checkpoint stores.
struct EvalModelSize {
  uint64_t bytes = 0;
  int64_t parameters = 0;
  double bpw = 0;
};

/// `gate`: the CI gate's decision (with a gate option).
struct EvalGate {
  bool passed = true;
  std::string message;
};

struct EvalArtifact {
  /// The envelope: schema, version, producer, inputs, options (MakeArtifactHeader).
  nlohmann::json header = nlohmann::json::object();
  double ppl = 0;
  double nll_mean = 0;
  double nll_stderr = 0;
  double ppl_stderr = 0;
  int64_t tokens_scored = 0;
  int64_t windows = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  /// The protocol object (name, context, stride, scored, max_chunks, samples, seed, bos_id);
  /// compared as a whole by the gate.
  nlohmann::json protocol = nlohmann::json::object();
  std::string text_sha256;
  std::optional<int64_t> tokens_in_text;
  std::optional<EvalReference> reference;
  std::optional<EvalModelSize> model_size;
  std::optional<EvalGate> gate;
};

/// Parses an eval.json object; errors name `path` and the field.
Result<EvalArtifact> ParseEval(const nlohmann::json& j, std::string_view path);
Result<EvalArtifact> ReadEval(const std::string& path);
/// The eval.json object (the header's fields plus the body).
nlohmann::json EvalToJson(const EvalArtifact& e);

}  // namespace moeq::artifacts
