// Routing traces (JSONL): writing the engine's routing, and profiling from traces recorded by
// any runtime (docs/artifacts.md "Routing traces").
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "profile/routing_fold.h"

namespace moeq {
namespace internal {

Status TraceWriter::Open(const std::string& path, const nlohmann::json& header,
                         AtomicWriteOptions options) {
  MOEQ_ASSIGN_OR_RETURN(file_, AtomicFile::Create(path, options));
  f_ = file_->Stream();
  if (!f_)
    return Status::Io(file_->temp_path() + ": cannot open a stream: " + std::strerror(errno));
  return file_->Write(header.dump() + "\n");
}

void TraceWriter::WriteLine(int layer, int64_t token, int64_t top_k, const int32_t* experts,
                            const float* weights, const std::string& domain) {
  // %.9g round-trips a float exactly, so a profile of the trace reproduces the gate mass.
  std::fprintf(f_, "{\"layer\":%d,\"token\":%lld,\"experts\":[", layer,
               static_cast<long long>(token));
  for (int64_t j = 0; j < top_k; ++j) std::fprintf(f_, j ? ",%d" : "%d", experts[j]);
  std::fputs("],\"weights\":[", f_);
  for (int64_t j = 0; j < top_k; ++j)
    std::fprintf(f_, j ? ",%.9g" : "%.9g", static_cast<double>(weights[j]));
  std::fprintf(f_, "],\"domain\":%s}\n", nlohmann::json(domain).dump().c_str());
}

Status TraceWriter::Finish() {
  f_ = nullptr;
  Status s = file_->Commit();
  file_.reset();
  return s;
}

}  // namespace internal

namespace {

struct TraceRecord {
  int64_t token;
  int64_t line;
  int32_t file;
  int32_t domain;
  size_t offset;  // into ids / weights
};

}  // namespace

Result<RoutingProfile> ProfileRoutingTraces(const ModelConfig& config,
                                            std::span<const TraceInput> traces,
                                            const ProfileOptions& options) try {
  if (!config.is_moe())
    return Status::InvalidArgument("a dense model has no routing to read from a trace");
  if (traces.empty()) return Status::InvalidArgument("no routing trace given");
  const int64_t k = config.top_k, E = config.num_experts;
  std::vector<std::string> domains;
  std::vector<std::vector<bool>> file_domains(traces.size());  // [file][domain] has lines
  std::vector<std::vector<TraceRecord>> per_layer(static_cast<size_t>(config.num_layers));
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<std::string> sha(traces.size());
  for (size_t fi = 0; fi < traces.size(); ++fi) {
    const std::string& path = traces[fi].path;
    MOEQ_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    sha[fi] = Sha256Hex(std::string_view(text));
    size_t pos = 0;
    int64_t line_no = 0;
    bool first_line = true;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      const std::string where = path + ":" + std::to_string(line_no);
      MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(line, where));
      if (!j.is_object()) return Status::Corruption(where + ": not a JSON object");
      if (first_line && j.contains("schema")) {
        MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.routing_trace", 1, where));
        first_line = false;
        continue;
      }
      first_line = false;
      auto field_int = [&](const char* key, int64_t* out) -> Status {
        auto it = j.find(key);
        if (it == j.end()) return Status::Corruption(where + ": missing field '" + key + "'");
        if (!it->is_number_integer())
          return Status::Corruption(where + ": field '" + key + "' must be an integer, got " +
                                    JsonExcerpt(*it));
        *out = it->get<int64_t>();
        return Status::Ok();
      };
      int64_t layer = 0, token = 0;
      MOEQ_RETURN_IF_ERROR(field_int("layer", &layer));
      MOEQ_RETURN_IF_ERROR(field_int("token", &token));
      if (layer < 0 || layer >= config.num_layers) {
        return Status::Corruption(where + ": field 'layer': " + std::to_string(layer) +
                                  " is not a layer of the model (0.." +
                                  std::to_string(config.num_layers - 1) + ")");
      }
      if (!config.IsMoeLayer(layer)) {
        return Status::Corruption(where + ": field 'layer': layer " + std::to_string(layer) +
                                  " is not a MoE layer");
      }
      if (token < 0)
        return Status::Corruption(where + ": field 'token' must be >= 0, got " +
                                  std::to_string(token));
      auto ex = j.find("experts");
      if (ex == j.end()) return Status::Corruption(where + ": missing field 'experts'");
      if (!ex->is_array() || static_cast<int64_t>(ex->size()) != k) {
        return Status::Corruption(where + ": field 'experts' must be an array of top_k = " +
                                  std::to_string(k) + " expert ids, got " + JsonExcerpt(*ex));
      }
      auto wt = j.find("weights");
      if (wt == j.end()) return Status::Corruption(where + ": missing field 'weights'");
      if (!wt->is_array() || static_cast<int64_t>(wt->size()) != k) {
        return Status::Corruption(where + ": field 'weights' must be an array of " +
                                  std::to_string(k) + " numbers (one per expert), got " +
                                  JsonExcerpt(*wt));
      }
      const size_t off = ids.size();
      for (int64_t q = 0; q < k; ++q) {
        const auto& e = (*ex)[static_cast<size_t>(q)];
        if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() >= E) {
          return Status::Corruption(where + ": field 'experts': " + JsonExcerpt(e) +
                                    " is not an expert id in [0, " + std::to_string(E) + ")");
        }
        const auto id = static_cast<int32_t>(e.get<int64_t>());
        for (size_t r = off; r < ids.size(); ++r) {
          if (ids[r] == id)
            return Status::Corruption(where + ": field 'experts': expert " + std::to_string(id) +
                                      " listed twice");
        }
        const auto& w = (*wt)[static_cast<size_t>(q)];
        if (!w.is_number() || !std::isfinite(w.get<double>())) {
          return Status::Corruption(where + ": field 'weights': " + JsonExcerpt(w) +
                                    " is not a finite number");
        }
        ids.push_back(id);
        weights.push_back(static_cast<float>(w.get<double>()));
      }
      std::string domain_name = traces[fi].domain;
      if (auto d = j.find("domain"); d != j.end()) {
        if (!d->is_string() || d->get<std::string>().empty()) {
          return Status::Corruption(where + ": field 'domain' must be a non-empty string, got " +
                                    JsonExcerpt(*d));
        }
        domain_name = d->get<std::string>();
      }
      const auto domain = static_cast<int32_t>(internal::DomainIndex(&domains, domain_name));
      auto& fd = file_domains[fi];
      if (fd.size() <= static_cast<size_t>(domain))
        fd.resize(static_cast<size_t>(domain) + 1, false);
      fd[static_cast<size_t>(domain)] = true;
      per_layer[static_cast<size_t>(layer)].push_back(
          {token, line_no, static_cast<int32_t>(fi), domain, off});
    }
  }
  ProfileOptions po = options;
  po.context = 0;
  RoutingProfile prof = internal::MakeBlankProfile(config, domains, false, po);
  prof.source = "trace";
  prof.has_prob_mass = false;
  // Sources per domain.
  for (size_t fi = 0; fi < traces.size(); ++fi) {
    for (size_t d = 0; d < file_domains[fi].size(); ++d) {
      if (!file_domains[fi][d]) continue;
      prof.domains[d].sources.push_back(traces[fi].path);
      prof.domains[d].sha256.push_back(sha[fi]);
    }
  }
  internal::RoutingFolder folder(&prof);
  std::vector<std::vector<int64_t>> domain_tokens(static_cast<size_t>(config.num_layers),
                                                  std::vector<int64_t>(domains.size(), 0));
  for (size_t l = 0; l < per_layer.size(); ++l) {
    auto& recs = per_layer[l];
    std::stable_sort(recs.begin(), recs.end(), [](const TraceRecord& a, const TraceRecord& b) {
      return a.file != b.file ? a.file < b.file : a.token < b.token;
    });
    for (size_t r = 0; r < recs.size(); ++r) {
      if (r > 0 && recs[r].file == recs[r - 1].file && recs[r].token == recs[r - 1].token) {
        const std::string& path = traces[static_cast<size_t>(recs[r].file)].path;
        return Status::Corruption(path + ":" +
                                  std::to_string(std::max(recs[r].line, recs[r - 1].line)) +
                                  ": field 'token': token " + std::to_string(recs[r].token) +
                                  " of layer " + std::to_string(l) + " already given on line " +
                                  std::to_string(std::min(recs[r].line, recs[r - 1].line)));
      }
      folder.Add(static_cast<int>(l), recs[r].domain, 1, ids.data() + recs[r].offset,
                 weights.data() + recs[r].offset);
      ++domain_tokens[l][static_cast<size_t>(recs[r].domain)];
    }
    prof.layers[l].tokens = static_cast<int64_t>(recs.size());
    prof.tokens = std::max(prof.tokens, prof.layers[l].tokens);
  }
  if (prof.tokens == 0)
    return Status::InvalidArgument(traces[0].path + ": the routing trace has no routing lines");
  for (size_t d = 0; d < domains.size(); ++d) {
    for (size_t l = 0; l < per_layer.size(); ++l)
      prof.domains[d].tokens = std::max(prof.domains[d].tokens, domain_tokens[l][d]);
  }
  folder.Finish();
  return prof;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(std::string("routing trace") + ": " + JsonExceptionText(e));
}

}  // namespace moeq
