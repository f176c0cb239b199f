#include "moeq/artifacts/eval.h"

#include "artifacts/fields.h"
#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"

namespace moeq::artifacts {

Result<EvalArtifact> ParseEval(const nlohmann::json& j, std::string_view path) try {
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, kEvalSchema, kEvalVersion, path));
  const FieldCtx c{std::string(path)};
  EvalArtifact e;
  for (const char* k : {"schema", "version", "producer", "inputs", "options"}) {
    if (auto it = j.find(k); it != j.end()) e.header[k] = *it;
  }
  MOEQ_ASSIGN_OR_RETURN(e.ppl, GetNumber(j, "ppl", c));
  MOEQ_ASSIGN_OR_RETURN(e.nll_mean, GetNumber(j, "nll_mean", c));
  MOEQ_ASSIGN_OR_RETURN(e.nll_stderr, GetNumber(j, "nll_stderr", c));
  MOEQ_ASSIGN_OR_RETURN(e.ppl_stderr, GetNumber(j, "ppl_stderr", c));
  MOEQ_ASSIGN_OR_RETURN(e.tokens_scored, GetInt(j, "tokens_scored", c));
  MOEQ_ASSIGN_OR_RETURN(e.windows, GetInt(j, "windows", c));
  MOEQ_ASSIGN_OR_RETURN(e.seconds, GetNumber(j, "seconds", c));
  MOEQ_ASSIGN_OR_RETURN(e.tokens_per_second, GetNumber(j, "tokens_per_second", c));
  const auto* protocol = FindField(j, "protocol");
  if (protocol == nullptr) return c.Error("protocol", "missing");
  if (!protocol->is_object()) return c.Error("protocol", "expected an object");
  e.protocol = *protocol;
  MOEQ_ASSIGN_OR_RETURN(e.text_sha256, GetString(j, "text_sha256", c));
  if (FindField(j, "tokens_in_text") != nullptr) {
    MOEQ_ASSIGN_OR_RETURN(e.tokens_in_text, GetInt(j, "tokens_in_text", c));
  }
  if (const auto* r = FindField(j, "reference"); r != nullptr) {
    if (!r->is_object()) return c.Error("reference", "expected an object");
    const FieldCtx rc{c.where + ": reference"};
    EvalReference ref;
    MOEQ_ASSIGN_OR_RETURN(ref.source, GetString(*r, "source", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.top_k, GetInt(*r, "top_k", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.ppl, GetNumber(*r, "ppl", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.ppl_delta, GetNumber(*r, "ppl_delta", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.ppl_delta_pct, GetNumber(*r, "ppl_delta_pct", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.kl_mean, GetNumber(*r, "kl_mean", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.kl_p99, GetNumber(*r, "kl_p99", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.kl_max, GetNumber(*r, "kl_max", rc));
    MOEQ_ASSIGN_OR_RETURN(ref.top1_agreement, GetNumber(*r, "top1_agreement", rc));
    e.reference = ref;
  }
  if (const auto* s = FindField(j, "model_size"); s != nullptr) {
    if (!s->is_object()) return c.Error("model_size", "expected an object");
    const FieldCtx sc{c.where + ": model_size"};
    EvalModelSize ms;
    MOEQ_ASSIGN_OR_RETURN(int64_t bytes, GetInt(*s, "bytes", sc));
    if (bytes < 0) return sc.Error("bytes", "negative");
    ms.bytes = static_cast<uint64_t>(bytes);
    MOEQ_ASSIGN_OR_RETURN(ms.parameters, GetInt(*s, "parameters", sc));
    MOEQ_ASSIGN_OR_RETURN(ms.bpw, GetNumber(*s, "bpw", sc));
    e.model_size = ms;
  }
  if (const auto* g = FindField(j, "gate"); g != nullptr) {
    if (!g->is_object()) return c.Error("gate", "expected an object");
    const FieldCtx gc{c.where + ": gate"};
    EvalGate gate;
    MOEQ_ASSIGN_OR_RETURN(gate.passed, GetBool(*g, "passed", gc));
    MOEQ_ASSIGN_OR_RETURN(gate.message, GetString(*g, "message", gc));
    e.gate = gate;
  }
  return e;
} catch (const nlohmann::json::exception& ex) {
  return Status::Corruption(std::string(path) + ": " + JsonExceptionText(ex));
}

Result<EvalArtifact> ReadEval(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(path));
  return ParseEval(j, path);
}

nlohmann::json EvalToJson(const EvalArtifact& e) {
  nlohmann::json j = e.header;
  j["ppl"] = e.ppl;
  j["nll_mean"] = e.nll_mean;
  j["nll_stderr"] = e.nll_stderr;
  j["ppl_stderr"] = e.ppl_stderr;
  j["tokens_scored"] = e.tokens_scored;
  j["windows"] = e.windows;
  j["seconds"] = e.seconds;
  j["tokens_per_second"] = e.tokens_per_second;
  if (e.reference) {
    const EvalReference& r = *e.reference;
    j["reference"] = {{"source", r.source},
                      {"top_k", r.top_k},
                      {"ppl", r.ppl},
                      {"ppl_delta", r.ppl_delta},
                      {"ppl_delta_pct", r.ppl_delta_pct},
                      {"kl_mean", r.kl_mean},
                      {"kl_p99", r.kl_p99},
                      {"kl_max", r.kl_max},
                      {"top1_agreement", r.top1_agreement}};
  }
  j["protocol"] = e.protocol;
  j["text_sha256"] = e.text_sha256;
  if (e.tokens_in_text) j["tokens_in_text"] = *e.tokens_in_text;
  if (e.model_size) {
    j["model_size"] = {{"bytes", e.model_size->bytes},
                       {"parameters", e.model_size->parameters},
                       {"bpw", e.model_size->bpw}};
  }
  if (e.gate) j["gate"] = {{"passed", e.gate->passed}, {"message", e.gate->message}};
  return j;
}

}  // namespace moeq::artifacts
