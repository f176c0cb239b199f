// TargetCostModel: the bytes each writer really stores (GGUF exact but for a reserved string
// budget; MLX tensor data exact, its JSON estimated).
#include "moeq/export/target_cost.h"

#include <filesystem>
#include <map>

#include "export/gguf_internal.h"
#include "moeq/export/gguf_writer.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

uint64_t Align(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

int64_t RowsOf(const std::vector<int64_t>& ne) {
  int64_t r = 1;
  for (size_t i = 1; i < ne.size(); ++i) r *= ne[i];
  return r;
}

/// GGUF: the writer's own plan of the file (gguf_internal::PlanLayout), re-typed per format.
class GgufCost final : public TargetCostModel {
 public:
  Status Init(const Checkpoint& ckpt, const std::set<std::string, std::less<>>& costed) {
    target_ = WriteTarget::kGguf;
    QuantPlan plan;  // every tensor in its source dtype: the types do not change the header size
    plan.source = "";
    plan.allocation_sha256 = std::string(64, '0');
    ArtifactContext ctx;
    ctx.tool = "moeq-quantize";
    GgufWriteOptions opt;
    opt.context = &ctx;
    opt.progress = false;
    MOEQ_ASSIGN_OR_RETURN(layout_, gguf_internal::PlanLayout(ckpt, plan, opt));
    fixed_bytes_ = Align(layout_.header_bytes + kGgufStringReserve, gguf_internal::kAlignment);
    for (size_t i = 0; i < layout_.tensors.size(); ++i) {
      const auto& t = layout_.tensors[i];
      weights_ += RowsOf(t.ne) * t.ne[0];
      int64_t costed_rows = 0;
      for (const auto& [src, rows] : t.parts) {
        if (!src.empty() && costed.count(src)) {
          parts_[src].push_back({i, rows});
          costed_rows += rows;
        }
      }
      MOEQ_ASSIGN_OR_RETURN(const uint64_t row, GgmlRowBytes(t.type, t.ne[0]));
      if (costed_rows == 0) {
        fixed_bytes_ += Align(t.bytes, gguf_internal::kAlignment);
      } else {
        // Rows no costed tensor decides (pruned experts, experts the allocation does not list).
        fixed_bytes_ += static_cast<uint64_t>(RowsOf(t.ne) - costed_rows) * row;
      }
    }
    accuracy_ =
        "exact for the tensor data, alignment, metadata and tensor infos; the header reserves " +
        std::to_string(kGgufStringReserve) +
        " bytes for moeq.plan.source and moeq.command (allocation path and command line)";
    return Status::Ok();
  }

  Result<uint64_t> ItemBytes(std::span<const std::string> names,
                             const quant::FormatTraits* format) const override {
    std::map<size_t, int64_t> rows_by_tensor;
    for (const std::string& n : names) {
      auto it = parts_.find(n);
      if (it == parts_.end())
        return Status::NotFound("gguf cost: tensor '" + n + "' is not written to the GGUF file");
      for (const auto& [idx, rows] : it->second) rows_by_tensor[idx] += rows;
    }
    uint64_t total = 0;
    for (const auto& [idx, rows] : rows_by_tensor) {
      const auto& t = layout_.tensors[idx];
      const GgmlType type =
          t.forced_f32 ? GgmlType::kF32 : ChooseGgmlType(format, t.source, t.ne[0]).type;
      MOEQ_ASSIGN_OR_RETURN(const uint64_t row, GgmlRowBytes(type, t.ne[0]));
      const uint64_t b = static_cast<uint64_t>(rows) * row;
      // A whole GGUF tensor pays its padding; a share of one (one expert of a merged tensor
      // costed alone) does not.
      total += rows == RowsOf(t.ne) ? Align(b, gguf_internal::kAlignment) : b;
    }
    return total;
  }

 private:
  gguf_internal::Layout layout_;
  std::map<std::string, std::vector<std::pair<size_t, int64_t>>, std::less<>> parts_;
};

/// Safetensors header entry of one stored tensor:
/// "name":{"dtype":"BF16","shape":[a,b,c],"data_offsets":[x,y]}, (≤ 80 bytes besides the name).
uint64_t HeaderEntry(size_t name_len) { return name_len + 80; }

/// MLX: tensor data exact (packed words + scales + biases, or the float dtype); header entries,
/// config.json overrides and quant_manifest.json entries estimated per stored module.
class MlxCost final : public TargetCostModel {
 public:
  /// Estimated JSON per quantized module: its quant_manifest.json entry and config.json override.
  static constexpr uint64_t kModuleJson = 600;

  Status Init(const Checkpoint& ckpt, WriteTarget target,
              const std::set<std::string, std::less<>>& costed) {
    target_ = target;
    for (const CheckpointTensor& t : ckpt.tensors()) {
      if (t.id.role == TensorRole::kBuffer) continue;
      tensors_.emplace(t.info.name, &t);
      weights_ += t.info.numel();
      if (costed.count(t.info.name)) continue;
      fixed_bytes_ += t.info.numel() * DTypeSize(t.info.dtype) + HeaderEntry(t.info.name.size()) +
                      t.info.name.size() + 40;  // index.json entry
    }
    // config.json (source + quantization block), index, manifest header, safetensors header
    // framing, carried files (tokenizer, generation config...).
    std::error_code ec;
    const auto cfg_size = fs::file_size(fs::path(ckpt.dir()) / "config.json", ec);
    fixed_bytes_ += (ec ? 4096 : cfg_size * 2) + 8192;
    for (const std::string& f : ckpt.extra_files()) {
      const auto s = fs::file_size(fs::path(ckpt.dir()) / f, ec);
      if (!ec) fixed_bytes_ += s;
    }
    accuracy_ =
        "tensor data exact; safetensors header, index, config.json and quant_manifest.json "
        "estimated (about " +
        std::to_string(kModuleJson) + " bytes of JSON per quantized module)";
    return Status::Ok();
  }

  Result<uint64_t> ItemBytes(std::span<const std::string> names,
                             const quant::FormatTraits* format) const override {
    uint64_t total = 0;
    for (const std::string& n : names) {
      auto it = tensors_.find(n);
      if (it == tensors_.end()) return Status::NotFound("mlx cost: no tensor '" + n + "'");
      const CheckpointTensor& t = *it->second;
      if (format == nullptr) {
        total += t.info.numel() * DTypeSize(t.info.dtype);
      } else {
        MOEQ_ASSIGN_OR_RETURN(const uint64_t b, format->StorageBytes(t.info.shape, t.info.dtype));
        total += b;
      }
    }
    // Stored modules: one per tensor, or one stacked switch_mlp module for a group.
    const size_t modules = target_ == WriteTarget::kMlxStacked ? 1 : names.size();
    const size_t name_len = names.empty() ? 0 : names.front().size();
    const uint64_t per_module = (format != nullptr && format->is_affine() ? 3 : 1) *
                                    (HeaderEntry(name_len) + name_len + 40) +
                                kModuleJson;
    return total + modules * per_module;
  }

 private:
  std::map<std::string, const CheckpointTensor*, std::less<>> tensors_;
};

}  // namespace

Result<WriteTarget> ParseWriteTarget(std::string_view name) {
  if (name == "mlx") return WriteTarget::kMlx;
  if (name == "mlx-stacked") return WriteTarget::kMlxStacked;
  if (name == "gguf") return WriteTarget::kGguf;
  return Status::InvalidArgument("--target '" + std::string(name) +
                                 "': expected mlx, mlx-stacked or gguf");
}

std::string_view WriteTargetName(WriteTarget t) {
  switch (t) {
    case WriteTarget::kMlx:
      return "mlx";
    case WriteTarget::kMlxStacked:
      return "mlx-stacked";
    case WriteTarget::kGguf:
      return "gguf";
  }
  return "?";
}

bool TargetHoldsPerExpertFormats(WriteTarget t) { return t == WriteTarget::kMlx; }

WriteTarget TargetOfOutput(std::string_view format, bool stacked) {
  if (format == "gguf") return WriteTarget::kGguf;
  return stacked ? WriteTarget::kMlxStacked : WriteTarget::kMlx;
}

Result<std::unique_ptr<TargetCostModel>> TargetCostModel::Make(
    const Checkpoint& ckpt, WriteTarget target, const std::set<std::string, std::less<>>& costed) {
  if (target == WriteTarget::kGguf) {
    auto m = std::make_unique<GgufCost>();
    MOEQ_RETURN_IF_ERROR(m->Init(ckpt, costed));
    return std::unique_ptr<TargetCostModel>(std::move(m));
  }
  auto m = std::make_unique<MlxCost>();
  MOEQ_RETURN_IF_ERROR(m->Init(ckpt, target, costed));
  return std::unique_ptr<TargetCostModel>(std::move(m));
}

}  // namespace moeq
