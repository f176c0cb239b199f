// moeq-calibrate: per-role KL probes and the measured priors (calibrate_command.h).
#include "moeq-calibrate/calibrate_command.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>

#include <spdlog/spdlog.h>

#include "moeq/allocate/allocation.h"
#include "moeq/tokenizer/text_input.h"
#include "moeq/model/arch.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/eval/eval.h"
#include "moeq/base/file_util.h"
#include "moeq/quant/quant_format.h"
#include "moeq/export/quant_plan.h"
#include "moeq/export/mlx_writer.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

/// Removes a directory tree when it goes out of scope.
struct ScopedDir {
  std::string path;
  ~ScopedDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

/// A probed group: a role, or with --per-layer a role in one layer (-1: the whole role, or a
/// model-level tensor such as the embeddings).
using ProbeKey = std::pair<TensorRole, int>;

/// What the allocator predicts for one group at the probe format, and what was measured.
struct RoleProbe {
  TensorRole role = TensorRole::kUnknown;
  int layer = -1;
  int64_t tensors = 0;
  double predicted_noise = 0;  ///< Σ exposure·NRMSE² at the probe format
  double kl_mean = 0;
  double sensitivity = 0;      ///< kl_mean / predicted_noise
  double prior = 1;
};

}  // namespace

Status RunCalibrate(const CalibrateCommandOptions& o, const ArtifactContext& ctx) {
  if (o.model_dir.empty()) return Status::InvalidArgument("missing MODEL directory (moeq-calibrate MODEL --sensitivity S --text T)");
  if (o.sensitivity.empty()) return Status::InvalidArgument("--sensitivity: the model's sensitivity.jsonl is required");
  if (o.input.text_file.empty() == o.input.tokens_file.empty()) {
    return Status::InvalidArgument("give exactly one of --text FILE or --tokens FILE (calibration input)");
  }
  if (o.windows < 1 || o.windows > 100000) return Status::InvalidArgument("--windows " + std::to_string(o.windows) + ": expected 1..100000");
  if (o.context < 2) return Status::InvalidArgument("--context " + std::to_string(o.context) + ": expected at least 2");
  if (o.top_k < 0) return Status::InvalidArgument("--top-k: expected >= 0");
  if (o.output.empty()) return Status::InvalidArgument("--output: empty path");
  const std::string text_path = o.input.text_file.empty() ? o.input.tokens_file : o.input.text_file;
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, {o.model_dir, o.sensitivity, text_path}, ctx.force));
  MOEQ_ASSIGN_OR_RETURN(const quant::FormatTraits* probe, quant::ParseFormatSpec(o.probe_format));
  if (probe->bits >= 16) {
    return Status::InvalidArgument("--probe-format '" + o.probe_format + "': expected an affine format such as q4g64");
  }

  // Predicted noise per role from the sensitivity file.
  MOEQ_ASSIGN_OR_RETURN(alloc::SensitivityFile sens, alloc::ReadSensitivity(o.sensitivity));
  int64_t top_k = 0;
  if (sens.header.contains("inputs") && sens.header["inputs"].is_object() && sens.header["inputs"].contains("top_k") &&
      sens.header["inputs"]["top_k"].is_number_integer()) {
    top_k = sens.header["inputs"]["top_k"].get<int64_t>();
  }
  std::map<int, int> experts_in_layer;
  for (const auto& t : sens.tensors) {
    if (t.expert >= 0) experts_in_layer[t.layer] = std::max(experts_in_layer[t.layer], t.expert + 1);
  }
  if (!experts_in_layer.empty() && top_k <= 0) {
    return Status::InvalidArgument(o.sensitivity + ": header has no inputs.top_k (re-run moeq-analyze)");
  }
  std::map<ProbeKey, RoleProbe> roles;
  for (const auto& t : sens.tensors) {
    for (const auto& c : t.configs) {
      if (c.format != probe->name) continue;
      const double x = t.expert >= 0 ? std::min(1.0, static_cast<double>(top_k) / experts_in_layer[t.layer]) : 1.0;
      const ProbeKey key{t.role, o.per_layer ? t.layer : -1};
      RoleProbe& rp = roles[key];
      rp.role = t.role;
      rp.layer = key.second;
      rp.predicted_noise += x * c.nrmse * c.nrmse;
    }
  }
  if (roles.empty()) {
    return Status::InvalidArgument(o.sensitivity + ": no tensor has the probe format '" + std::string(probe->name) +
                                   "' among its grid configs (choose --probe-format from the grid)");
  }

  MOEQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(o.model_dir));
  const std::string sens_fp = sens.header.contains("inputs") ? sens.header["inputs"].value("model_fingerprint", "") : "";
  if (!sens_fp.empty() && sens_fp != ckpt->fingerprint()) {
    return Status::InvalidArgument(o.sensitivity + ": analysed another model (model_fingerprint " + sens_fp + ", " +
                                   o.model_dir + " has " + ckpt->fingerprint() + ")");
  }
  if (ckpt->is_quantized()) {
    return Status::InvalidArgument(o.model_dir + ": already quantized; calibrate on the unquantized model");
  }
  MOEQ_ASSIGN_OR_RETURN(LoadedTokens tokens, LoadTokens(o.input, o.model_dir));
  MOEQ_ASSIGN_OR_RETURN(PerplexityProtocol protocol, ProtocolPreset("reference", ckpt->config(), -1));
  protocol.name = "custom";
  protocol.context = o.context;
  protocol.max_chunks = o.windows;
  const size_t windows = PlanWindows(static_cast<int64_t>(tokens.ids.size()), protocol).size();
  if (windows == 0) {
    return Status::InvalidArgument(tokens.source + ": " + std::to_string(tokens.ids.size()) +
                                   " tokens, fewer than one window of " + std::to_string(o.context));
  }
  const auto t0 = std::chrono::steady_clock::now();

  EvalOptions quiet_eval;  // the probes log one line each instead of a progress bar
  quiet_eval.protocol = protocol;
  quiet_eval.threads = ctx.threads;
  quiet_eval.progress = false;

  // The reference distribution, once.
  SavedLogits reference;
  {
    MOEQ_ASSIGN_OR_RETURN(auto engine, Engine::Load(*ckpt, {ctx.threads}));
    EvalOptions eo = quiet_eval;
    eo.record = &reference;
    eo.record_top_k = o.top_k;
    MOEQ_ASSIGN_OR_RETURN(EvalResult r, Evaluate(*engine, tokens.ids, eo));
    spdlog::info("reference: {} windows of {} tokens, ppl {:.4f}", r.windows, o.context, r.ppl);
  }

  // Which tensors the probe quantizes, by role.
  MOEQ_ASSIGN_OR_RETURN(QuantPlan uniform, MakeUniformPlan(*ckpt, *probe));
  std::map<ProbeKey, std::vector<std::string>> names;
  for (const CheckpointTensor& t : ckpt->tensors()) {
    if (IsQuantizableRole(t.id.role) && uniform.formats.count(t.info.name)) names[{t.id.role, o.per_layer ? t.id.layer : -1}].push_back(t.info.name);
  }
  size_t done = 0;
  for (auto& [key, rp] : roles) {
    ++done;
    const TensorRole role = key.first;
    const std::string group = std::string(RoleName(role)) + (rp.layer >= 0 ? "." + std::to_string(rp.layer) : "");
    auto it = names.find(key);
    if (it == names.end() || rp.predicted_noise <= 0) continue;
    QuantPlan plan = uniform;
    plan.formats.clear();
    for (const std::string& n : it->second) plan.formats[n] = uniform.formats.at(n);
    rp.tensors = static_cast<int64_t>(it->second.size());
    ScopedDir tmp{(fs::temp_directory_path() / ("moeq-calibrate-" + std::to_string(::getpid()) + "-" +
                                                group))
                      .string()};
    std::error_code ec;
    fs::remove_all(tmp.path, ec);
    if (!fs::create_directory(tmp.path, ec) || ec) return Status::Io(tmp.path + ": cannot create a probe directory: " + ec.message());
    MlxWriteOptions wo;
    wo.threads = ctx.threads;
    wo.progress = false;
    MOEQ_RETURN_IF_ERROR(WriteMlxCheckpoint(*ckpt, plan, tmp.path, wo).status());
    MOEQ_ASSIGN_OR_RETURN(auto qckpt, Checkpoint::Open(tmp.path));
    MOEQ_ASSIGN_OR_RETURN(auto engine, Engine::Load(*qckpt, {ctx.threads}));
    EvalOptions eo = quiet_eval;
    eo.saved_reference = &reference;
    MOEQ_ASSIGN_OR_RETURN(EvalResult r, Evaluate(*engine, tokens.ids, eo));
    rp.kl_mean = r.kl_mean;
    rp.sensitivity = rp.kl_mean / rp.predicted_noise;
    spdlog::info("calibrate: {}/{} {}: {} tensors at {}: KL {:.6f}, predicted noise {:.4g}", done, roles.size(),
                 group, rp.tensors, probe->name, rp.kl_mean, rp.predicted_noise);
  }
  std::vector<double> s;
  for (const auto& [key, rp] : roles) {
    if (rp.tensors > 0) s.push_back(rp.sensitivity);
  }
  if (s.empty()) return Status::InvalidArgument(o.model_dir + ": no quantizable tensor takes the probe format");
  std::sort(s.begin(), s.end());
  const double median = s[s.size() / 2] > 0 ? s[s.size() / 2] : 1.0;

  nlohmann::json in = {{"model", o.model_dir}, {"model_fingerprint", ckpt->fingerprint()},
                       {"sensitivity", o.sensitivity}, {"sensitivity_sha256", sens.sha256},
                       {"text", tokens.source}, {"text_sha256", tokens.sha256}};
  nlohmann::json j = MakeArtifactHeader("moeq.allocate_rules", 1, ctx, in);
  j["description"] =
      "Measured priors (moeq-calibrate): for each role, the mean KL divergence from the unquantized model when only "
      "that role is quantized with the probe format, over the predicted noise sum(exposure * NRMSE^2); prior = "
      "sqrt(sensitivity / median sensitivity), for moeq-allocate --objective mse --rules this-file.";
  j["probe"] = {{"format", std::string(probe->name)}, {"windows", windows}, {"context", o.context}, {"top_k", o.top_k},
                {"per_layer", o.per_layer}};
  nlohmann::json rules = nlohmann::json::array(), measured = nlohmann::json::array();
  for (auto& [key, rp] : roles) {
    if (rp.tensors == 0) continue;
    const TensorRole role = key.first;
    nlohmann::json match = {{"role", std::string(RoleName(role))}};
    if (rp.layer >= 0) match["layer"] = rp.layer;
    rp.prior = std::clamp(std::sqrt(std::max(rp.sensitivity, 0.0) / median), 0.01, 100.0);
    rules.push_back({{"match", match}, {"prior", rp.prior}});
    measured.push_back({{"role", std::string(RoleName(role))}, {"layer", rp.layer}, {"tensors", rp.tensors}, {"kl_mean", rp.kl_mean},
                        {"predicted_noise", rp.predicted_noise}, {"sensitivity", rp.sensitivity}, {"prior", rp.prior}});
  }
  j["rules"] = rules;
  j["measurements"] = measured;
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(o.output, DumpJson(j)));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("calibrated {} roles of {} on {} windows in {:.1f} s; wrote {}", rules.size(), o.model_dir, windows, secs, o.output);
  return Status::Ok();
}

}  // namespace moeq
