// Uniform-quantization error report over a whole checkpoint.
#include "moeq/report/quant_report.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>

#include "moeq/base/progress.h"
#include "moeq/quant/quantizer.h"

namespace moeq {
namespace {

// Coarse groups for the per-role breakdown.
std::string RoleGroup(TensorRole r) {
  if (IsExpertRole(r)) return "experts";
  if (IsSharedExpertRole(r)) return "shared_experts";
  if (r == TensorRole::kEmbedding || r == TensorRole::kLmHead) return "embeddings";
  if (r == TensorRole::kRouter) return "router";
  if (r == TensorRole::kMlpGate || r == TensorRole::kMlpUp || r == TensorRole::kMlpDown)
    return "dense_mlp";
  return "attention";
}

struct Acc {
  quant::ErrorStats stats;
  double min_sqnr = INFINITY;
  double sqnr_sum = 0;
  int64_t tensors = 0, unsafe = 0, kept = 0;
};

}  // namespace

std::vector<const quant::FormatTraits*> MintGridFormats() {
  std::vector<const quant::FormatTraits*> out;
  for (const char* spec : {"2,32", "3,64", "4,32", "4,64", "4,128", "8,64", "8,128", "16"}) {
    auto f = quant::ParseFormatSpec(spec);
    if (f.ok()) out.push_back(*f);
  }
  return out;
}

Result<nlohmann::json> QuantReport(const Checkpoint& ckpt, const QuantReportOptions& options) {
  const auto formats = options.formats.empty() ? MintGridFormats() : options.formats;
  std::vector<Acc> total(formats.size());
  std::vector<std::map<std::string, Acc>> by_group(formats.size());
  uint64_t fixed_bytes = 0, source_bytes = 0;
  int64_t params = 0, quantizable_params = 0;
  std::vector<const CheckpointTensor*> todo;
  for (const CheckpointTensor& t : ckpt.tensors()) {
    source_bytes += t.info.nbytes();
    params += t.info.numel();
    if (IsQuantizableRole(t.id.role) && t.info.shape.size() >= 2) {
      todo.push_back(&t);
      quantizable_params += t.info.numel();
    } else {
      fixed_bytes += t.info.nbytes();
    }
  }
  std::optional<Progress> progress;
  if (options.progress)
    progress.emplace("quant-report", static_cast<int64_t>(todo.size()), "tensors");
  for (const CheckpointTensor* t : todo) {
    MOEQ_ASSIGN_OR_RETURN(TensorView view, ckpt.View(t->info.name));
    MOEQ_RETURN_IF_ERROR(CheckFinite(view, ckpt.dir()));
    // Formats whose group does not divide the row length keep the tensor in 16-bit.
    std::vector<const quant::FormatTraits*> usable;
    std::vector<size_t> usable_index;
    for (size_t f = 0; f < formats.size(); ++f) {
      if (formats[f]->is_affine() && t->info.shape.back() % formats[f]->group_size != 0) continue;
      usable.push_back(formats[f]);
      usable_index.push_back(f);
    }
    MOEQ_ASSIGN_OR_RETURN(auto stats, quant::MeasureFormatErrors(view, usable, options.threads));
    std::vector<bool> done(formats.size(), false);
    for (size_t u = 0; u < usable.size(); ++u) {
      const size_t f = usable_index[u];
      done[f] = true;
      const double sqnr = stats[u].SqnrDb();
      for (Acc* a : {&total[f], &by_group[f][RoleGroup(t->id.role)]}) {
        a->stats.Merge(stats[u]);
        a->min_sqnr = std::min(a->min_sqnr, sqnr);
        a->sqnr_sum += sqnr;
        ++a->tensors;
        if (sqnr < options.sqnr_floor_db) ++a->unsafe;
      }
    }
    for (size_t f = 0; f < formats.size(); ++f) {
      if (done[f]) continue;
      for (Acc* a : {&total[f], &by_group[f][RoleGroup(t->id.role)]}) {
        ++a->kept;
        a->stats.storage_bytes += t->info.nbytes();
      }
    }
    ckpt.Release(t->info.name);
    if (progress) progress->Advance(1, t->info.name);
  }
  if (progress) progress->Finish();

  auto acc_json = [&](const Acc& a) {
    nlohmann::json j = {
        {"tensors", a.tensors},
        {"bytes", a.stats.storage_bytes},
        {"nrmse", a.stats.Nrmse()},
        {"sqnr_db", a.stats.SqnrDb()},
        {"min_tensor_sqnr_db", a.tensors ? a.min_sqnr : 0.0},
        {"mean_tensor_sqnr_db", a.tensors ? a.sqnr_sum / static_cast<double>(a.tensors) : 0.0},
        {"tensors_below_floor", a.unsafe}};
    if (a.kept) j["tensors_kept_16bit"] = a.kept;
    return j;
  };
  nlohmann::json rows = nlohmann::json::array();
  for (size_t f = 0; f < formats.size(); ++f) {
    const uint64_t bytes = total[f].stats.storage_bytes + fixed_bytes;
    nlohmann::json r = acc_json(total[f]);
    r["format"] = formats[f]->name;
    r["spec"] = quant::FormatSpec(*formats[f]);
    r["model_bytes"] = bytes;
    r["model_bpw"] = params ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0;
    r["quantized_bpw"] = quantizable_params
                             ? 8.0 * static_cast<double>(total[f].stats.storage_bytes) /
                                   static_cast<double>(quantizable_params)
                             : 0.0;
    nlohmann::json groups = nlohmann::json::object();
    for (const auto& [g, a] : by_group[f]) groups[g] = acc_json(a);
    r["by_group"] = groups;
    rows.push_back(std::move(r));
  }
  return nlohmann::json{{"model", ckpt.dir()},
                        {"model_fingerprint", ckpt.fingerprint()},
                        {"parameters", params},
                        {"quantizable_parameters", quantizable_params},
                        {"source_bytes", source_bytes},
                        {"fixed_bytes", fixed_bytes},
                        {"sqnr_floor_db", options.sqnr_floor_db},
                        {"formats", rows}};
}

std::string FormatQuantReportTable(const nlohmann::json& report) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-8s %12s %9s %9s %10s %10s %10s %8s  %s\n", "format", "bytes",
                "bpw", "q.bpw", "NRMSE", "SQNR dB", "min SQNR", "<floor",
                "experts NRMSE / attention NRMSE");
  out += line;
  const double source = report["source_bytes"].get<double>();
  for (const auto& r : report["formats"]) {
    auto group_nrmse = [&](const char* g) {
      return r["by_group"].contains(g) ? r["by_group"][g]["nrmse"].get<double>() : NAN;
    };
    std::snprintf(
        line, sizeof line,
        "%-8s %12llu %9.3f %9.3f %10.5f %10.2f %10.2f %8lld  %.5f / %.5f  (%.1f%% of source)\n",
        r["format"].get<std::string>().c_str(), r["model_bytes"].get<unsigned long long>(),
        r["model_bpw"].get<double>(), r["quantized_bpw"].get<double>(), r["nrmse"].get<double>(),
        r["sqnr_db"].get<double>(), r["min_tensor_sqnr_db"].get<double>(),
        r["tensors_below_floor"].get<long long>(), group_nrmse("experts"), group_nrmse("attention"),
        100.0 * r["model_bytes"].get<double>() / source);
    out += line;
  }
  return out;
}

}  // namespace moeq
