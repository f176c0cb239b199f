// moeq-eval: perplexity, KL against a reference model, and the CI gate.
#include "moeq-eval/eval_command.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <optional>

#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/eval/eval.h"
#include "moeq/tokenizer/text_input.h"

namespace moeq {
namespace {

Status ParsePplDelta(const std::string& text, GateOptions* gate) {
  if (text.empty()) return Status::Ok();
  std::string t = text;
  const bool pct = !t.empty() && t.back() == '%';
  if (pct) t.pop_back();
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || *end != '\0' || v < 0) {
    return Status::InvalidArgument("--max-ppl-delta '" + text +
                                   "': expected a non-negative number, optionally with %");
  }
  if (pct)
    gate->max_ppl_delta_pct = v;
  else
    gate->max_ppl_delta_abs = v;
  return Status::Ok();
}

Result<std::unique_ptr<Engine>> LoadEngine(const std::string& dir, int threads, bool packed,
                                           bool int8, std::unique_ptr<Checkpoint>* keep) {
  MOEQ_ASSIGN_OR_RETURN(*keep, Checkpoint::Open(dir));
  EngineOptions eo;
  eo.threads = threads;
  eo.packed_weights = packed;
  eo.int8_activations = packed && int8;
  return Engine::Load(**keep, eo);
}

}  // namespace

Status RunEval(const EvalCommandOptions& o, const ArtifactContext& ctx) {
  GateOptions gate;
  MOEQ_RETURN_IF_ERROR(ParsePplDelta(o.max_ppl_delta, &gate));
  if (o.max_kl >= 0) gate.max_kl = o.max_kl;
  if ((gate.max_ppl_delta_pct || gate.max_ppl_delta_abs) && o.baseline.empty()) {
    return Status::InvalidArgument("--max-ppl-delta needs --baseline eval.json");
  }
  if (gate.max_kl && o.reference_dir.empty() && o.reference_logits.empty()) {
    return Status::InvalidArgument(
        "--max-kl needs --reference MODEL_DIR or --reference-logits FILE");
  }
  if (!o.reference_dir.empty() && !o.reference_logits.empty()) {
    return Status::InvalidArgument(
        "give --reference MODEL_DIR or --reference-logits FILE, not both");
  }
  if (o.save_logits_top_k < 0)
    return Status::InvalidArgument("--save-logits-top-k must be >= 0 (0 = whole vocabulary)");
  const std::vector<std::string> all_inputs = {o.model_dir,         o.reference_dir,
                                               o.reference_logits,  o.input.text_file,
                                               o.input.tokens_file, o.baseline};
  if (!o.output.empty()) MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, all_inputs, ctx.force));
  if (!o.save_logits.empty()) {
    MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.save_logits, all_inputs, ctx.force));
    if (o.save_logits == o.output)
      return Status::InvalidArgument("--save-logits and --output name the same file");
  }
  std::optional<SavedLogits> saved;
  if (!o.reference_logits.empty()) {
    MOEQ_ASSIGN_OR_RETURN(saved, ReadSavedLogits(o.reference_logits));
  }
  std::optional<artifacts::EvalArtifact> baseline;
  if (!o.baseline.empty()) {
    MOEQ_ASSIGN_OR_RETURN(baseline, artifacts::ReadEval(o.baseline));
  }

  std::unique_ptr<Checkpoint> ckpt, ref_ckpt;
  MOEQ_ASSIGN_OR_RETURN(auto engine,
                        LoadEngine(o.model_dir, ctx.threads, o.packed, o.int8_activations, &ckpt));
  std::unique_ptr<Engine> reference;
  if (!o.reference_dir.empty()) {
    MOEQ_ASSIGN_OR_RETURN(reference, LoadEngine(o.reference_dir, ctx.threads, o.packed,
                                                o.int8_activations, &ref_ckpt));
  }
  MOEQ_ASSIGN_OR_RETURN(LoadedTokens tokens, LoadTokens(o.input, o.model_dir));

  MOEQ_ASSIGN_OR_RETURN(PerplexityProtocol protocol,
                        ProtocolPreset(o.protocol, ckpt->config(), tokens.bos_id.value_or(-1)));
  if (o.context > 0) protocol.context = o.context;
  if (o.stride > 0) protocol.stride = o.stride;
  if (o.scored == "all-but-first")
    protocol.scored = ScoredTokens::kAllButFirst;
  else if (o.scored == "second-half")
    protocol.scored = ScoredTokens::kSecondHalf;
  else if (!o.scored.empty())
    return Status::InvalidArgument("--scored '" + o.scored +
                                   "': expected all-but-first or second-half");
  if (o.chunks > 0) protocol.max_chunks = o.chunks;
  if (o.samples >= 0) protocol.samples = o.samples;
  protocol.seed = static_cast<uint64_t>(o.seed);
  if (o.context > 0 || o.stride > 0 || !o.scored.empty() || o.chunks > 0 || o.samples >= 0)
    protocol.name += "+custom";
  if (ckpt->config().max_position_embeddings > 0 &&
      protocol.context > ckpt->config().max_position_embeddings) {
    spdlog::warn("context {} exceeds the model's max_position_embeddings {}", protocol.context,
                 ckpt->config().max_position_embeddings);
  }

  const nlohmann::json protocol_json = ProtocolToJson(protocol);
  if (saved) {
    // Refuse a reference from another text or protocol before spending time on the model.
    const auto& h = saved->header;
    const std::string theirs = h.contains("text_sha256") ? JsonExcerpt(h["text_sha256"]) : "none";
    if (!h.contains("text_sha256") || h["text_sha256"] != tokens.sha256) {
      return Status::InvalidArgument(o.reference_logits + ": saved for another text (text_sha256 " +
                                     theirs + ", this run's \"" + tokens.sha256 + "\")");
    }
    if (!h.contains("protocol") || h["protocol"] != protocol_json) {
      return Status::InvalidArgument(
          o.reference_logits + ": saved under another protocol (" +
          (h.contains("protocol") ? JsonExcerpt(h["protocol"]) : std::string("none")) +
          ", this run's " + JsonExcerpt(protocol_json) + ")");
    }
  }

  EvalOptions eo;
  eo.protocol = protocol;
  eo.threads = ctx.threads;
  eo.progress = ctx.progress;
  if (saved) eo.saved_reference = &*saved;
  SavedLogits record;
  if (!o.save_logits.empty()) {
    eo.record = &record;
    eo.record_top_k = o.save_logits_top_k;
  }
  MOEQ_ASSIGN_OR_RETURN(EvalResult r, Evaluate(*engine, tokens.ids, eo, reference.get()));

  nlohmann::json inputs = {{"model", o.model_dir},
                           {"model_fingerprint", ckpt->fingerprint()},
                           {"text", tokens.source},
                           {"text_sha256", tokens.sha256}};
  if (reference) {
    inputs["reference"] = o.reference_dir;
    inputs["reference_fingerprint"] = ref_ckpt->fingerprint();
  }
  if (saved) {
    inputs["reference_logits"] = o.reference_logits;
    if (saved->header.contains("inputs") && saved->header["inputs"].contains("model_fingerprint")) {
      inputs["reference_fingerprint"] = saved->header["inputs"]["model_fingerprint"];
    }
  }
  if (!o.save_logits.empty()) {
    record.header = MakeArtifactHeader("moeq.reference_logits", 1, ctx,
                                       {{"model", o.model_dir},
                                        {"model_fingerprint", ckpt->fingerprint()},
                                        {"text", tokens.source},
                                        {"text_sha256", tokens.sha256}});
    record.header["protocol"] = protocol_json;
    record.header["text_sha256"] = tokens.sha256;
    MOEQ_RETURN_IF_ERROR(WriteSavedLogits(o.save_logits, record, {.overwrite = ctx.force}));
    spdlog::info("saved the distribution of {} scored tokens (top {} of {} per token) to {}",
                 record.tokens, record.top_k, record.vocab, o.save_logits);
  }
  artifacts::EvalArtifact e;
  e.header = MakeArtifactHeader(artifacts::kEvalSchema, artifacts::kEvalVersion, ctx, inputs);
  FillEvalArtifact(r, &e);
  e.protocol = protocol_json;
  e.text_sha256 = tokens.sha256;
  e.tokens_in_text = static_cast<int64_t>(tokens.ids.size());
  {
    // What the evaluated checkpoint stores: every tensor's bytes (a quantized one's packed
    // weight, scales and biases) over its logical parameters.
    uint64_t bytes = 0;
    int64_t params = 0;
    for (const CheckpointTensor& t : ckpt->tensors()) {
      bytes += t.quant.quantized() ? t.quant.stored_bytes : t.info.nbytes();
      params += t.info.numel();
    }
    e.model_size = artifacts::EvalModelSize{
        bytes, params,
        params > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0};
  }
  Status gate_status = CheckGate(r, e, baseline ? &*baseline : nullptr, gate);
  if (gate.max_kl || gate.max_ppl_delta_pct || gate.max_ppl_delta_abs) {
    e.gate = artifacts::EvalGate{gate_status.ok(), gate_status.ok() ? "" : gate_status.message()};
  }
  if (!gate_status.ok() && gate_status.code() != StatusCode::kGateFailed) return gate_status;
  const nlohmann::json j = artifacts::EvalToJson(e);
  if (o.output.empty()) {
    std::fputs(DumpJson(j).c_str(), stdout);
  } else {
    MOEQ_RETURN_IF_ERROR(WriteFileAtomic(o.output, DumpJson(j), {.overwrite = ctx.force}));
  }
  if (r.has_reference) {
    spdlog::info(
        "ppl {:.4f} ± {:.4f} over {} tokens ({} windows of {}), reference ppl {:.4f} ({:+.3f}%), "
        "KL mean {:.5f} p99 {:.5f}, top-1 agreement {:.2f}%, {:.1f} s, {:.0f} tok/s",
        r.ppl, r.ppl_stderr, r.tokens_scored, r.windows, protocol.context, r.reference_ppl,
        100.0 * (r.ppl - r.reference_ppl) / r.reference_ppl, r.kl_mean, r.kl_p99,
        100.0 * r.top1_agreement, r.seconds, r.tokens_per_second);
  } else {
    spdlog::info(
        "ppl {:.4f} ± {:.4f} (mean NLL {:.5f}) over {} tokens ({} windows of {}), {:.1f} s, {:.0f} "
        "tok/s",
        r.ppl, r.ppl_stderr, r.nll_mean, r.tokens_scored, r.windows, protocol.context, r.seconds,
        r.tokens_per_second);
  }
  return gate_status;
}

}  // namespace moeq
