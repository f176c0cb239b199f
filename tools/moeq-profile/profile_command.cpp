// moeq-profile: routing statistics (counts, gate mass, rank, co-activation, domains, hotness,
// tiers) and activation statistics on calibration text, or routing statistics from traces.
#include "moeq-profile/profile_command.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "moeq/artifacts/routing_profile.h"
#include "moeq/base/file_util.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/profile/routing_profile.h"
#include "moeq/tokenizer/text_input.h"

namespace moeq {
namespace {

void LogSummary(const RoutingProfile& prof, const nlohmann::json& j, const ProfileCommandOptions& o,
                bool activations) {
  double worst = 0;
  int64_t unused = 0, churn = 0, critical = 0, prunable = 0, moe_layers = 0;
  for (const auto& l : j["layers"]) {
    if (!l.contains("summary")) continue;
    ++moe_layers;
    worst = std::max(worst, l["summary"]["max_over_mean"].get<double>());
    unused += l["summary"]["unused_experts"].get<int64_t>();
    churn += l["hotness"]["churn"].get<int64_t>();
    critical += l["summary"]["tiers"]["critical"].get<int64_t>();
    prunable += l["summary"]["tiers"]["prunable"].get<int64_t>();
  }
  spdlog::info(
      "profiled {} tokens ({}) over {} layers, {} domain(s): hottest expert {:.2f}× the mean, {} "
      "unused, "
      "{} critical / {} prunable experts, hot-set churn {}; wrote {}{}",
      prof.tokens,
      prof.source == "trace"
          ? std::string("from routing traces")
          : std::to_string(prof.windows) + " windows of " + std::to_string(prof.context),
      moe_layers, prof.domains.size(), worst, unused, critical, prunable, churn, o.output,
      activations ? " and " + o.activation_stats : "");
}

}  // namespace

Status RunProfile(const ProfileCommandOptions& o, const ArtifactContext& ctx) {
  const int kinds = !o.text_files.empty() + !o.token_files.empty() + !o.trace_files.empty();
  if (kinds != 1)
    return Status::InvalidArgument(
        "give calibration input of one kind: --text FILE..., --tokens FILE... or --trace FILE...");
  const std::vector<std::string>& files = !o.text_files.empty()    ? o.text_files
                                          : !o.token_files.empty() ? o.token_files
                                                                   : o.trace_files;
  if (!o.domains.empty() && o.domains.size() != files.size()) {
    return Status::InvalidArgument(
        "--domain given " + std::to_string(o.domains.size()) + " time(s) for " +
        std::to_string(files.size()) +
        " input file(s): give one --domain per input, in the same order, or none");
  }
  for (const std::string& d : o.domains) {
    if (d.empty()) return Status::InvalidArgument("--domain: a domain name must not be empty");
  }
  if (o.top_pairs < 0) return Status::InvalidArgument("--top-pairs must be >= 0");
  const bool traces = !o.trace_files.empty();
  if (traces && !o.activation_stats.empty()) {
    return Status::InvalidArgument(
        "--activation-stats needs the model run: a routing trace has no activations");
  }
  if (o.gram && o.activation_stats.empty())
    return Status::InvalidArgument(
        "--gram needs --activation-stats FILE (the Gram matrices are written there)");
  if (!(o.shrinkage_tokens >= 0)) return Status::InvalidArgument("--shrinkage-tokens must be >= 0");
  if (traces && !o.write_trace.empty())
    return Status::InvalidArgument("--write-trace needs the model run, not --trace");
  std::vector<std::string> inputs = {o.model_dir};
  inputs.insert(inputs.end(), files.begin(), files.end());
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, inputs, ctx.force));
  if (!o.activation_stats.empty())
    MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.activation_stats, inputs, ctx.force));
  if (!o.write_trace.empty())
    MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.write_trace, inputs, ctx.force));

  ProfileOptions po;
  po.context = o.context;
  po.max_windows = o.max_windows;
  po.activations = !o.activation_stats.empty();
  po.gram = o.gram;
  po.threads = ctx.threads;
  po.progress = ctx.progress;
  po.top_pairs = o.top_pairs;
  if (!o.tiers.empty()) {
    MOEQ_ASSIGN_OR_RETURN(po.tiers, LoadTierThresholds(o.tiers));
  }
  if (!o.hotness.empty()) {
    MOEQ_ASSIGN_OR_RETURN(po.hotness, LoadHotnessOptions(o.hotness));
  }
  auto domain_of = [&](size_t i) {
    return o.domains.empty() ? std::string("default") : o.domains[i];
  };

  nlohmann::json in = {{"model", o.model_dir}};
  RoutingProfile prof;
  std::unique_ptr<Checkpoint> ckpt;
  if (traces) {
    const std::string config_path =
        std::filesystem::is_directory(o.model_dir) ? o.model_dir + "/config.json" : o.model_dir;
    MOEQ_ASSIGN_OR_RETURN(auto cj, ReadJsonFile(config_path));
    MOEQ_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(cj, config_path));
    MOEQ_ASSIGN_OR_RETURN(std::string config_sha, Sha256File(config_path));
    in["config_sha256"] = config_sha;
    std::vector<TraceInput> ti;
    for (size_t i = 0; i < files.size(); ++i) ti.push_back({files[i], domain_of(i)});
    spdlog::info(
        "reading {} routing trace(s); activation statistics and router probability mass are not "
        "available from traces",
        ti.size());
    MOEQ_ASSIGN_OR_RETURN(prof, ProfileRoutingTraces(config, ti, po));
  } else {
    MOEQ_ASSIGN_OR_RETURN(ckpt, Checkpoint::Open(o.model_dir));
    if (!ckpt->config().is_moe())
      spdlog::warn("{}: a dense model: no routing to profile, only activations", o.model_dir);
    MOEQ_ASSIGN_OR_RETURN(auto engine, Engine::Load(*ckpt, {ctx.threads}));
    in["model_fingerprint"] = ckpt->fingerprint();
    std::vector<LoadedTokens> loaded;
    for (size_t i = 0; i < files.size(); ++i) {
      TextInput t;
      (o.text_files.empty() ? t.tokens_file : t.text_file) = files[i];
      MOEQ_ASSIGN_OR_RETURN(LoadedTokens tokens, LoadTokens(t, o.model_dir));
      loaded.push_back(std::move(tokens));
    }
    std::vector<CalibrationText> texts;
    nlohmann::json text_list = nlohmann::json::array();
    for (size_t i = 0; i < loaded.size(); ++i) {
      texts.push_back({domain_of(i), loaded[i].ids, loaded[i].source, loaded[i].sha256});
      text_list.push_back({{"text", loaded[i].source},
                           {"text_sha256", loaded[i].sha256},
                           {"domain", domain_of(i)}});
    }
    if (loaded.size() == 1) {
      in["text"] = loaded[0].source;
      in["text_sha256"] = loaded[0].sha256;
    }
    in["texts"] = text_list;
    if (!o.write_trace.empty()) {
      po.trace_output = o.write_trace;
      po.overwrite_trace = ctx.force;
      po.trace_header = MakeArtifactHeader("moeq.routing_trace", 1, ctx, in);
      po.trace_header["model"] = {{"num_layers", ckpt->config().num_layers},
                                  {"num_experts", ckpt->config().num_experts},
                                  {"top_k", ckpt->config().top_k}};
    }
    MOEQ_ASSIGN_OR_RETURN(prof, ProfileRouting(*engine, texts, po));
  }
  if (traces) {
    nlohmann::json tl = nlohmann::json::array();
    for (const DomainInfo& d : prof.domains) {
      for (size_t s = 0; s < d.sources.size() && s < d.sha256.size(); ++s) {
        tl.push_back({{"trace", d.sources[s]}, {"trace_sha256", d.sha256[s]}, {"domain", d.name}});
      }
    }
    in["traces"] = tl;
  }
  nlohmann::json header = MakeArtifactHeader(artifacts::kRoutingProfileSchema,
                                             artifacts::kRoutingProfileVersion, ctx, in);
  nlohmann::json j = artifacts::RoutingProfileToJson(RoutingProfileToArtifact(prof, header));
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(o.output, DumpJson(j), {.overwrite = ctx.force}));
  if (po.activations)
    MOEQ_RETURN_IF_ERROR(WriteActivationStats(o.activation_stats, prof, ckpt->adapter(),
                                              {o.shrinkage_tokens}, {.overwrite = ctx.force}));
  LogSummary(prof, j, o, po.activations);
  return Status::Ok();
}

}  // namespace moeq
