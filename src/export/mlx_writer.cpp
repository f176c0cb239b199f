// WriteMlxCheckpoint: a quantized checkpoint in MLX's layout (docs/quantized-format.md).
//
// Every output tensor ("module") is built from pieces: whole source tensors (per-expert layout,
// stacked per-expert experts) or row ranges of a fused [E, out, in] source (gate_up halves).
// Affine quantization is row-local, so quantizing piece by piece gives exactly the bytes of
// quantizing the stacked tensor at once. Modules are quantized and written one at a time
// through a writer whose layout was declared up front; source pages are released after each.
#include "moeq/export/mlx_writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "moeq/base/file_util.h"
#include "moeq/base/half.h"
#include "moeq/base/parallel.h"
#include "moeq/base/progress.h"
#include "moeq/formats/safetensors.h"
#include "moeq/model/mlx_names.h"
#include "moeq/quant/input_stats.h"
#include "moeq/quant/quantizer.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

/// Rows [first_row, first_row + rows) of a source tensor viewed as [rows_total, in]; `zero`
/// writes zeros instead (a pruned expert).
struct Piece {
  const CheckpointTensor* src = nullptr;
  int64_t first_row = 0;
  int64_t rows = 0;
  bool zero = false;
};

struct Module {
  std::string weight_name;  ///< logical tensor name ("X.weight")
  std::string module;       ///< X (weight_name without ".weight"); "" for other names
  std::vector<int64_t> shape;
  DType source_dtype = DType::kBF16;
  /// nullptr: stored verbatim in the source dtype.
  const quant::FormatTraits* format = nullptr;
  std::vector<Piece> pieces;
  TensorId id;
  bool stacked = false;
  bool quantizable =
      false;  ///< role that mlx-lm could quantize (gets `false` in config when float)
  // Stacked modules: formats the plan gave the experts, and how many were raised to `format`.
  std::map<std::string, int> expert_formats;
  int promoted = 0;
  int pruned = 0;

  bool affine() const { return format != nullptr && format->is_affine(); }
  /// Element type of a float output.
  DType out_dtype() const { return format != nullptr ? format->float_dtype : source_dtype; }
};

constexpr std::string_view kWeightSuffix = ".weight";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

/// Higher is more precise: float formats (and verbatim) above every affine one; among affine
/// formats more bits, then smaller groups.
int Precision(const quant::FormatTraits* f) {
  if (f == nullptr || !f->is_affine()) return 1'000'000;
  return f->bits * 1000 - f->group_size;
}

std::string FormatLabel(const quant::FormatTraits* f, DType source) {
  if (f != nullptr) return std::string(f->name);
  switch (source) {
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
    case DType::kF32:
      return "f32";
    default:
      return std::string(DTypeName(source));
  }
}

/// The format a pruned per-expert tensor is written in: the plan's own affine format for it,
/// else the lowest affine format of the plan that fits the shape, else its source dtype.
const quant::FormatTraits* PrunedFormat(const QuantPlan& plan, const CheckpointTensor& t) {
  const quant::FormatTraits* own = plan.FormatOf(t.info.name);
  if (own != nullptr && own->is_affine()) return own;
  const quant::FormatTraits* lowest = nullptr;
  for (const auto& [name, f] : plan.formats) {
    if (!f->is_affine() || t.info.shape.back() % f->group_size != 0) continue;
    if (lowest == nullptr || Precision(f) < Precision(lowest)) lowest = f;
  }
  return lowest != nullptr ? lowest : own;
}

int64_t RowsOf(const std::vector<int64_t>& shape) {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

/// Builds the list of output modules in checkpoint order.
Result<std::vector<Module>> PlanModules(const Checkpoint& ckpt, const QuantPlan& plan,
                                        bool stacked) {
  std::vector<Module> modules;
  std::map<std::string, size_t> stacked_index;  // stacked weight name -> index into modules
  const ArchAdapter& adapter = ckpt.adapter();
  for (const CheckpointTensor& t : ckpt.tensors()) {
    const bool expert =
        t.id.role == TensorRole::kExpertGate || t.id.role == TensorRole::kExpertUp ||
        t.id.role == TensorRole::kExpertDown || t.id.role == TensorRole::kExpertGateUp;
    const bool to_stack = expert && (stacked || t.fused_experts);
    const bool pruned = plan.pruned.count(t.info.name) > 0;
    const quant::FormatTraits* fmt = pruned ? PrunedFormat(plan, t) : plan.FormatOf(t.info.name);
    if (!to_stack) {
      Module m;
      m.weight_name = t.info.name;
      if (EndsWith(t.info.name, kWeightSuffix))
        m.module = t.info.name.substr(0, t.info.name.size() - kWeightSuffix.size());
      m.shape = t.info.shape;
      m.source_dtype = t.info.dtype;
      m.format = fmt;
      m.id = t.id;
      m.quantizable = IsQuantizableRole(t.id.role) && !m.module.empty() && t.info.shape.size() >= 2;
      m.pieces.push_back({&t, 0, RowsOf(t.info.shape), pruned});
      m.pruned = pruned ? 1 : 0;
      if (m.affine() && m.module.empty()) {
        return Status::Unsupported(
            ckpt.dir() + ": tensor '" + t.info.name +
            "': MLX stores quantized modules as '<module>.weight'; this name has no '.weight'");
      }
      modules.push_back(std::move(m));
      continue;
    }
    // Experts stacked into switch_mlp [E, out, in]: one module per (layer, projection).
    const int64_t E = ckpt.config().num_experts;
    std::vector<TensorRole> roles;
    if (t.id.role == TensorRole::kExpertGateUp) {
      roles = {TensorRole::kExpertGate, TensorRole::kExpertUp};
    } else {
      roles = {t.id.role};
    }
    for (size_t r = 0; r < roles.size(); ++r) {
      MOEQ_ASSIGN_OR_RETURN(std::string module, MlxStackedModule(adapter, t.id.layer, roles[r]));
      const std::string wname = module + std::string(kWeightSuffix);
      auto [it, inserted] = stacked_index.emplace(wname, modules.size());
      if (inserted) {
        Module m;
        m.weight_name = wname;
        m.module = module;
        m.source_dtype = t.info.dtype;
        m.id = TensorId{t.id.layer, -1, roles[r]};
        m.stacked = true;
        m.quantizable = true;
        m.pieces.resize(static_cast<size_t>(E));
        modules.push_back(std::move(m));
      }
      Module& m = modules[it->second];
      if (t.fused_experts) {
        // [E, out, in] (gate_up: [E, 2*ff, in], gate rows first).
        const int64_t out = t.info.shape[1] / static_cast<int64_t>(roles.size());
        for (int64_t e = 0; e < E; ++e) {
          m.pieces[static_cast<size_t>(e)] = {
              &t, e * t.info.shape[1] + static_cast<int64_t>(r) * out, out, false};
        }
        m.shape = {E, out, t.info.shape[2]};
        m.format = fmt;
        m.expert_formats[FormatLabel(fmt, t.info.dtype)] += static_cast<int>(E);
      } else {
        if (t.id.expert < 0 || t.id.expert >= E) {
          return Status::Corruption(ckpt.dir() + ": tensor '" + t.info.name +
                                    "': expert index out of range");
        }
        m.pieces[static_cast<size_t>(t.id.expert)] = {&t, 0, t.info.shape[0], pruned};
        m.shape = {E, t.info.shape[0], t.info.shape[1]};
        m.expert_formats[FormatLabel(fmt, t.info.dtype)] += 1;
        if (pruned) ++m.pruned;
      }
    }
  }
  // Stacked modules: one format, the highest precision among their (unpruned) experts.
  for (Module& m : modules) {
    if (!m.stacked) continue;
    const quant::FormatTraits* best = nullptr;
    bool any = false, all_pruned = true;
    for (const Piece& p : m.pieces) {
      if (p.src == nullptr) {
        return Status::Corruption(ckpt.dir() + ": '" + m.module + "': an expert tensor is missing");
      }
      if (p.zero) continue;
      all_pruned = false;
      const quant::FormatTraits* f = plan.FormatOf(p.src->info.name);
      if (!any || Precision(f) > Precision(best)) best = f;
      any = true;
    }
    if (all_pruned) best = PrunedFormat(plan, *m.pieces[0].src);
    // Float formats of different experts (or verbatim) collapse to the source dtype.
    if (best != nullptr && !best->is_affine()) {
      for (const Piece& p : m.pieces) {
        if (!p.zero && plan.FormatOf(p.src->info.name) != best) best = nullptr;
      }
    }
    m.format = best;
    for (const Piece& p : m.pieces) {
      if (!p.zero && !p.src->fused_experts && plan.FormatOf(p.src->info.name) != best) ++m.promoted;
    }
    if (m.affine() && m.shape.back() % m.format->group_size != 0) {
      return Status::InvalidArgument(
          ckpt.dir() + ": '" + m.module + "': last dimension " + std::to_string(m.shape.back()) +
          " is not a multiple of group size " + std::to_string(m.format->group_size));
    }
  }
  return modules;
}

/// The stored tensors of a module.
std::vector<TensorInfo> OutputInfos(const Module& m) {
  if (!m.affine()) return {TensorInfo{m.weight_name, m.out_dtype(), m.shape}};
  std::vector<int64_t> packed = m.shape, scales = m.shape;
  packed.back() = m.format->PackedWordsPerRow(m.shape.back());
  scales.back() = m.shape.back() / m.format->group_size;
  const DType sd = m.format->ScaleDType(m.source_dtype);
  return {TensorInfo{m.module + ".weight", DType::kU32, packed},
          TensorInfo{m.module + ".scales", sd, scales},
          TensorInfo{m.module + ".biases", sd, scales}};
}

/// A [rows, in] view of a piece's source rows.
struct PieceView {
  TensorInfo info;
  TensorView view;
};

Result<PieceView> ViewPiece(const Checkpoint& ckpt, const Piece& p, int64_t in) {
  MOEQ_ASSIGN_OR_RETURN(TensorView whole, ckpt.View(p.src->info.name));
  PieceView pv;
  pv.info.name = p.src->info.name;
  pv.info.dtype = p.src->info.dtype;
  pv.info.shape =
      p.src->info.shape.size() >= 2 ? std::vector<int64_t>{p.rows, in} : p.src->info.shape;
  const size_t es = DTypeSize(p.src->info.dtype);
  const size_t begin = static_cast<size_t>(p.first_row * in) * es;
  pv.view.data = whole.data.subspan(begin, static_cast<size_t>(pv.info.numel()) * es);
  return pv;
}

void AppendBytes(std::vector<std::byte>* out, const void* data, size_t n) {
  const auto* b = static_cast<const std::byte*>(data);
  out->insert(out->end(), b, b + n);
}

/// Float32 values → bytes of `dtype` (BF16, F16 or F32; RNE).
void AppendFloats(std::vector<std::byte>* out, std::span<const float> v, DType dtype,
                  std::vector<float>* rounded) {
  rounded->resize(v.size());
  if (dtype == DType::kF32) {
    AppendBytes(out, v.data(), v.size() * sizeof(float));
    std::copy(v.begin(), v.end(), rounded->begin());
    return;
  }
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::kBF16) {
      h[i] = F32ToBf16(v[i]);
      (*rounded)[i] = Bf16ToF32(h[i]);
    } else {
      h[i] = F32ToF16(v[i]);
      (*rounded)[i] = F16ToF32(h[i]);
    }
  }
  AppendBytes(out, h.data(), h.size() * sizeof(uint16_t));
}

struct ModuleData {
  std::vector<std::byte> weight, scales, biases;
  quant::ErrorStats error;
  /// Encoders that produced the pieces' codes (data-aware plans only), e.g. {"gptq"} or
  /// {"gptq", "rtn"} when some pieces had no statistics.
  std::set<std::string> encoders;
};

/// The per-expert (or plain) weight name of a piece, as the statistics file names it.
std::string PieceStatsName(const Checkpoint& ckpt, const Piece& p) {
  const CheckpointTensor& t = *p.src;
  if (!t.fused_experts || p.rows <= 0) return t.info.name;
  const int64_t out = t.info.shape.size() >= 3 ? t.info.shape[t.info.shape.size() - 2] : p.rows;
  const int expert = static_cast<int>(p.first_row / std::max<int64_t>(1, out));
  const TensorRole r =
      t.id.role == TensorRole::kExpertDown ? TensorRole::kExpertDown : TensorRole::kExpertGate;
  return ckpt.adapter().Name({t.id.layer, expert, r});
}

/// Rows of a piece converted to float32 at a time by the streaming paths (64 MB of float32), so
/// a vocabulary-sized matrix (151,936 × 2048) never needs a float32 copy of itself.
constexpr int64_t kChunkElems = int64_t{1} << 24;

/// The rows [r0, r0 + nr) of a piece's view as a view of their own.
PieceView RowsOf(const PieceView& pv, int64_t r0, int64_t nr, int64_t in) {
  PieceView sub;
  sub.info.name = pv.info.name;
  sub.info.dtype = pv.info.dtype;
  sub.info.shape = pv.info.shape.size() >= 2 ? std::vector<int64_t>{nr, in} : pv.info.shape;
  const size_t es = DTypeSize(pv.info.dtype);
  sub.view.data = pv.view.data.subspan(static_cast<size_t>(r0 * in) * es,
                                       static_cast<size_t>(sub.info.numel()) * es);
  return sub;
}

/// Quantizes / converts / copies one module's pieces. Round-to-nearest and float pieces are
/// processed kChunkElems at a time (rows are independent: same bytes and, with AccumulateError,
/// the same error sums as one pass); data-aware encoders see the whole piece (their statistics
/// and factorizations are per tensor).
Result<ModuleData> BuildModule(const Checkpoint& ckpt, const QuantPlan& plan, const Module& m,
                               const MlxWriteOptions& options) {
  const int threads = options.threads;
  ModuleData d;
  const int64_t in = m.shape.empty() ? 1 : m.shape.back();
  std::vector<float> src, rec;
  for (const Piece& p : m.pieces) {
    MOEQ_ASSIGN_OR_RETURN(PieceView whole, ViewPiece(ckpt, p, in));
    const quant::EncoderKind enc =
        !m.affine() || p.zero ? quant::EncoderKind::kRtn : plan.EncoderOf(p.src->info.name);
    std::optional<quant::InputStats> stats;
    if (enc != quant::EncoderKind::kRtn && options.stats != nullptr) {
      auto st = options.stats->Get(PieceStatsName(ckpt, p), in);
      if (!st.ok()) return st.status().WithContext("tensor '" + p.src->info.name + "'");
      stats = std::move(*st);
    }
    const quant::EncoderKind used = quant::EffectiveEncoder(enc, stats ? &*stats : nullptr);
    if (m.affine() && plan.DataAware()) d.encoders.insert(std::string(quant::EncoderName(used)));
    const int64_t rows = whole.info.shape.size() >= 2 ? whole.info.shape[0] : 1;
    const int64_t chunk_rows = used != quant::EncoderKind::kRtn || whole.info.shape.size() < 2
                                   ? std::max<int64_t>(rows, 1)
                                   : std::max<int64_t>(1, kChunkElems / std::max<int64_t>(in, 1));
    quant::ErrorStats piece_error;
    for (int64_t r0 = 0; r0 < std::max<int64_t>(rows, 1); r0 += chunk_rows) {
      const int64_t nr = std::min(chunk_rows, std::max<int64_t>(rows, 1) - r0);
      PieceView pv = chunk_rows >= rows ? whole : RowsOf(whole, r0, nr, in);
      pv.view.info = &pv.info;
      const int64_t n = pv.info.numel();
      src.resize(static_cast<size_t>(n));
      MOEQ_RETURN_IF_ERROR(ConvertToF32(pv.view, 0, n, src.data()));
      const int64_t prows = pv.info.shape.size() >= 2 ? pv.info.shape[0] : p.rows;
      if (m.affine()) {
        std::vector<float> zeros;
        if (p.zero) zeros.assign(static_cast<size_t>(n), 0.0f);
        quant::EncoderOptions eo = options.encoder_options;
        eo.kind = used;
        Result<quant::QuantizedTensor> q =
            p.zero ? quant::QuantizeAffine(zeros, prows, in, m.format->bits, m.format->group_size,
                                           m.format->ScaleDType(m.source_dtype), threads)
            : used != quant::EncoderKind::kRtn
                ? quant::EncodeAffine(src, prows, in, *m.format,
                                      m.format->ScaleDType(m.source_dtype), eo, &*stats, threads)
                : quant::QuantizeTensor(pv.view, *m.format, threads);
        if (!q.ok())
          return q.status().WithContext(ckpt.dir() + ": tensor '" + p.src->info.name + "'");
        MOEQ_ASSIGN_OR_RETURN(rec, quant::Dequantize(*q, threads));
        AppendBytes(&d.weight, q->packed.data(), q->packed.size() * sizeof(uint32_t));
        AppendBytes(&d.scales, q->scales.data(), q->scales.size());
        AppendBytes(&d.biases, q->biases.data(), q->biases.size());
      } else if (p.zero) {
        std::vector<float> zeros(static_cast<size_t>(n), 0.0f);
        AppendFloats(&d.weight, zeros, m.out_dtype(), &rec);
      } else if (m.out_dtype() == p.src->info.dtype) {
        AppendBytes(&d.weight, pv.view.data.data(), pv.view.data.size());
        rec = src;
      } else if (IsFloatDType(p.src->info.dtype)) {
        AppendFloats(&d.weight, src, m.out_dtype(), &rec);
      } else {
        return Status::InvalidArgument(ckpt.dir() + ": tensor '" + p.src->info.name + "': dtype " +
                                       std::string(DTypeName(p.src->info.dtype)) +
                                       " cannot be converted to " +
                                       std::string(DTypeName(m.out_dtype())));
      }
      if (IsFloatDType(p.src->info.dtype)) quant::AccumulateError(src, rec, &piece_error);
    }
    if (IsFloatDType(p.src->info.dtype)) d.error.Merge(piece_error);
  }
  return d;
}

/// Writes a built module's tensors (weight; scales and biases when quantized) and frees their
/// bytes.
Status WriteModule(ShardedSafetensorsWriter& writer, const Module& m, ModuleData* d) {
  const auto out_infos = OutputInfos(m);
  MOEQ_RETURN_IF_ERROR(writer.Write(out_infos[0].name, d->weight));
  if (m.affine()) {
    MOEQ_RETURN_IF_ERROR(writer.Write(out_infos[1].name, d->scales));
    MOEQ_RETURN_IF_ERROR(writer.Write(out_infos[2].name, d->biases));
  }
  d->weight = {};
  d->scales = {};
  d->biases = {};
  return Status::Ok();
}

nlohmann::json QuantDict(const quant::FormatTraits& f) {
  return {{"group_size", f.group_size}, {"bits", f.bits}, {"mode", "affine"}};
}

}  // namespace

Result<nlohmann::json> WriteMlxCheckpoint(const Checkpoint& ckpt, const QuantPlan& plan,
                                          const std::string& dir, const MlxWriteOptions& options) {
  if (ckpt.is_quantized()) {
    return Status::Unsupported(
        ckpt.dir() + ": the input is already quantized; quantize from the float checkpoint");
  }
  MOEQ_ASSIGN_OR_RETURN(std::vector<Module> modules, PlanModules(ckpt, plan, options.stacked));

  // Declare every output tensor up front.
  std::vector<TensorInfo> infos;
  int64_t parameters = 0;
  for (const Module& m : modules) {
    for (auto& info : OutputInfos(m)) infos.push_back(std::move(info));
    parameters += std::accumulate(m.shape.begin(), m.shape.end(), int64_t{1}, std::multiplies<>());
  }
  ShardingOptions sharding;
  sharding.max_shard_bytes = options.max_shard_bytes;
  sharding.metadata = {{"format", "mlx"}};
  sharding.index_metadata = {{"total_parameters", static_cast<uint64_t>(parameters)}};
  MOEQ_ASSIGN_OR_RETURN(auto writer, ShardedSafetensorsWriter::Create(dir, infos, sharding));

  // Quantization defaults: the affine format holding the most parameters.
  std::map<const quant::FormatTraits*, int64_t> by_format;
  for (const Module& m : modules) {
    if (m.affine())
      by_format[m.format] +=
          std::accumulate(m.shape.begin(), m.shape.end(), int64_t{1}, std::multiplies<>());
  }
  const quant::FormatTraits* def = nullptr;
  for (const auto& [f, n] : by_format) {
    if (def == nullptr || n > by_format[def] || (n == by_format[def] && f->name < def->name))
      def = f;
  }

  nlohmann::json tensors = nlohmann::json::array();
  nlohmann::json projections = nlohmann::json::array();
  uint64_t out_bytes = 0, src_bytes = 0;
  int64_t quantized = 0;
  quant::ErrorStats total_error;
  std::optional<Progress> progress;
  if (options.progress)
    progress.emplace("quantize", static_cast<int64_t>(modules.size()), "tensors");
  // Modules are built (read, converted, quantized, measured) several at a time, one per worker,
  // then written and summed in module order, so the output and the error totals do not depend
  // on the thread count. One expert's projection (768 x 2048) is too small to keep the threads
  // of a single quantizer busy: one module at a time used one core of two. A batch holds at most
  // 2 x threads modules and kBatchElems source weights (its float32 buffers and outputs stay
  // bounded); with data-aware statistics modules are built one at a time.
  constexpr int64_t kBatchElems = int64_t{1} << 26;
  const int workers = ResolveThreads(options.threads);
  const size_t max_batch =
      options.stats != nullptr || workers <= 1 ? 1 : static_cast<size_t>(2 * workers);
  std::vector<std::optional<Result<ModuleData>>> built;
  size_t batch_begin = 0, batch_end = 0;
  for (size_t mi = 0; mi < modules.size(); ++mi) {
    if (mi == batch_end) {
      batch_begin = mi;
      int64_t elems = 0;
      for (batch_end = mi; batch_end < modules.size() && batch_end - mi < max_batch; ++batch_end) {
        const auto& sh = modules[batch_end].shape;
        const int64_t n = std::accumulate(sh.begin(), sh.end(), int64_t{1}, std::multiplies<>());
        if (batch_end > mi && elems + n > kBatchElems) break;
        elems += n;
      }
      built.assign(batch_end - batch_begin, std::nullopt);
      ParallelFor(
          static_cast<int64_t>(built.size()),
          [&](int64_t i) {
            const Module& bm = modules[batch_begin + static_cast<size_t>(i)];
            Result<ModuleData> r = BuildModule(ckpt, plan, bm, options);
            if (r.ok()) {
              // The writer is thread-safe (positional writes); the bytes are freed once written.
              Status st = WriteModule(*writer, bm, &*r);
              if (!st.ok()) r = std::move(st);
            }
            built[static_cast<size_t>(i)].emplace(std::move(r));
          },
          built.size() > 1 ? workers : 1);
    }
    const Module& m = modules[mi];
    MOEQ_ASSIGN_OR_RETURN(ModuleData d, std::move(*built[mi - batch_begin]));
    built[mi - batch_begin].reset();
    const auto out_infos = OutputInfos(m);
    if (m.affine()) ++quantized;
    uint64_t bytes = 0;
    for (const auto& info : out_infos) bytes += info.nbytes();
    uint64_t sbytes = 0;
    nlohmann::json sources = nlohmann::json::array();
    for (const Piece& p : m.pieces) {
      if (sources.empty() || sources.back() != p.src->info.name)
        sources.push_back(p.src->info.name);
    }
    for (const auto& s : sources) {
      const CheckpointTensor* t = ckpt.Find(s.get<std::string>());
      sbytes += t->info.nbytes();
      ckpt.Release(t->info.name);
    }
    out_bytes += bytes;
    src_bytes += sbytes;
    total_error.Merge(d.error);
    nlohmann::json e = {{"name", m.weight_name},
                        {"format", FormatLabel(m.format, m.source_dtype)},
                        {"quantized", m.affine()},
                        {"shape", m.shape},
                        {"source_dtype", DTypeName(m.source_dtype)},
                        {"role", RoleName(m.id.role)},
                        {"bytes", bytes},
                        {"source_bytes", sbytes},
                        {"nrmse", d.error.count > 0 ? d.error.Nrmse() : 0.0},
                        {"sqnr_db", d.error.count > 0 ? d.error.SqnrDb() : quant::kSqnrCapDb}};
    if (m.id.layer >= 0) e["layer"] = m.id.layer;
    if (m.id.expert >= 0) e["expert"] = m.id.expert;
    if (m.pruned > 0) e["pruned_experts"] = m.pruned;
    if (!d.encoders.empty()) {
      std::string enc;
      for (const auto& x : d.encoders) enc += (enc.empty() ? "" : ",") + x;
      e["encoder"] = enc;
    }
    if (m.stacked) {
      e["sources"] = sources;
      projections.push_back({{"module", m.module},
                             {"format", FormatLabel(m.format, m.source_dtype)},
                             {"expert_formats", m.expert_formats},
                             {"promoted_experts", m.promoted},
                             {"pruned_experts", m.pruned}});
    }
    tensors.push_back(std::move(e));
    if (progress) progress->Advance(1, m.weight_name);
  }
  MOEQ_RETURN_IF_ERROR(writer->Finish());
  if (progress) progress->Finish();

  // config.json: the source config plus the "quantization" block (and its mirror).
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json config,
                        ReadJsonFile((fs::path(ckpt.dir()) / "config.json").string()));
  nlohmann::json qblock;
  if (def != nullptr) {
    qblock = QuantDict(*def);
    for (const Module& m : modules) {
      if (m.affine() && m.format != def) {
        qblock[m.module] = QuantDict(*m.format);
      } else if (!m.affine() && m.quantizable) {
        qblock[m.module] = false;  // mlx-lm: a falsy entry keeps the module float
      }
    }
    config["quantization"] = qblock;
    config["quantization_config"] = qblock;
  } else {
    config.erase("quantization");
    config.erase("quantization_config");
  }
  MOEQ_RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(dir) / "config.json").string(), config.dump(2) + "\n"));

  // Carried files (tokenizer, generation config, ...).
  for (const std::string& f : ckpt.extra_files()) {
    std::error_code ec;
    fs::copy_file(fs::path(ckpt.dir()) / f, fs::path(dir) / f, fs::copy_options::overwrite_existing,
                  ec);
    if (ec)
      return Status::Io(ckpt.dir() + "/" + f + ": cannot copy into " + dir + ": " + ec.message());
  }

  nlohmann::json manifest;
  manifest["layout"] = options.stacked ? "mlx-stacked" : "per-expert";
  manifest["quantization"] = def != nullptr ? QuantDict(*def) : nlohmann::json(nullptr);
  manifest["tensors"] = std::move(tensors);
  if (!projections.empty()) manifest["projections"] = std::move(projections);
  manifest["shards"] = writer->shard_files();
  manifest["totals"] = {
      {"tensors", modules.size()},
      {"quantized_tensors", quantized},
      {"parameters", parameters},
      {"bytes", out_bytes},
      {"source_bytes", src_bytes},
      {"bpw", parameters > 0
                  ? 8.0 * static_cast<double>(out_bytes) / static_cast<double>(parameters)
                  : 0.0},
      {"nrmse", total_error.count > 0 ? total_error.Nrmse() : 0.0},
      {"sqnr_db", total_error.count > 0 ? total_error.SqnrDb() : quant::kSqnrCapDb}};
  return manifest;
}

}  // namespace moeq
