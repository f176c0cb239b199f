// The per-tensor analyzer of the sensitivity analysis (analyzer.h).
#include "sensitivity/analyzer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "moeq/artifacts/sensitivity.h"
#include "moeq/model/family.h"
#include "moeq/sensitivity/features.h"
#include "moeq/sensitivity/streamed_features.h"

namespace moeq::sensitivity {
namespace {

double Finite(double v) { return std::isfinite(v) ? v : (v > 0 ? 1e300 : -1e300); }

}  // namespace

std::string EntryKey(const quant::FormatTraits& f, quant::EncoderKind e) {
  return std::string(f.name) +
         (e == quant::EncoderKind::kRtn ? "" : "+" + std::string(quant::EncoderName(e)));
}

Analyzer::Analyzer(const AnalysisOptions& o, const Checkpoint& ck,
                   const std::vector<GridConfig>& grid, const InputStatsFile* act,
                   const InputStatsFile* istats, int threads)
    : o_(o), ck_(ck), grid_(grid), act_(act), istats_(istats), threads_(threads) {
  enc_.gptq_damp = o.gptq_damp;
  enc_.gptq_block = o.gptq_block;
  enc_.gptq_act_order = o.gptq_act_order;
  enc_.weighted_steps = o.weighted_steps;
  for (const GridConfig& g : grid) data_aware_ |= g.encoder != quant::EncoderKind::kRtn;
}

/// The per-expert (or plain) weight name of a unit, as the statistics file names it.
std::string Analyzer::StatsName(const Unit& u) const {
  if (u.slice < 0) return u.t->info.name;
  TensorRole r =
      u.t->id.role == TensorRole::kExpertDown ? TensorRole::kExpertDown : TensorRole::kExpertGate;
  return ck_.adapter().Name({u.t->id.layer, u.slice, r});
}

/// The tensor view of a unit (a slice of a fused tensor gets its own TensorInfo).
Result<TensorView> Analyzer::UnitView(const Unit& u, TensorInfo* slice_info) const {
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

Result<std::vector<float>> Analyzer::NormGamma(const Unit& u) const {
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
std::vector<float> Analyzer::ActScale(const Unit& u) const {
  if (!act_) return {};
  std::string wname = u.t->info.name;
  if (u.slice >= 0) {
    TensorRole r =
        u.t->id.role == TensorRole::kExpertDown ? TensorRole::kExpertDown : TensorRole::kExpertGate;
    wname = ck_.adapter().Name({u.t->id.layer, u.slice, r});
  }
  std::optional<std::vector<float>> f = act_->InSqMean(wname, u.cols());
  if (!f) {
    spdlog::debug("{}: no activation statistics '{}.in_sq_mean'", u.t->info.name, wname);
    return {};
  }
  std::vector<float> s = std::move(*f);
  for (float& x : s) x = std::sqrt(std::max(0.0f, x));
  return s;
}

Result<Analysis> Analyzer::Analyze(const Unit& u) const {
  TensorInfo slice_info;
  MOEQ_ASSIGN_OR_RETURN(TensorView view, UnitView(u, &slice_info));
  const int64_t rows = u.rows(), cols = u.cols();
  const std::string& name = u.t->info.name;
  MOEQ_ASSIGN_OR_RETURN(std::vector<float> w, ToF32(view));
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) {
      return Status::InvalidArgument(name + ": non-finite weight at row " +
                                     std::to_string(static_cast<int64_t>(i) / cols) + ", column " +
                                     std::to_string(static_cast<int64_t>(i) % cols) +
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
    MOEQ_ASSIGN_OR_RETURN(double na, analyze::internal::NoiseAmplificationRows(
                                         w, fetch, rows, cols, gamma, o_.probes, pseed, threads_));
    f["noise_amplification"] = na;
    const std::vector<float> as = ActScale(u);
    if (!as.empty()) {
      MOEQ_ASSIGN_OR_RETURN(double naa, analyze::internal::NoiseAmplificationRows(
                                            w, fetch, rows, cols, as, o_.probes, pseed, threads_));
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
Result<Analysis> Analyzer::Grid(const Unit& u) const {
  TensorInfo slice_info;
  MOEQ_ASSIGN_OR_RETURN(TensorView view, UnitView(u, &slice_info));
  Analysis a;
  MOEQ_RETURN_IF_ERROR(MeasureGrid(u, view, &a));
  if (u.slice < 0) ck_.Release(u.t->info.name);
  return a;
}

/// The rate-distortion grid: rtn weight errors in one pass over the weights; data-aware
/// encoders and activation-weighted errors encode, dequantize and measure per entry.
Status Analyzer::MeasureGrid(const Unit& u, const TensorView& view, Analysis* a) const {
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
Result<std::array<double, 3>> Analyzer::ClusterStats(const Unit& u) const {
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
std::vector<json> Analyzer::Rows(const Unit& u, const Analysis& a, const json* cluster) const {
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

}  // namespace moeq::sensitivity
