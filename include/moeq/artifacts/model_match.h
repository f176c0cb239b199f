// Where two artefacts (or an artefact and a checkpoint) meet, they must describe the same model.
//
// The model fingerprint is the envelope's `inputs.model_fingerprint` (include/moeq/base/
// artifact.h): SHA-256 of config.json plus the tensor table (Checkpoint::fingerprint()).
// RequireSameModel refuses a mismatch with a usage error (exit status 2, like moeq-eval's
// incomparable baseline) naming both files and both fingerprints; every tool that checks offers
// `--allow-model-mismatch`, which turns the error into a warning. An artefact that records no
// fingerprint (e.g. a routing profile made from traces, which records config_sha256) is not
// checked.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "moeq/base/status.h"

namespace moeq::artifacts {

/// One side of a comparison: what it is (a file path, or "checkpoint DIR") and its fingerprint
/// ("" = unknown, not checked).
struct ModelIdentity {
  std::string what;
  std::string fingerprint;
};

/// `inputs.model_fingerprint` of an artefact header, or "" when it records none.
std::string ModelFingerprintOf(const nlohmann::json& header);

/// Ok when both fingerprints are known and equal, or either is unknown. Otherwise an
/// InvalidArgument error naming both sides, or (allow_mismatch) a warning on stderr and Ok.
Status RequireSameModel(const ModelIdentity& a, const ModelIdentity& b, bool allow_mismatch);

}  // namespace moeq::artifacts
