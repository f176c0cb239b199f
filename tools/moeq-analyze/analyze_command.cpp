// moeq-analyze: sensitivity.jsonl (features + rate-distortion grid) and the shard merge.
#include "moeq-analyze/analyze_command.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "moeq/artifacts/sensitivity.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/base/progress.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/formats/safetensors.h"
#include "moeq/model/family.h"
#include "moeq/quant/encoders.h"
#include "moeq/quant/input_stats.h"
#include "moeq/quant/quant_format.h"
#include "moeq/quant/quantizer.h"
#include "moeq/sensitivity/default_grid.h"
#include "moeq/sensitivity/streamed_features.h"

namespace moeq {
namespace {

using nlohmann::json;

/// A results file written through moeq::AtomicFile (unique temporary, renamed by Commit()).
class OutputFile {
 public:
  Status Open(const std::string& path, bool overwrite) {
    MOEQ_ASSIGN_OR_RETURN(file_, AtomicFile::Create(path, {.overwrite = overwrite}));
    if (!file_->Stream())
      return Status::Io(file_->temp_path() + ": cannot open a stream: " + std::strerror(errno));
    return Status::Ok();
  }
  Status Write(std::string_view s) { return file_->Write(s); }
  Status Commit() { return file_->Commit(); }

 private:
  std::unique_ptr<AtomicFile> file_;
};

struct GridConfig {
  std::string spec;
  int bits = 0;
  int group_size = 0;
  quant::EncoderKind encoder = quant::EncoderKind::kRtn;
  bool affine = false;
};

Result<std::vector<GridConfig>> GridFromJson(const json& j, const std::string& path);

/// The grid of --grid PATH, or the built-in one (configs/mint_grid.json compiled in) when `path`
/// is empty; `*label` and `*sha256` name it in the output header.
Result<std::vector<GridConfig>> LoadGrid(const std::string& path, std::string* label,
                                         std::string* sha256) {
  if (path.empty()) {
    *label = kDefaultMintGridLabel;
    *sha256 = Sha256Hex(std::string_view(kDefaultMintGridJson));
    json j;
    try {
      j = json::parse(kDefaultMintGridJson);
    } catch (const json::exception& e) {
      return Status::Internal(std::string("built-in grid: ") + e.what());
    }
    return GridFromJson(j, *label);
  }
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return Status::InvalidArgument("--grid " + path + ": no such file");
  *label = path;
  MOEQ_ASSIGN_OR_RETURN(*sha256, Sha256File(path));
  MOEQ_ASSIGN_OR_RETURN(json j, ReadJsonFile(path));
  return GridFromJson(j, path);
}

Result<std::vector<GridConfig>> GridFromJson(const json& j, const std::string& path) try {
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.mint_grid", 1, path));
  if (!j.contains("configs") || !j["configs"].is_array() || j["configs"].empty()) {
    return Status::InvalidArgument(path + ": 'configs' must be a non-empty array");
  }
  std::vector<GridConfig> grid;
  for (size_t i = 0; i < j["configs"].size(); ++i) {
    const json& c = j["configs"][i];
    const std::string where = path + ": configs[" + std::to_string(i) + "]";
    if (!c.is_object() || !c.contains("format") || !c["format"].is_string()) {
      return Status::InvalidArgument(where + ": missing string field 'format'");
    }
    GridConfig g;
    g.spec = c["format"].get<std::string>();
    auto f = quant::ParseFormatSpec(g.spec);
    if (!f.ok()) return Status::InvalidArgument(where + ": " + f.status().message());
    g.bits = (*f)->is_affine() ? (*f)->bits : ((*f)->bits == 32 ? 32 : 16);
    g.affine = (*f)->is_affine();
    g.group_size = (*f)->group_size;
    if (c.contains("bits") && (!c["bits"].is_number_integer() || c["bits"].get<int>() != g.bits)) {
      return Status::InvalidArgument(where + ": field 'bits' does not match format '" + g.spec +
                                     "'");
    }
    if (c.contains("group_size") &&
        (!c["group_size"].is_number_integer() || c["group_size"].get<int>() != g.group_size)) {
      return Status::InvalidArgument(where + ": field 'group_size' does not match format '" +
                                     g.spec + "'");
    }
    grid.push_back(g);
  }
  return grid;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(path + ": " + JsonExceptionText(e));
}

/// One analysed matrix: a 2-D tensor, or expert slice `slice` of a fused 3-D tensor.
struct Unit {
  int64_t index = 0;  ///< position in the whole model's unit list (all shards)
  const CheckpointTensor* t = nullptr;
  int slice = -1;
  int expert() const { return slice >= 0 ? slice : t->id.expert; }
  int64_t rows() const { return t->info.shape[t->info.shape.size() - 2]; }
  int64_t cols() const { return t->info.shape.back(); }
};

/// Everything a row needs besides the grid figures.
struct Analysis {
  json features = json::object();
  std::vector<const quant::FormatTraits*>
      formats;                           // parallel to the grid (nullptr: not applicable)
  std::vector<quant::ErrorStats> stats;  // parallel to the grid
  std::vector<std::optional<quant::WeightedError>> act;  // parallel to the grid (activation error)
  bool activation_error = false;                         // nrmse/sqnr_db rows report `act`
  /// The error the rows report for grid entry i.
  double Error(size_t i) const {
    return activation_error && act[i] ? act[i]->Relative() : stats[i].Nrmse();
  }
  double Sqnr(size_t i) const {
    return activation_error && act[i] ? act[i]->SqnrDb() : stats[i].SqnrDb();
  }
};

/// Key of a grid entry in cluster maps: the format name, "+encoder" for data-aware encoders.
std::string EntryKey(const quant::FormatTraits& f, quant::EncoderKind e) {
  return std::string(f.name) +
         (e == quant::EncoderKind::kRtn ? "" : "+" + std::string(quant::EncoderName(e)));
}

double Finite(double v) { return std::isfinite(v) ? v : (v > 0 ? 1e300 : -1e300); }

class Analyzer {
 public:
  Analyzer(const AnalyzeCommandOptions& o, const Checkpoint& ck,
           const std::vector<GridConfig>& grid, const SafetensorsFile* act,
           const InputStatsFile* istats, int threads)
      : o_(o), ck_(ck), grid_(grid), act_(act), istats_(istats), threads_(threads) {
    enc_.gptq_damp = o.gptq_damp;
    enc_.gptq_block = o.gptq_block;
    enc_.gptq_act_order = o.gptq_act_order;
    enc_.weighted_steps = o.weighted_steps;
    for (const GridConfig& g : grid) data_aware_ |= g.encoder != quant::EncoderKind::kRtn;
  }

  /// The per-expert (or plain) weight name of a unit, as the statistics file names it.
  std::string StatsName(const Unit& u) const {
    if (u.slice < 0) return u.t->info.name;
    TensorRole r =
        u.t->id.role == TensorRole::kExpertDown ? TensorRole::kExpertDown : TensorRole::kExpertGate;
    return ck_.adapter().Name({u.t->id.layer, u.slice, r});
  }

  /// The tensor view of a unit (a slice of a fused tensor gets its own TensorInfo).
  Result<TensorView> UnitView(const Unit& u, TensorInfo* slice_info) const {
    MOEQ_ASSIGN_OR_RETURN(TensorView v, ck_.View(u.t->info.name));
    if (u.slice < 0) return v;
    *slice_info = {u.t->info.name, u.t->info.dtype, {u.rows(), u.cols()}};
    const uint64_t bytes = slice_info->nbytes();
    TensorView s;
    s.info = slice_info;
    s.data = v.data.subspan(static_cast<size_t>(bytes * static_cast<uint64_t>(u.slice)),
                            static_cast<size_t>(bytes));
    return s;
  }

  Result<std::vector<float>> NormGamma(const Unit& u) const {
    const FamilyTraits* family = FindFamily(ck_.config().model_type);
    const std::optional<TensorRole> input_norm =
        family ? InputNormOf(*family, u.t->id.role) : std::nullopt;
    if (!input_norm) return std::vector<float>{};
    const TensorRole norm = *input_norm;
    const int layer = norm == TensorRole::kFinalNorm ? -1 : u.t->id.layer;
    const std::string name = ck_.adapter().Name({layer, -1, norm});
    const CheckpointTensor* nt = ck_.Find(name);
    if (!nt) {
      spdlog::debug("{}: norm {} not found; probes unscaled", u.t->info.name, name);
      return std::vector<float>{};
    }
    if (nt->info.numel() != u.cols()) {
      spdlog::warn("{}: norm {} has {} elements, the tensor {} inputs; probes unscaled",
                   u.t->info.name, name, nt->info.numel(), u.cols());
      return std::vector<float>{};
    }
    MOEQ_ASSIGN_OR_RETURN(TensorView v, ck_.View(name));
    return ToF32(v);
  }

  /// sqrt(in_sq_mean) of the unit's input from the activation statistics, or empty.
  std::vector<float> ActScale(const Unit& u) const {
    if (!act_) return {};
    std::string wname = u.t->info.name;
    if (u.slice >= 0) {
      TensorRole r = u.t->id.role == TensorRole::kExpertDown ? TensorRole::kExpertDown
                                                             : TensorRole::kExpertGate;
      wname = ck_.adapter().Name({u.t->id.layer, u.slice, r});
    }
    const std::string key = wname + ".in_sq_mean";
    auto v = act_->View(key);
    if (!v.ok() || v->numel() != u.cols()) {
      spdlog::debug("{}: no activation statistics '{}'", u.t->info.name, key);
      return {};
    }
    auto f = ToF32(*v);
    if (!f.ok()) return {};
    std::vector<float> s = std::move(*f);
    for (float& x : s) x = std::sqrt(std::max(0.0f, x));
    return s;
  }

  Result<Analysis> Analyze(const Unit& u) const {
    TensorInfo slice_info;
    MOEQ_ASSIGN_OR_RETURN(TensorView view, UnitView(u, &slice_info));
    const int64_t rows = u.rows(), cols = u.cols();
    const std::string& name = u.t->info.name;
    MOEQ_ASSIGN_OR_RETURN(std::vector<float> w, ToF32(view));
    for (size_t i = 0; i < w.size(); ++i) {
      if (!std::isfinite(w[i])) {
        return Status::InvalidArgument(
            name + ": non-finite weight at row " + std::to_string(static_cast<int64_t>(i) / cols) +
            ", column " + std::to_string(static_cast<int64_t>(i) % cols) +
            (u.slice >= 0 ? " of expert " + std::to_string(u.slice) : ""));
      }
    }
    Analysis a;
    const uint64_t seed = analyze::MixSeed(static_cast<uint64_t>(o_.seed), name, u.slice);
    analyze::SpectralOptions so{o_.rank, o_.oversampling, o_.power_iterations, seed};
    const analyze::SpectralFeatures sp = analyze::ComputeSpectral(w, rows, cols, so, threads_);
    const analyze::DistributionFeatures di =
        analyze::ComputeDistribution(w, rows, cols, o_.kurtosis_group, threads_);
    json& f = a.features;
    f["stable_rank"] = sp.stable_rank;
    f["tail_mass"] = sp.tail_mass;
    f["log_spectral_spread"] = sp.log_spectral_spread;
    f["sigma_max"] = sp.sigma_max;
    f["svd_rank"] = sp.k;
    f["frobenius"] = sp.frobenius;
    f["std"] = di.std;
    f["kurtosis"] = di.kurtosis;
    f["group_kurtosis_p90"] = di.group_p90;
    f["group_kurtosis_p99_minus_p50"] = di.group_p99_minus_p50;
    f["outlier_group_fraction"] = di.outlier_group_fraction;
    f["group_kurtosis_max_minus_median"] = di.group_max_minus_median;
    // Noise amplification of the 4-bit g64 RTN residual.
    const quant::FormatTraits* q4 = quant::FindAffineFormat(4, 64);
    if (q4 && cols % 64 == 0) {
      MOEQ_ASSIGN_OR_RETURN(
          quant::QuantizedTensor q,
          quant::QuantizeAffine(w, rows, cols, 4, 64, q4->ScaleDType(view.info->dtype), threads_));
      auto fetch = [&q](int64_t first, int64_t n, std::span<float> out) {
        return quant::DequantizeRows(q, first, n, out);
      };
      MOEQ_ASSIGN_OR_RETURN(std::vector<float> gamma, NormGamma(u));
      const uint64_t pseed =
          analyze::MixSeed(static_cast<uint64_t>(o_.seed), name, 1000003 + u.slice);
      MOEQ_ASSIGN_OR_RETURN(double na,
                            analyze::internal::NoiseAmplificationRows(w, fetch, rows, cols, gamma,
                                                                      o_.probes, pseed, threads_));
      f["noise_amplification"] = na;
      const std::vector<float> as = ActScale(u);
      if (!as.empty()) {
        MOEQ_ASSIGN_OR_RETURN(
            double naa, analyze::internal::NoiseAmplificationRows(w, fetch, rows, cols, as,
                                                                  o_.probes, pseed, threads_));
        f["noise_amplification_act"] = naa;
      }
    }
    for (auto it = f.begin(); it != f.end(); ++it) {
      if (it->is_number_float()) *it = Finite(it->get<double>());
    }
    w = {};
    MOEQ_RETURN_IF_ERROR(MeasureGrid(u, view, &a));
    ck_.Release(name);
    return a;
  }

  /// Only the rate-distortion grid of a unit (formats and stats; no features): what a cluster
  /// member that is not its representative costs, for the conservative aggregation.
  Result<Analysis> Grid(const Unit& u) const {
    TensorInfo slice_info;
    MOEQ_ASSIGN_OR_RETURN(TensorView view, UnitView(u, &slice_info));
    Analysis a;
    MOEQ_RETURN_IF_ERROR(MeasureGrid(u, view, &a));
    if (u.slice < 0) ck_.Release(u.t->info.name);
    return a;
  }

  /// The rate-distortion grid: rtn weight errors in one pass over the weights; data-aware
  /// encoders and activation-weighted errors encode, dequantize and measure per entry.
  Status MeasureGrid(const Unit& u, const TensorView& view, Analysis* a) const {
    std::vector<const quant::FormatTraits*> fmts;
    a->formats.assign(grid_.size(), nullptr);
    a->act.assign(grid_.size(), std::nullopt);
    a->activation_error = o_.error == "activation";
    std::optional<quant::InputStats> st;
    if (istats_ && (data_aware_ || a->activation_error)) {
      MOEQ_ASSIGN_OR_RETURN(st, istats_->Get(StatsName(u), u.cols()));
    }
    std::vector<size_t> rtn_entries;
    for (size_t i = 0; i < grid_.size(); ++i) {
      auto fr = quant::ParseFormatSpec(grid_[i].spec, view.info->dtype);
      if (!fr.ok()) continue;
      if (!(*fr)->StorageBytes(view.info->shape, view.info->dtype).ok()) continue;
      // A data-aware encoder without the statistics it needs would repeat the rtn row.
      if (quant::EffectiveEncoder(grid_[i].encoder, st ? &*st : nullptr) != grid_[i].encoder)
        continue;
      a->formats[i] = *fr;
      if (grid_[i].encoder == quant::EncoderKind::kRtn) {
        fmts.push_back(*fr);
        rtn_entries.push_back(i);
      }
    }
    MOEQ_ASSIGN_OR_RETURN(std::vector<quant::ErrorStats> rs,
                          quant::MeasureFormatErrors(view, fmts, threads_));
    a->stats.resize(grid_.size());
    for (size_t j = 0; j < rtn_entries.size(); ++j) a->stats[rtn_entries[j]] = rs[j];
    const bool need_act = st && a->activation_error;
    if (!data_aware_ && !need_act) return Status::Ok();
    const int64_t rows = u.rows(), cols = u.cols();
    MOEQ_ASSIGN_OR_RETURN(std::vector<float> w, ToF32(view));
    for (size_t i = 0; i < grid_.size(); ++i) {
      const quant::FormatTraits* f = a->formats[i];
      if (!f || !f->is_affine()) continue;
      const bool rtn = grid_[i].encoder == quant::EncoderKind::kRtn;
      if (rtn && !need_act) continue;
      quant::EncoderOptions eo = enc_;
      eo.kind = grid_[i].encoder;
      MOEQ_ASSIGN_OR_RETURN(quant::QuantizedTensor q,
                            quant::EncodeAffine(w, rows, cols, *f, f->ScaleDType(view.info->dtype),
                                                eo, st ? &*st : nullptr, threads_));
      MOEQ_ASSIGN_OR_RETURN(std::vector<float> wh, quant::Dequantize(q, threads_));
      if (!rtn) {
        quant::ErrorStats es = quant::CompareTensors(w, wh);
        es.storage_bytes = q.nbytes();
        a->stats[i] = es;
      }
      if (need_act) {
        MOEQ_ASSIGN_OR_RETURN(quant::WeightedError we,
                              quant::MeasureWeightedError(w, wh, rows, cols, *st, threads_));
        a->act[i] = we;
      }
    }
    return Status::Ok();
  }

  /// (frobenius, std, kurtosis) of a unit, for clustering.
  Result<std::array<double, 3>> ClusterStats(const Unit& u) const {
    TensorInfo slice_info;
    MOEQ_ASSIGN_OR_RETURN(TensorView view, UnitView(u, &slice_info));
    MOEQ_ASSIGN_OR_RETURN(std::vector<float> w, ToF32(view));
    const analyze::DistributionFeatures d =
        analyze::ComputeDistribution(w, u.rows(), u.cols(), static_cast<int>(u.cols()), threads_);
    const double n = static_cast<double>(w.size());
    const double frob = std::sqrt(n * (d.std * d.std + d.mean * d.mean));
    if (u.slice < 0) ck_.Release(u.t->info.name);
    return std::array<double, 3>{frob, d.std, d.kurtosis};
  }

  /// The JSON rows of one unit.
  std::vector<json> Rows(const Unit& u, const Analysis& a, const json* cluster) const {
    std::vector<json> out;
    const TensorInfo& info = u.t->info;
    std::vector<int64_t> shape = info.shape;
    if (u.slice >= 0) shape = {u.rows(), u.cols()};
    for (size_t i = 0; i < grid_.size(); ++i) {
      const quant::FormatTraits* fmt = a.formats[i];
      if (!fmt) continue;
      artifacts::SensitivityRow r;
      r.tensor = info.name;
      r.role = std::string(RoleName(u.t->id.role));
      r.layer = u.t->id.layer;
      r.expert = u.expert();
      r.unit = static_cast<int64_t>(u.index);
      r.shape = shape;
      if (u.slice >= 0) r.fused_shape = info.shape;
      r.params = u.rows() * u.cols();
      r.dtype = std::string(DTypeName(info.dtype));
      r.format = std::string(fmt->name);
      r.bits = grid_[i].bits;
      r.group_size = grid_[i].group_size;
      auto bytes = fmt->StorageBytes(shape, info.dtype);
      r.bytes = bytes.ok() ? *bytes : 0;
      r.nrmse = Finite(a.Error(i));
      r.sqnr_db = Finite(a.Sqnr(i));
      if (data_aware_ || a.activation_error) {
        r.encoder = std::string(quant::EncoderName(grid_[i].encoder));
        r.error = a.activation_error && a.act[i] ? "activation" : "weight";
        r.weight_nrmse = Finite(a.stats[i].Nrmse());
      }
      r.features = a.features;
      if (cluster) {
        json c = *cluster;
        if (c.contains("bytes_by_format")) {
          c["bytes"] = c["bytes_by_format"][std::string(fmt->name)];
          c.erase("bytes_by_format");
        }
        if (c.contains("worst_by_format")) {
          c["worst_member"] = c["worst_by_format"][EntryKey(*fmt, grid_[i].encoder)];
          c.erase("worst_by_format");
        }
        r.cluster = c;
      }
      out.push_back(artifacts::SensitivityRowToJson(r));
    }
    return out;
  }

 private:
  const AnalyzeCommandOptions& o_;
  const Checkpoint& ck_;
  const std::vector<GridConfig>& grid_;
  const SafetensorsFile* act_;
  const InputStatsFile* istats_;
  int threads_;
  quant::EncoderOptions enc_;
  bool data_aware_ = false;
};

std::string CsvField(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  if (v.is_array()) {
    std::string s = "\"";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "x" : "") + v[i].dump();
    return s + "\"";
  }
  return v.dump();  // numbers: shortest round-trip representation
}

const std::vector<std::string>& CsvFeatureColumns() { return artifacts::SensitivityFeatureNames(); }

std::string CsvHeader() {
  std::string s =
      "tensor,role,layer,expert,unit,shape,params,dtype,format,encoder,bits,group_size,bytes,nrmse,"
      "sqnr_db";
  for (const auto& c : CsvFeatureColumns()) s += "," + c;
  return s + ",cluster_id,cluster_representative,cluster_size\n";
}

std::string CsvRow(const json& r) {
  std::string s;
  for (const char* k : {"tensor", "role", "layer", "expert", "unit", "shape", "params", "dtype",
                        "format", "encoder", "bits", "group_size", "bytes", "nrmse", "sqnr_db"}) {
    if (!s.empty()) s += ',';
    // Rows of a grid without data-aware encoders carry no "encoder": their codes are rtn.
    const std::string_view key(k);
    s += CsvField(key == "encoder" && !r.contains("encoder") ? json("rtn") : r.value(k, json()));
  }
  const json& f = r["features"];
  for (const auto& c : CsvFeatureColumns()) s += "," + CsvField(f.value(c, json()));
  if (r.contains("cluster")) {
    const json& c = r["cluster"];
    s += "," + CsvField(c["id"]) + "," + CsvField(c["representative"]) + "," +
         std::to_string(c["members"].size());
  } else {
    s += ",,,";
  }
  return s + "\n";
}

bool IsClusterable(TensorRole r) { return IsExpertRole(r); }

}  // namespace

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

Status RunAnalyze(const AnalyzeCommandOptions& o, const ArtifactContext& ctx) {
  if (o.model_dir.empty())
    return Status::InvalidArgument(
        "missing MODEL directory (moeq-analyze MODEL -o sensitivity.jsonl)");
  if (o.output.empty()) return Status::InvalidArgument("--output: empty path");
  if (o.rank < 1)
    return Status::InvalidArgument("--rank " + std::to_string(o.rank) + ": must be at least 1");
  if (o.oversampling < 0) return Status::InvalidArgument("--oversampling: must be >= 0");
  if (o.power_iterations < 0 || o.power_iterations > 20)
    return Status::InvalidArgument("--power-iterations: must be in [0, 20]");
  if (o.probes < 1 || o.probes > 4096)
    return Status::InvalidArgument("--probes: must be in [1, 4096]");
  if (o.kurtosis_group < 4) return Status::InvalidArgument("--kurtosis-group: must be at least 4");
  if (o.cluster_threshold < 1)
    return Status::InvalidArgument("--cluster-threshold: must be at least 1");
  std::pair<int, int> shard{0, 1};
  if (!o.shard.empty()) {
    MOEQ_ASSIGN_OR_RETURN(shard, ParseShardSpec(o.shard));
  }
  std::string grid_label, grid_sha;
  MOEQ_ASSIGN_OR_RETURN(std::vector<GridConfig> grid, LoadGrid(o.grid, &grid_label, &grid_sha));
  auto encoders = quant::ParseEncoderList(o.encoders);
  if (!encoders.ok()) return Status::InvalidArgument("--encoders: " + encoders.status().message());
  const bool data_aware = *encoders != std::vector<quant::EncoderKind>{quant::EncoderKind::kRtn};
  if (o.error != "weight" && o.error != "activation") {
    return Status::InvalidArgument("--error '" + o.error + "': expected weight or activation");
  }
  if ((data_aware || o.error == "activation") && o.activation_stats.empty()) {
    return Status::InvalidArgument(
        std::string(data_aware ? "--encoders " + o.encoders : "--error activation") +
        " needs --activation-stats FILE (moeq-profile --activation-stats, with --gram for gptq)");
  }
  if (o.gptq_damp < 0 || o.gptq_block < 1 || o.weighted_steps < 0) {
    return Status::InvalidArgument(
        "--gptq-damp must be >= 0, --gptq-block >= 1, --weighted-steps >= 0");
  }
  {
    // The grid becomes format × encoder: every affine config once per encoder, float configs once.
    std::vector<GridConfig> expanded;
    for (const GridConfig& g : grid) {
      for (quant::EncoderKind e : *encoders) {
        if (!g.affine && e != quant::EncoderKind::kRtn) continue;
        GridConfig x = g;
        x.encoder = e;
        expanded.push_back(x);
      }
      if (!g.affine && std::find(encoders->begin(), encoders->end(), quant::EncoderKind::kRtn) ==
                           encoders->end()) {
        expanded.push_back(g);
      }
    }
    grid = std::move(expanded);
  }
  const std::vector<std::string> inputs = {o.model_dir, o.grid, o.activation_stats};
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, inputs, ctx.force));
  if (!o.csv.empty()) MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.csv, inputs, ctx.force));
  MOEQ_ASSIGN_OR_RETURN(auto ck, Checkpoint::Open(o.model_dir));
  std::unique_ptr<SafetensorsFile> act;
  if (!o.activation_stats.empty()) {
    MOEQ_ASSIGN_OR_RETURN(act, SafetensorsFile::Open(o.activation_stats));
    auto it = act->metadata().find("moeq_schema");
    if (it == act->metadata().end() || it->second != "moeq.activation_stats") {
      return Status::InvalidArgument(o.activation_stats +
                                     ": not an activation statistics file (metadata moeq_schema is "
                                     "not 'moeq.activation_stats')");
    }
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
    if (IsClusterable(u.t->id.role)) {
      while (j < units.size() && units[j].t->id.layer == u.t->id.layer &&
             units[j].t->id.role == u.t->id.role && IsClusterable(units[j].t->id.role))
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
    MOEQ_ASSIGN_OR_RETURN(std::string act_sha, Sha256File(o.activation_stats));
    in["activation_stats"] = o.activation_stats;
    in["activation_stats_sha256"] = act_sha;
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
    MOEQ_RETURN_IF_ERROR(csv.Write(CsvHeader()));
  }
  int64_t nrows = 0, analysed = 0;
  auto emit = [&](const std::vector<json>& rows) -> Status {
    for (const json& r : rows) {
      MOEQ_RETURN_IF_ERROR(out.Write(artifacts::SensitivityLine(r) + "\n"));
      if (!o.csv.empty()) MOEQ_RETURN_IF_ERROR(csv.Write(CsvRow(r)));
      ++nrows;
    }
    return Status::Ok();
  };

  spdlog::info("analyzing {} of {} matrices of {} ({}; shard {}/{}; {} grid configs)", units.size(),
               model_units, o.model_dir, ck->config().model_type, shard.first, shard.second,
               grid.size());
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<InputStatsFile> istats;
  if (act && (data_aware || o.error == "activation")) {
    MOEQ_ASSIGN_OR_RETURN(istats, InputStatsFile::Open(o.activation_stats));
    if (std::find(encoders->begin(), encoders->end(), quant::EncoderKind::kGptq) !=
            encoders->end() &&
        !istats->has_gram()) {
      spdlog::warn(
          "{}: no Gram matrices (moeq-profile --gram); gptq uses the diagonal, which propagates no "
          "error (= rtn)",
          o.activation_stats);
    }
  }
  Analyzer az(o, *ck, grid, act.get(), istats.get(), ctx.threads);
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
    // k-means on standardised (frobenius, std, kurtosis).
    const int n = static_cast<int>(g.end - g.begin);
    std::vector<double> pts(static_cast<size_t>(n) * 3);
    for (int i = 0; i < n; ++i) {
      MOEQ_ASSIGN_OR_RETURN(auto s, az.ClusterStats(units[g.begin + static_cast<size_t>(i)]));
      for (int d = 0; d < 3; ++d) pts[static_cast<size_t>(i * 3 + d)] = s[static_cast<size_t>(d)];
    }
    const Unit& first = units[g.begin];
    if (first.slice >= 0) ck->Release(first.t->info.name);
    std::vector<double> raw = pts;
    for (int d = 0; d < 3; ++d) {
      double m = 0, v = 0;
      for (int i = 0; i < n; ++i) m += pts[static_cast<size_t>(i * 3 + d)];
      m /= n;
      for (int i = 0; i < n; ++i) v += std::pow(pts[static_cast<size_t>(i * 3 + d)] - m, 2);
      const double sd = std::sqrt(v / n);
      for (int i = 0; i < n; ++i) {
        double& x = pts[static_cast<size_t>(i * 3 + d)];
        x = sd > 0 ? (x - m) / sd : 0.0;
      }
    }
    const int k = std::min(n, std::clamp(n / 8, 8, 16));
    const std::string role(RoleName(first.t->id.role));
    const std::vector<int> label = analyze::KMeans(
        pts, n, 3, k,
        analyze::MixSeed(static_cast<uint64_t>(o.seed), "kmeans:" + role, first.t->id.layer));
    const int nc = *std::max_element(label.begin(), label.end()) + 1;
    clusters_total += nc;
    std::vector<std::vector<json>> member_rows(static_cast<size_t>(n));
    for (int c = 0; c < nc; ++c) {
      std::vector<int> members;
      std::array<double, 3> cen{0, 0, 0};
      for (int i = 0; i < n; ++i) {
        if (label[static_cast<size_t>(i)] != c) continue;
        members.push_back(i);
        for (int d = 0; d < 3; ++d)
          cen[static_cast<size_t>(d)] += pts[static_cast<size_t>(i * 3 + d)];
      }
      for (double& x : cen) x /= static_cast<double>(members.size());
      int rep = members[0];
      double best = 1e300;
      for (int i : members) {
        double dd = 0;
        for (int d = 0; d < 3; ++d)
          dd += std::pow(pts[static_cast<size_t>(i * 3 + d)] - cen[static_cast<size_t>(d)], 2);
        if (dd < best) {
          best = dd;
          rep = i;
        }
      }
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
        c2["member_stats"] = {{"frobenius", raw[static_cast<size_t>(i * 3)]},
                              {"std", raw[static_cast<size_t>(i * 3 + 1)]},
                              {"kurtosis", raw[static_cast<size_t>(i * 3 + 2)]}};
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

Status RunAnalyzeMerge(const AnalyzeMergeOptions& o, const ArtifactContext& ctx) {
  if (o.output.empty())
    return Status::InvalidArgument("merge: missing OUT (moeq-analyze merge OUT SHARD...)");
  if (o.inputs.empty())
    return Status::InvalidArgument("merge: no shard files given (moeq-analyze merge OUT SHARD...)");
  MOEQ_RETURN_IF_ERROR(CheckOutputPath(o.output, o.inputs, ctx.force));
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
  for (size_t fi = 0; fi < o.inputs.size(); ++fi) {
    const std::string& path = o.inputs[fi];
    MOEQ_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    std::vector<std::string> ls;
    std::istringstream is(text);
    for (std::string l; std::getline(is, l);) {
      if (!l.empty()) ls.push_back(std::move(l));
    }
    if (ls.empty())
      return Status::Corruption(path + ": empty file, expected a moeq.sensitivity header line");
    MOEQ_ASSIGN_OR_RETURN(json h, ParseJson(ls[0], path + ": line 1"));
    MOEQ_RETURN_IF_ERROR(artifacts::CheckSensitivityHeader(h, path));
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
    for (size_t li = 1; li < ls.size(); ++li) {
      // The "unit" field orders rows across shards (rows of one unit stay in file order).
      const int line_no = static_cast<int>(li + 1);
      MOEQ_ASSIGN_OR_RETURN(json j, ParseJson(ls[li], path + ":" + std::to_string(line_no)));
      MOEQ_ASSIGN_OR_RETURN(artifacts::SensitivityRow row,
                            artifacts::ParseSensitivityRow(j, path, line_no));
      if (row.unit < 0)
        return Status::Corruption(path + ": line " + std::to_string(line_no) +
                                  ": missing integer field 'unit'");
      lines.push_back({row.unit, fi, rows.size()});
      rows.push_back(artifacts::SensitivityLine(artifacts::SensitivityRowToJson(row)));
    }
    ls = std::move(rows);
    files.push_back(std::move(ls));
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
  MOEQ_RETURN_IF_ERROR(out.Open(o.output, ctx.force));
  MOEQ_RETURN_IF_ERROR(out.Write(artifacts::SensitivityLine(merged_header) + "\n"));
  for (const Line& l : lines) MOEQ_RETURN_IF_ERROR(out.Write(files[l.file][l.pos] + "\n"));
  MOEQ_RETURN_IF_ERROR(out.Commit());
  spdlog::info("merged {} shards ({} rows) into {}", count, lines.size(), o.output);
  return Status::Ok();
}

}  // namespace moeq
