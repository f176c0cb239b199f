// moeq-profile: routing counts and activation statistics on calibration text.
#include <spdlog/spdlog.h>

#include "commands/text_input.h"
#include "moeq/checkpoint.h"
#include "moeq/commands.h"
#include "moeq/engine.h"
#include "moeq/file_util.h"
#include "moeq/routing_profile.h"

namespace moeq {

Status RunProfile(const ProfileCommandOptions& o, const ArtifactContext& ctx) {
  const std::vector<std::string> inputs = {o.model_dir, o.input.text_file, o.input.tokens_file};
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, inputs, ctx.force));
  if (!o.activation_stats.empty()) MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.activation_stats, inputs, ctx.force));
  MOEQ_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(o.model_dir));
  if (!ckpt->config().is_moe()) spdlog::warn("{}: a dense model: no routing to profile, only activations", o.model_dir);
  MOEQ_ASSIGN_OR_RETURN(auto engine, Engine::Load(*ckpt, {ctx.threads}));
  MOEQ_ASSIGN_OR_RETURN(LoadedTokens tokens, LoadTokens(o.input, o.model_dir));
  ProfileOptions po;
  po.context = o.context;
  po.max_windows = o.max_windows;
  po.activations = !o.activation_stats.empty();
  po.threads = ctx.threads;
  po.progress = ctx.progress;
  MOEQ_ASSIGN_OR_RETURN(RoutingProfile prof, ProfileRouting(*engine, tokens.ids, po));
  nlohmann::json header = MakeArtifactHeader(
      "moeq.routing_profile", 1, ctx,
      {{"model", o.model_dir}, {"model_fingerprint", ckpt->fingerprint()}, {"text", tokens.source},
       {"text_sha256", tokens.sha256}});
  nlohmann::json j = RoutingProfileToJson(prof, header);
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(o.output, DumpJson(j)));
  if (po.activations) MOEQ_RETURN_IF_ERROR(WriteActivationStats(o.activation_stats, prof, ckpt->adapter()));
  double worst = 0;
  int64_t unused = 0;
  for (const auto& l : j["layers"]) {
    if (!l.contains("summary")) continue;
    worst = std::max(worst, l["summary"]["max_over_mean"].get<double>());
    unused += l["summary"]["unused_experts"].get<int64_t>();
  }
  spdlog::info("profiled {} tokens ({} windows of {}) over {} layers: hottest expert {:.2f}× the mean, {} unused; wrote {}{}",
               prof.tokens, prof.windows, prof.context, prof.layers.size(), worst, unused, o.output,
               po.activations ? " and " + o.activation_stats : "");
  return Status::Ok();
}

}  // namespace moeq
