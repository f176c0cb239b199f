// The sensitivity analysis driver and the shard merge (analysis.h).
#include "moeq/sensitivity/analysis.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <memory>
#include <sstream>

#include "moeq/artifacts/sensitivity.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "moeq/base/progress.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/quant/input_stats.h"
#include "moeq/sensitivity/clustering.h"
#include "moeq/sensitivity/csv.h"
#include "moeq/sensitivity/features.h"
#include "moeq/sensitivity/grid.h"
#include "sensitivity/analyzer.h"
#include "sensitivity/output_file.h"

namespace moeq::sensitivity {

Result<std::pair<int, int>> ParseShardSpec(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("--shard '" + text + "': " + why +
                                   " (expected i/N with 0 <= i < N, e.g. 0/4)");
  };
  const size_t slash = text.find('/');
  if (slash == std::string::npos) return bad("no '/'");
  int i = -1, n = -1;
  const char* b = text.data();
  const char* e = b + slash;
  auto r1 = std::from_chars(b, e, i);
  if (r1.ec != std::errc() || r1.ptr != e)
    return bad("'" + text.substr(0, slash) + "' is not an integer");
  auto r2 = std::from_chars(text.data() + slash + 1, text.data() + text.size(), n);
  if (r2.ec != std::errc() || r2.ptr != text.data() + text.size())
    return bad("'" + text.substr(slash + 1) + "' is not an integer");
  if (n < 1) return bad("N must be at least 1");
  if (i < 0 || i >= n)
    return bad("shard index " + std::to_string(i) + " is outside [0, " + std::to_string(n) + ")");
  return std::make_pair(i, n);
}

Status AnalyzeSensitivity(const AnalysisOptions& o, const ArtifactContext& ctx) {
  std::pair<int, int> shard{0, 1};
  if (!o.shard.empty()) {
    MOEQ_ASSIGN_OR_RETURN(shard, ParseShardSpec(o.shard));
  }
  std::string grid_label, grid_sha;
  MOEQ_ASSIGN_OR_RETURN(std::vector<GridConfig> grid, LoadGrid(o.grid, &grid_label, &grid_sha));
  auto encoders = quant::ParseEncoderList(o.encoders);
  if (!encoders.ok()) return Status::InvalidArgument("--encoders: " + encoders.status().message());
  const bool data_aware = *encoders != std::vector<quant::EncoderKind>{quant::EncoderKind::kRtn};
  // The grid becomes format × encoder: every affine config once per encoder, float configs once.
  grid = ExpandGridByEncoders(grid, *encoders);
  const std::vector<std::string> inputs = {o.model_dir, o.grid, o.activation_stats};
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, inputs, ctx.force));
  if (!o.csv.empty()) MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.csv, inputs, ctx.force));
  MOEQ_ASSIGN_OR_RETURN(auto ck, Checkpoint::Open(o.model_dir));
  // moeq-profile's activation statistics, read through their one reader (InputStatsFile).
  std::unique_ptr<InputStatsFile> act;
  if (!o.activation_stats.empty()) {
    MOEQ_ASSIGN_OR_RETURN(act, InputStatsFile::Open(o.activation_stats));
  }

  // The whole model's units in output order; this shard's subset.
  std::vector<Unit> units;
  int64_t next = 0;
  for (const CheckpointTensor& t : ck->tensors()) {
    if (!IsQuantizableRole(t.id.role)) continue;
    const size_t nd = t.info.shape.size();
    if (t.fused_experts && nd == 3) {
      for (int64_t e = 0; e < t.info.shape[0]; ++e)
        units.push_back({next++, &t, static_cast<int>(e)});
    } else if (nd == 2) {
      units.push_back({next++, &t, -1});
    } else {
      spdlog::warn("{}: {}-D tensor of role {} skipped", t.info.name, nd, RoleName(t.id.role));
    }
  }
  const int64_t model_units = static_cast<int64_t>(units.size());
  std::erase_if(units, [&](const Unit& u) {
    const int l = u.t->id.layer;
    return l < 0 ? shard.first != 0 : (l % shard.second) != shard.first;
  });

  // Groups: consecutive units of one (layer, role) of routed experts above the threshold.
  struct Group {
    size_t begin, end;
    bool clustered;
  };
  std::vector<Group> groups;
  for (size_t i = 0; i < units.size();) {
    const Unit& u = units[i];
    size_t j = i + 1;
    if (IsExpertRole(u.t->id.role)) {
      while (j < units.size() && units[j].t->id.layer == u.t->id.layer &&
             units[j].t->id.role == u.t->id.role && IsExpertRole(units[j].t->id.role))
        ++j;
    }
    const bool cl = !o.all_experts && static_cast<int64_t>(j - i) > o.cluster_threshold;
    if (cl) {
      groups.push_back({i, j, true});
    } else {
      for (size_t k = i; k < j; ++k) groups.push_back({k, k + 1, false});
    }
    i = j;
  }

  // Header: options that change results only, so that shards merge into an unsharded file.
  json grid_json = json::array();
  for (const GridConfig& g : grid) {
    json e = {{"format", g.spec}, {"bits", g.bits}, {"group_size", g.group_size}};
    if (data_aware) e["encoder"] = std::string(quant::EncoderName(g.encoder));
    grid_json.push_back(e);
  }
  json opts = {{"rank", o.rank},
               {"oversampling", o.oversampling},
               {"power_iterations", o.power_iterations},
               {"probes", o.probes},
               {"kurtosis_group", o.kurtosis_group},
               {"seed", o.seed},
               {"all_experts", o.all_experts},
               {"cluster_threshold", o.cluster_threshold},
               {"noise_format", "q4g64"},
               {"grid", grid_json}};
  if (data_aware || o.error != "weight") {
    json el = json::array();
    for (quant::EncoderKind e : *encoders) el.push_back(std::string(quant::EncoderName(e)));
    opts["encoders"] = el;
    opts["error"] = o.error;
    opts["encoder_options"] = {{"gptq_damp", o.gptq_damp},
                               {"gptq_block", o.gptq_block},
                               {"gptq_act_order", o.gptq_act_order},
                               {"weighted_steps", o.weighted_steps}};
  }
  if (!o.shard.empty())
    opts["shard"] = std::to_string(shard.first) + "/" + std::to_string(shard.second);
  json in = {{"model", o.model_dir},
             {"model_fingerprint", ck->fingerprint()},
             {"grid", grid_label},
             {"grid_sha256", grid_sha}};
  // The routing shape, so that moeq-allocate can weigh a routed expert by the share of tokens
  // that reach it (top_k / num_experts) without a routing profile.
  in["model_type"] = ck->config().model_type;
  in["num_experts"] = ck->config().num_experts;
  in["top_k"] = ck->config().top_k;
  if (act) {
    in["activation_stats"] = o.activation_stats;
    in["activation_stats_sha256"] = act->sha256();
  }
  ArtifactContext hctx = ctx;
  hctx.options = opts;
  hctx.command_line = "moeq-analyze " + o.model_dir;  // canonical: argv is logged, not recorded
  const json header =
      MakeArtifactHeader(artifacts::kSensitivitySchema, artifacts::kSensitivityVersion, hctx, in);

  OutputFile out, csv;
  MOEQ_RETURN_IF_ERROR(out.Open(o.output, ctx.force));
  MOEQ_RETURN_IF_ERROR(out.Write(artifacts::SensitivityLine(header) + "\n"));
  if (!o.csv.empty()) {
    MOEQ_RETURN_IF_ERROR(csv.Open(o.csv, ctx.force));
    MOEQ_RETURN_IF_ERROR(csv.Write(SensitivityCsvHeader()));
  }
  int64_t nrows = 0, analysed = 0;
  auto emit = [&](const std::vector<json>& rows) -> Status {
    for (const json& r : rows) {
      MOEQ_RETURN_IF_ERROR(out.Write(artifacts::SensitivityLine(r) + "\n"));
      if (!o.csv.empty()) MOEQ_RETURN_IF_ERROR(csv.Write(SensitivityCsvRow(r)));
      ++nrows;
    }
    return Status::Ok();
  };

  spdlog::info("analyzing {} of {} matrices of {} ({}; shard {}/{}; {} grid configs)", units.size(),
               model_units, o.model_dir, ck->config().model_type, shard.first, shard.second,
               grid.size());
  const auto t0 = std::chrono::steady_clock::now();
  const InputStatsFile* istats = nullptr;
  if (act && (data_aware || o.error == "activation")) {
    istats = act.get();
    if (std::find(encoders->begin(), encoders->end(), quant::EncoderKind::kGptq) !=
            encoders->end() &&
        !istats->has_gram()) {
      spdlog::warn(
          "{}: no Gram matrices (moeq-profile --gram); gptq uses the diagonal, which propagates no "
          "error (= rtn)",
          o.activation_stats);
    }
  }
  Analyzer az(o, *ck, grid, act.get(), istats, ctx.threads);
  std::unique_ptr<Progress> progress;
  if (ctx.progress)
    progress =
        std::make_unique<Progress>("analyze", static_cast<int64_t>(units.size()), "matrices");
  int64_t clusters_total = 0;
  for (const Group& g : groups) {
    if (!g.clustered) {
      const Unit& u = units[g.begin];
      MOEQ_ASSIGN_OR_RETURN(Analysis a, az.Analyze(u));
      MOEQ_RETURN_IF_ERROR(emit(az.Rows(u, a, nullptr)));
      ++analysed;
      if (progress) progress->Advance(1, u.t->info.name);
      continue;
    }
    const int n = static_cast<int>(g.end - g.begin);
    std::vector<std::array<double, 3>> raw(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      MOEQ_ASSIGN_OR_RETURN(raw[static_cast<size_t>(i)],
                            az.ClusterStats(units[g.begin + static_cast<size_t>(i)]));
    }
    const Unit& first = units[g.begin];
    if (first.slice >= 0) ck->Release(first.t->info.name);
    const std::string role(RoleName(first.t->id.role));
    const std::vector<ExpertCluster> clusters = ClusterExperts(
        raw, analyze::MixSeed(static_cast<uint64_t>(o.seed), "kmeans:" + role, first.t->id.layer));
    clusters_total += static_cast<int64_t>(clusters.size());
    std::vector<std::vector<json>> member_rows(static_cast<size_t>(n));
    for (const ExpertCluster& cluster : clusters) {
      const int c = cluster.id;
      const std::vector<int>& members = cluster.members;
      const int rep = cluster.representative;
      const Unit& ru = units[g.begin + static_cast<size_t>(rep)];
      MOEQ_ASSIGN_OR_RETURN(Analysis a, az.Analyze(ru));
      ++analysed;
      // Conservative aggregation (seed 001): per config the cluster's NRMSE is the max and its
      // SQNR the min over all members (their grids are measured; only the features are the
      // representative's), so no member is the weak link.
      json worst_by = json::object();
      for (size_t fi = 0; fi < a.formats.size(); ++fi) {
        if (a.formats[fi]) worst_by[EntryKey(*a.formats[fi], grid[fi].encoder)] = ru.expert();
      }
      for (int i : members) {
        if (i == rep) continue;
        const Unit& mu = units[g.begin + static_cast<size_t>(i)];
        MOEQ_ASSIGN_OR_RETURN(Analysis mg, az.Grid(mu));
        for (size_t fi = 0; fi < a.formats.size() && fi < mg.formats.size(); ++fi) {
          if (!a.formats[fi] || mg.formats[fi] != a.formats[fi]) continue;
          if (mg.Error(fi) > a.Error(fi)) {
            a.stats[fi] = mg.stats[fi];
            a.act[fi] = mg.act[fi];
            worst_by[EntryKey(*a.formats[fi], grid[fi].encoder)] = mu.expert();
          }
        }
      }
      json cl = {{"id", c}, {"representative", ru.expert()}, {"size", members.size()}};
      json mem = json::array();
      json bytes_by = json::object();
      for (int i : members) {
        const Unit& mu = units[g.begin + static_cast<size_t>(i)];
        mem.push_back(mu.expert());
        for (const quant::FormatTraits* f : a.formats) {
          if (!f) continue;
          auto b = f->StorageBytes(std::vector<int64_t>{mu.rows(), mu.cols()}, mu.t->info.dtype);
          const std::string fn(f->name);
          bytes_by[fn] = bytes_by.value(fn, uint64_t{0}) + (b.ok() ? *b : 0);
        }
      }
      cl["members"] = mem;
      cl["bytes_by_format"] = bytes_by;
      cl["worst_by_format"] = worst_by;
      for (int i : members) {
        const Unit& mu = units[g.begin + static_cast<size_t>(i)];
        json c2 = cl;
        const std::array<double, 3>& s = raw[static_cast<size_t>(i)];
        c2["member_stats"] = {{"frobenius", s[0]}, {"std", s[1]}, {"kurtosis", s[2]}};
        member_rows[static_cast<size_t>(i)] = az.Rows(mu, a, &c2);
      }
      if (progress) progress->Advance(static_cast<int64_t>(members.size()), ru.t->info.name);
    }
    for (const auto& rows : member_rows) MOEQ_RETURN_IF_ERROR(emit(rows));
  }
  if (progress) progress->Finish();
  MOEQ_RETURN_IF_ERROR(out.Commit());
  if (!o.csv.empty()) MOEQ_RETURN_IF_ERROR(csv.Commit());
  spdlog::info(
      "analyzed {} matrices ({} fully, {} k-means clusters) in {:.1f} s: {} rows written to {}{}",
      units.size(), analysed, clusters_total,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), nrows, o.output,
      o.csv.empty() ? "" : " and " + o.csv);
  return Status::Ok();
}

Status MergeSensitivityShards(const std::string& output, const std::vector<std::string>& inputs,
                              const ArtifactContext& ctx) {
  if (output.empty())
    return Status::InvalidArgument("merge: missing OUT (moeq-analyze merge OUT SHARD...)");
  if (inputs.empty())
    return Status::InvalidArgument("merge: no shard files given (moeq-analyze merge OUT SHARD...)");
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(output, inputs, ctx.force));
  struct Line {
    int64_t unit;
    size_t file, pos;
  };
  std::vector<std::vector<std::string>> files;
  std::vector<Line> lines;
  std::string ref_header_text, ref_path;
  json merged_header;
  int count = -1;
  std::vector<std::string> seen;
  for (size_t fi = 0; fi < inputs.size(); ++fi) {
    const std::string& path = inputs[fi];
    MOEQ_ASSIGN_OR_RETURN(artifacts::SensitivityArtifact file,
                          artifacts::ReadSensitivityFile(path));
    json& h = file.header;
    std::pair<int, int> sh{0, 1};
    if (h.contains("options") && h["options"].contains("shard")) {
      if (!h["options"]["shard"].is_string())
        return Status::Corruption(path + ": header field options.shard is not a string");
      auto r = ParseShardSpec(h["options"]["shard"].get<std::string>());
      if (!r.ok())
        return Status::Corruption(path + ": header field options.shard: " + r.status().message());
      sh = *r;
      h["options"].erase("shard");
    }
    const std::string ht = h.dump();
    if (fi == 0) {
      ref_header_text = ht;
      ref_path = path;
      merged_header = h;
      count = sh.second;
      seen.assign(static_cast<size_t>(count), "");
    } else {
      if (sh.second != count) {
        return Status::InvalidArgument(path + ": shard " + std::to_string(sh.first) + "/" +
                                       std::to_string(sh.second) + " is from a split into " +
                                       std::to_string(sh.second) + ", " + ref_path +
                                       " from one into " + std::to_string(count));
      }
      if (ht != ref_header_text) {
        std::string what = "options or producer";
        if (h["inputs"].value("model_fingerprint", "") !=
            merged_header["inputs"].value("model_fingerprint", ""))
          what = "model fingerprint";
        else if (h["options"] != merged_header["options"])
          what = "options";
        else if (h["inputs"] != merged_header["inputs"])
          what = "inputs";
        return Status::InvalidArgument(path + ": " + what + " differ from " + ref_path +
                                       "; shards must come from one analysis");
      }
    }
    std::string& s = seen[static_cast<size_t>(sh.first)];
    if (!s.empty())
      return Status::InvalidArgument(path + ": shard " + std::to_string(sh.first) + "/" +
                                     std::to_string(count) + " given twice (also " + s + ")");
    s = path;
    std::vector<std::string> rows;
    for (const artifacts::SensitivityRow& row : file.rows) {
      // The "unit" field orders rows across shards (rows of one unit stay in file order).
      if (row.unit < 0)
        return Status::Corruption(path + ": line " + std::to_string(row.line) +
                                  ": missing integer field 'unit'");
      lines.push_back({row.unit, fi, rows.size()});
      rows.push_back(artifacts::SensitivityLine(artifacts::SensitivityRowToJson(row)));
    }
    files.push_back(std::move(rows));
  }
  for (int i = 0; i < count; ++i) {
    if (seen[static_cast<size_t>(i)].empty()) {
      return Status::InvalidArgument("merge: shard " + std::to_string(i) + "/" +
                                     std::to_string(count) + " is missing");
    }
  }
  std::stable_sort(lines.begin(), lines.end(),
                   [](const Line& a, const Line& b) { return a.unit < b.unit; });
  OutputFile out;
  MOEQ_RETURN_IF_ERROR(out.Open(output, ctx.force));
  MOEQ_RETURN_IF_ERROR(out.Write(artifacts::SensitivityLine(merged_header) + "\n"));
  for (const Line& l : lines) MOEQ_RETURN_IF_ERROR(out.Write(files[l.file][l.pos] + "\n"));
  MOEQ_RETURN_IF_ERROR(out.Commit());
  spdlog::info("merged {} shards ({} rows) into {}", count, lines.size(), output);
  return Status::Ok();
}

}  // namespace moeq::sensitivity
