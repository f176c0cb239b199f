// moeq-calibrate: per-role KL probes and the measured priors (calibrate_command.h).
#include "moeq-calibrate/calibrate_command.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <map>
#include <memory>

#include "moeq/allocate/allocation.h"
#include "moeq/artifacts/allocate_rules.h"
#include "moeq/artifacts/model_match.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/eval/eval.h"
#include "moeq/export/mlx_writer.h"
#include "moeq/export/quant_plan.h"
#include "moeq/model/arch.h"
#include "moeq/quant/quant_format.h"
#include "moeq/quant/quantizer.h"
#include "moeq/tokenizer/text_input.h"

namespace moeq {
namespace {

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
  double sensitivity = 0;  ///< kl_mean / predicted_noise
  double prior = 1;
};

}  // namespace

Status RunCalibrate(const CalibrateCommandOptions& o, const ArtifactContext& ctx) {
  if (o.model_dir.empty())
    return Status::InvalidArgument(
        "missing MODEL directory (moeq-calibrate MODEL --sensitivity S --text T)");
  if (o.sensitivity.empty())
    return Status::InvalidArgument("--sensitivity: the model's sensitivity.jsonl is required");
  if (o.input.text_file.empty() == o.input.tokens_file.empty()) {
    return Status::InvalidArgument(
        "give exactly one of --text FILE or --tokens FILE (calibration input)");
  }
  if (o.windows < 1 || o.windows > 100000)
    return Status::InvalidArgument("--windows " + std::to_string(o.windows) +
                                   ": expected 1..100000");
  if (o.context < 2)
    return Status::InvalidArgument("--context " + std::to_string(o.context) +
                                   ": expected at least 2");
  if (o.top_k < 0) return Status::InvalidArgument("--top-k: expected >= 0");
  if (o.output.empty()) return Status::InvalidArgument("--output: empty path");
  const std::string text_path = o.input.text_file.empty() ? o.input.tokens_file : o.input.text_file;
  MOEQ_RETURN_IF_ERROR(
      CheckOutputPath(o.output, {o.model_dir, o.sensitivity, text_path}, ctx.force));
  MOEQ_ASSIGN_OR_RETURN(const quant::FormatTraits* probe, quant::ParseFormatSpec(o.probe_format));
  if (probe->bits >= 16) {
    return Status::InvalidArgument("--probe-format '" + o.probe_format +
                                   "': expected an affine format such as q4g64");
  }

  // Predicted noise per role from the sensitivity file.
  MOEQ_ASSIGN_OR_RETURN(alloc::SensitivityFile sens, alloc::ReadSensitivity(o.sensitivity));
  int64_t top_k = 0;
  if (sens.header.contains("inputs") && sens.header["inputs"].is_object() &&
      sens.header["inputs"].contains("top_k") &&
      sens.header["inputs"]["top_k"].is_number_integer()) {
    top_k = sens.header["inputs"]["top_k"].get<int64_t>();
  }
  std::map<int, int> experts_in_layer;
  for (const auto& t : sens.tensors) {
    if (t.expert >= 0)
      experts_in_layer[t.layer] = std::max(experts_in_layer[t.layer], t.expert + 1);
  }
  if (!experts_in_layer.empty() && top_k <= 0) {
    return Status::InvalidArgument(o.sensitivity +
                                   ": header has no inputs.top_k (re-run moeq-analyze)");
  }
  std::map<ProbeKey, RoleProbe> roles;
  for (const auto& t : sens.tensors) {
    for (const auto& c : t.configs) {
      if (c.format != probe->name) continue;
      if (!c.encoder.empty() && c.encoder != "rtn") continue;  // the probe quantizes with rtn
      const double x = t.expert >= 0
                           ? std::min(1.0, static_cast<double>(top_k) / experts_in_layer[t.layer])
                           : 1.0;
      const ProbeKey key{t.role, o.per_layer ? t.layer : -1};
      RoleProbe& rp = roles[key];
      rp.role = t.role;
      rp.layer = key.second;
      rp.predicted_noise += x * c.nrmse * c.nrmse;
    }
  }
  if (roles.empty()) {
    return Status::InvalidArgument(
        o.sensitivity + ": no tensor has the probe format '" + std::string(probe->name) +
        "' among its grid configs (choose --probe-format from the grid)");
  }

  MOEQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(o.model_dir));
  MOEQ_RETURN_IF_ERROR(artifacts::RequireSameModel(
      {o.sensitivity, artifacts::ModelFingerprintOf(sens.header)},
      {"checkpoint " + o.model_dir, ckpt->fingerprint()}, o.allow_model_mismatch));
  if (ckpt->is_quantized()) {
    return Status::InvalidArgument(o.model_dir +
                                   ": already quantized; calibrate on the unquantized model");
  }
  MOEQ_ASSIGN_OR_RETURN(LoadedTokens tokens, LoadTokens(o.input, o.model_dir));
  MOEQ_ASSIGN_OR_RETURN(PerplexityProtocol protocol,
                        ProtocolPreset("reference", ckpt->config(), -1));
  protocol.name = "custom";
  protocol.context = o.context;
  protocol.max_chunks = o.windows;
  const size_t windows = PlanWindows(static_cast<int64_t>(tokens.ids.size()), protocol).size();
  if (windows == 0) {
    return Status::InvalidArgument(tokens.source + ": " + std::to_string(tokens.ids.size()) +
                                   " tokens, fewer than one window of " +
                                   std::to_string(o.context));
  }
  const auto t0 = std::chrono::steady_clock::now();

  EvalOptions quiet_eval;  // the probes log one line each instead of a progress bar
  quiet_eval.protocol = protocol;
  quiet_eval.threads = ctx.threads;
  quiet_eval.progress = false;

  // One engine on the source model. The reference pass runs layer by layer once, caching the
  // residual stream entering every layer; a probe replaces only its group's weights by their
  // quantize-dequantize (Engine::OverrideWeights: the values moeq-quantize's MLX output
  // dequantizes to) and runs only the layers from the first one it touches, starting from
  // the cached stream. No checkpoint is written.
  MOEQ_ASSIGN_OR_RETURN(auto engine, Engine::Load(*ckpt, {ctx.threads}));
  const int num_layers = static_cast<int>(ckpt->config().num_layers);
  MOEQ_ASSIGN_OR_RETURN(auto layer_inputs, CacheLayerInputs(*engine, tokens.ids, quiet_eval));
  SavedLogits reference;
  {
    EvalOptions eo = quiet_eval;
    eo.record = &reference;
    eo.record_top_k = o.top_k;
    eo.start_layer = num_layers;
    eo.layer_inputs = &layer_inputs[static_cast<size_t>(num_layers)];
    MOEQ_ASSIGN_OR_RETURN(EvalResult r, Evaluate(*engine, tokens.ids, eo));
    spdlog::info("reference: {} windows of {} tokens, ppl {:.4f}", r.windows, o.context, r.ppl);
  }

  // Which tensors the probe quantizes, by role.
  MOEQ_ASSIGN_OR_RETURN(QuantPlan uniform, MakeUniformPlan(*ckpt, *probe));
  std::map<ProbeKey, std::vector<const CheckpointTensor*>> names;
  for (const CheckpointTensor& t : ckpt->tensors()) {
    if (IsQuantizableRole(t.id.role) && uniform.formats.count(t.info.name))
      names[{t.id.role, o.per_layer ? t.id.layer : -1}].push_back(&t);
  }
  // Probe order and cost. A group's layers: those its tensors are in (-1: embedding / lm_head).
  struct Group {
    std::vector<const CheckpointTensor*> tensors;
    bool embedding = false, head = false;
    std::vector<int> layers;  // sorted, distinct
  };
  std::map<ProbeKey, Group> groups;
  double kl_cost = 0;  // layer passes of the "kl" method
  for (auto& [key, rp] : roles) {
    auto it = names.find(key);
    if (it == names.end() || rp.predicted_noise <= 0) continue;
    Group& g = groups[key];
    g.tensors = it->second;
    for (const CheckpointTensor* t : g.tensors) {
      if (t->id.role == TensorRole::kEmbedding) g.embedding = true;
      if (t->id.role == TensorRole::kLmHead) g.head = true;
      if (t->id.layer >= 0) g.layers.push_back(t->id.layer);
    }
    std::sort(g.layers.begin(), g.layers.end());
    g.layers.erase(std::unique(g.layers.begin(), g.layers.end()), g.layers.end());
    kl_cost += g.embedding ? num_layers : (g.layers.empty() ? 0 : num_layers - g.layers.front());
  }
  std::string method = o.method;
  if (method == "auto") method = kl_cost <= 10.0 * std::max(1, num_layers) ? "kl" : "local";
  if (method != "kl" && method != "local") {
    return Status::InvalidArgument("--method '" + o.method + "': expected auto, kl or local");
  }
  spdlog::info("calibrate: {} probes, method {} (measured KL would cost {:.1f} forward passes)",
               groups.size(), method, num_layers > 0 ? kl_cost / num_layers : 0.0);

  auto apply = [&](const Group& g) -> Status {
    for (const CheckpointTensor* t : g.tensors) {
      MOEQ_ASSIGN_OR_RETURN(TensorView view, ckpt->View(t->info.name));
      MOEQ_ASSIGN_OR_RETURN(
          quant::QuantizedTensor q,
          quant::QuantizeTensor(view, *uniform.formats.at(t->info.name), ctx.threads));
      MOEQ_ASSIGN_OR_RETURN(std::vector<float> deq, quant::Dequantize(q, ctx.threads));
      MOEQ_RETURN_IF_ERROR(engine->OverrideWeights(t->info.name, std::move(deq)));
    }
    return Status::Ok();
  };
  // Measured KL with the group applied: from the first layer it touches to the logits.
  double layer_passes = 0;
  auto measure_kl = [&](const Group& g) -> Result<double> {
    EvalOptions eo = quiet_eval;
    eo.saved_reference = &reference;
    int start = num_layers;
    if (!g.embedding) {
      if (!g.layers.empty()) start = g.layers.front();
      eo.start_layer = start;
      eo.layer_inputs = &layer_inputs[static_cast<size_t>(start)];
    } else {
      start = 0;
    }
    layer_passes += num_layers - start;
    MOEQ_ASSIGN_OR_RETURN(EvalResult r, Evaluate(*engine, tokens.ids, eo));
    return r.kl_mean;
  };
  // Local change: Σ over the group's layers of the change of that layer's output (run alone
  // from the cached input), per token relative to the final residual stream's energy.
  std::vector<double> final_energy;  // per window and token: ||x_N||²
  {
    const int64_t H = ckpt->config().hidden_size;
    for (const auto& x : layer_inputs[static_cast<size_t>(num_layers)]) {
      for (size_t t = 0; t < x.size() / static_cast<size_t>(H); ++t) {
        double e = 0;
        for (int64_t i = 0; i < H; ++i) e += double(x[t * H + i]) * x[t * H + i];
        final_energy.push_back(std::max(e, 1e-30));
      }
    }
  }
  auto local_change = [&](const Group& g) -> Result<double> {
    const int64_t H = ckpt->config().hidden_size;
    double sum = 0;
    auto add = [&](const std::vector<std::vector<float>>& now,
                   const std::vector<std::vector<float>>& ref) {
      size_t k = 0;
      for (size_t w = 0; w < now.size(); ++w) {
        for (size_t t = 0; t < now[w].size() / static_cast<size_t>(H); ++t, ++k) {
          double d = 0;
          for (int64_t i = 0; i < H; ++i) {
            const double v = double(now[w][t * H + i]) - ref[w][t * H + i];
            d += v * v;
          }
          sum += d / final_energy[k];
        }
      }
    };
    if (g.embedding) {
      std::vector<std::vector<float>> x(layer_inputs[0].size());
      const auto windows_plan = PlanWindows(static_cast<int64_t>(tokens.ids.size()), protocol);
      for (size_t w = 0; w < x.size(); ++w) {
        std::vector<int32_t> ids(tokens.ids.begin() + windows_plan[w].start,
                                 tokens.ids.begin() + windows_plan[w].start + protocol.context);
        if (protocol.bos_id >= 0) ids[0] = protocol.bos_id;
        MOEQ_RETURN_IF_ERROR(engine->Embed(ids, &x[w]));
      }
      add(x, layer_inputs[0]);
    }
    for (int l : g.layers) {
      std::vector<std::vector<float>> x = layer_inputs[static_cast<size_t>(l)];
      MOEQ_RETURN_IF_ERROR(engine->ForwardLayers(l, l + 1, &x, {}, ctx.threads));
      layer_passes += 1;
      add(x, layer_inputs[static_cast<size_t>(l) + 1]);
    }
    return sum / static_cast<double>(std::max<size_t>(1, final_energy.size()));
  };

  // "local": KL per unit of local change is measured on the last layer's groups (one layer and
  // the head each) — the (at most) kMeasuredLastLayer groups of largest change, the most signal
  // — and its median converts every other group's local change; lm_head is measured.
  constexpr size_t kMeasuredLastLayer = 3;
  std::map<ProbeKey, double> local;
  double kl_per_change = 0;
  if (method == "local") {
    std::vector<std::pair<double, ProbeKey>> last;
    for (auto& [key, g] : groups) {
      if (g.head || g.embedding || g.layers.empty() || g.layers.front() != num_layers - 1) continue;
      MOEQ_RETURN_IF_ERROR(apply(g));
      Result<double> change = local_change(g);
      engine->ClearOverrides();
      if (!change.ok()) return change.status();
      last.push_back({*change, key});
    }
    std::sort(last.begin(), last.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    if (last.size() > kMeasuredLastLayer) last.resize(kMeasuredLastLayer);
    std::vector<double> ratios;
    for (const auto& [change, key] : last) {
      const Group& g = groups.at(key);
      MOEQ_RETURN_IF_ERROR(apply(g));
      Result<double> kl = measure_kl(g);
      engine->ClearOverrides();
      if (!kl.ok()) return kl.status();
      local[key] = change;
      roles[key].kl_mean = *kl;
      if (change > 0) ratios.push_back(*kl / change);
    }
    if (ratios.empty()) {
      return Status::InvalidArgument(
          o.model_dir +
          ": --method local needs a probed group in the last layer to convert "
          "local changes to KL (use --method kl)");
    }
    std::sort(ratios.begin(), ratios.end());
    kl_per_change = ratios[ratios.size() / 2];
    spdlog::info(
        "calibrate: KL per unit of relative local change {:.4g} (median of {} last-layer probes, "
        "range {:.3g}..{:.3g})",
        kl_per_change, ratios.size(), ratios.front(), ratios.back());
  }

  // Probes run layer by layer (every role of layer 0, then of layer 1, ...): a probe runs its
  // whole layer, so on a checkpoint larger than memory the layer's weights are read from disk
  // once for all its roles instead of once per role. The embedding and lm_head (layer -1) come
  // last: they need only the cached streams entering layer 0 and leaving the last layer, so the
  // others are freed before their large float overlays are made. Each probe starts from the
  // cached reference and clears its overrides, so the order changes no result.
  std::vector<ProbeKey> order;
  for (const auto& kv : roles) order.push_back(kv.first);
  auto rank = [](const ProbeKey& k) { return k.second < 0 ? INT_MAX : k.second; };
  std::stable_sort(order.begin(), order.end(),
                   [&](const ProbeKey& a, const ProbeKey& b) { return rank(a) < rank(b); });
  size_t done = 0;
  bool freed = false;
  for (size_t i = 0; i < order.size(); ++i) {
    const ProbeKey& key = order[i];
    RoleProbe& rp = roles.at(key);
    ++done;
    if (!freed && key.second < 0) {
      // Only when no probe left runs a layer (with --per-layer off every group is at layer -1).
      bool layer_free = true;
      for (size_t j = i; j < order.size(); ++j) {
        auto it = groups.find(order[j]);
        if (it != groups.end() && !it->second.layers.empty()) layer_free = false;
      }
      if (layer_free) {
        for (int l = 1; l < num_layers; ++l)
          std::vector<std::vector<float>>().swap(layer_inputs[static_cast<size_t>(l)]);
      }
      freed = true;
    }
    const TensorRole role = key.first;
    const std::string group =
        std::string(RoleName(role)) + (rp.layer >= 0 ? "." + std::to_string(rp.layer) : "");
    auto git = groups.find(key);
    if (git == groups.end()) continue;
    const Group& g = git->second;
    rp.tensors = static_cast<int64_t>(g.tensors.size());
    std::string how = "measured";
    if (method == "local" && local.count(key)) {
      // measured above (last layer)
    } else {
      MOEQ_RETURN_IF_ERROR(apply(g));
      Result<double> kl = 0.0;
      if (method == "kl" || g.head) {
        kl = measure_kl(g);
      } else {
        Result<double> change = local_change(g);
        kl =
            change.ok() ? Result<double>(kl_per_change * *change) : Result<double>(change.status());
        how = "estimated";
      }
      engine->ClearOverrides();
      if (!kl.ok()) return kl.status();
      rp.kl_mean = *kl;
    }
    rp.sensitivity = rp.kl_mean / rp.predicted_noise;
    spdlog::info("calibrate: {}/{} {}: {} tensors at {}: KL {:.6f} ({}), predicted noise {:.4g}",
                 done, roles.size(), group, rp.tensors, probe->name, rp.kl_mean, how,
                 rp.predicted_noise);
  }
  spdlog::info(
      "calibrate: probes ran {:.1f} layer passes = {:.2f} forward passes over the text (+1 "
      "reference pass)",
      layer_passes, num_layers > 0 ? layer_passes / num_layers : 0.0);
  std::vector<double> s;
  for (const auto& [key, rp] : roles) {
    if (rp.tensors > 0) s.push_back(rp.sensitivity);
  }
  if (s.empty())
    return Status::InvalidArgument(o.model_dir + ": no quantizable tensor takes the probe format");
  std::sort(s.begin(), s.end());
  const double median = s[s.size() / 2] > 0 ? s[s.size() / 2] : 1.0;

  nlohmann::json in = {{"model", o.model_dir},         {"model_fingerprint", ckpt->fingerprint()},
                       {"sensitivity", o.sensitivity}, {"sensitivity_sha256", sens.sha256},
                       {"text", tokens.source},        {"text_sha256", tokens.sha256}};
  artifacts::AllocateRulesArtifact out;
  out.header = MakeArtifactHeader(artifacts::kAllocateRulesSchema, artifacts::kAllocateRulesVersion,
                                  ctx, in);
  out.description =
      "Measured priors (moeq-calibrate): for each role, the mean KL divergence from the "
      "unquantized model when only "
      "that role is quantized with the probe format, over the predicted noise sum(exposure * "
      "NRMSE^2); prior = "
      "sqrt(sensitivity / median sensitivity), for moeq-allocate --objective mse --rules "
      "this-file.";
  out.probe = artifacts::CalibrationProbe{
      .format = std::string(probe->name),
      .windows = static_cast<int64_t>(windows),
      .context = o.context,
      .top_k = o.top_k,
      .per_layer = o.per_layer,
      .method = method,
      .kl_per_relative_change =
          method == "local" ? std::optional<double>(kl_per_change) : std::nullopt};
  out.measurements.emplace();
  for (auto& [key, rp] : roles) {
    if (rp.tensors == 0) continue;
    const TensorRole role = key.first;
    nlohmann::json match = {{"role", std::string(RoleName(role))}};
    if (rp.layer >= 0) match["layer"] = rp.layer;
    rp.prior = std::clamp(std::sqrt(std::max(rp.sensitivity, 0.0) / median), 0.01, 100.0);
    out.rules.push_back({{"match", match}, {"prior", rp.prior}});
    out.measurements->push_back({.role = std::string(RoleName(role)),
                                 .layer = rp.layer,
                                 .tensors = rp.tensors,
                                 .kl_mean = rp.kl_mean,
                                 .predicted_noise = rp.predicted_noise,
                                 .sensitivity = rp.sensitivity,
                                 .prior = rp.prior});
  }
  const nlohmann::json j = artifacts::AllocateRulesToJson(out);
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(o.output, DumpJson(j), {.overwrite = ctx.force}));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("calibrated {} roles of {} on {} windows in {:.1f} s; wrote {}", out.rules.size(),
               o.model_dir, windows, secs, o.output);
  return Status::Ok();
}

}  // namespace moeq
