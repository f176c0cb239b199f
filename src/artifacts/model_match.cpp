#include "moeq/artifacts/model_match.h"

#include <spdlog/spdlog.h>

namespace moeq::artifacts {

std::string ModelFingerprintOf(const nlohmann::json& header) {
  if (!header.is_object()) return "";
  auto in = header.find("inputs");
  if (in == header.end() || !in->is_object()) return "";
  auto fp = in->find("model_fingerprint");
  if (fp == in->end() || !fp->is_string()) return "";
  return fp->get<std::string>();
}

Status RequireSameModel(const ModelIdentity& a, const ModelIdentity& b, bool allow_mismatch) {
  if (a.fingerprint.empty() || b.fingerprint.empty() || a.fingerprint == b.fingerprint)
    return Status::Ok();
  const std::string msg = "model mismatch: " + a.what + " has model_fingerprint " + a.fingerprint +
                          " but " + b.what + " has model_fingerprint " + b.fingerprint +
                          ": they describe different models";
  if (allow_mismatch) {
    spdlog::warn("{} (continuing: --allow-model-mismatch)", msg);
    return Status::Ok();
  }
  return Status::InvalidArgument(msg + " (pass --allow-model-mismatch to use them together)");
}

}  // namespace moeq::artifacts
