// InspectCheckpoint / FormatInspectTable: counts a checkpoint's parameters and bytes by role,
// group and dtype, and renders them as aligned text.
#include "moeq/report/inspect.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

namespace moeq {
namespace {

/// The reporting group of a role.
std::string_view GroupOf(TensorRole role) {
  if (IsNormRole(role)) return "norms";
  if (IsExpertRole(role)) return "experts";
  if (IsSharedExpertRole(role)) return "shared_experts";
  switch (role) {
    case TensorRole::kEmbedding:
    case TensorRole::kLmHead:
      return "embeddings";
    case TensorRole::kAttnQ:
    case TensorRole::kAttnK:
    case TensorRole::kAttnV:
    case TensorRole::kAttnO:
    case TensorRole::kAttnQBias:
    case TensorRole::kAttnKBias:
    case TensorRole::kAttnVBias:
    case TensorRole::kAttnOBias:
    case TensorRole::kAttnQA:
    case TensorRole::kAttnQB:
    case TensorRole::kAttnKVA:
    case TensorRole::kAttnKVB:
      return "attention";
    case TensorRole::kRouter:
    case TensorRole::kRouterBias:
      return "router";
    case TensorRole::kMlpGate:
    case TensorRole::kMlpUp:
    case TensorRole::kMlpDown:
      return "dense_mlp";
    default:
      return "other";
  }
}

/// Display order of groups in the table.
constexpr std::string_view kGroupOrder[] = {"experts",   "shared_experts", "dense_mlp",
                                            "attention", "embeddings",     "router",
                                            "norms",     "other"};

struct Tally {
  int64_t tensors = 0;
  int64_t parameters = 0;
  uint64_t bytes = 0;

  void Add(const TensorInfo& info) { Add(info, info.nbytes()); }
  /// `stored` = the bytes actually stored (quantized tensors: packed codes + scales + biases).
  void Add(const TensorInfo& info, uint64_t stored) {
    ++tensors;
    parameters += info.numel();
    bytes += stored;
  }
  nlohmann::json ToJson() const {
    return {{"tensors", tensors}, {"parameters", parameters}, {"bytes", bytes}};
  }
};

/// "13,337,984".
std::string Grouped(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

/// "25.4 MiB".
std::string HumanBytes(double bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (bytes >= 1024.0 && u + 1 < std::size(kUnits)) {
    bytes /= 1024.0;
    ++u;
  }
  return Fixed(bytes, u == 0 ? 0 : 1) + " " + kUnits[u];
}

/// Column-aligned text: the first `left_columns` columns left-aligned, the others right-aligned.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header, size_t left_columns = 1)
      : left_columns_(left_columns) {
    rows_.push_back(std::move(header));
  }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  std::string Render() const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()), 0);
      for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    }
    std::string out;
    for (const auto& row : rows_) {
      std::string line = " ";
      for (size_t c = 0; c < row.size(); ++c) {
        const std::string pad(width[c] - row[c].size(), ' ');
        line += "  " + (c < left_columns_ ? row[c] + pad : pad + row[c]);
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }

 private:
  size_t left_columns_;
  std::vector<std::vector<std::string>> rows_;
};

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return Grouped(it->get<int64_t>());
  return it->dump();
}

int64_t Int(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}

/// Rows of a {name: {tensors, parameters, bytes}} object in `order` (then any others).
std::string TallyTable(const nlohmann::json& report, const char* key, const char* first_column,
                       const std::vector<std::string>& order) {
  const nlohmann::json& tallies = report.at(key);
  const double total = std::max<double>(1.0, static_cast<double>(Int(report, "parameters")));
  TextTable table({first_column, "tensors", "parameters", "bytes", "params %"});
  std::vector<std::string> names = order;
  for (const auto& [name, _] : tallies.items()) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  for (const auto& name : names) {
    auto it = tallies.find(name);
    if (it == tallies.end()) continue;
    table.Add({name, Str(*it, "tensors"), Str(*it, "parameters"), Str(*it, "bytes"),
               Fixed(100.0 * static_cast<double>(Int(*it, "parameters")) / total, 2)});
  }
  return table.Render();
}

std::string JoinStrings(const nlohmann::json& list) {
  if (!list.is_array() || list.empty()) return "none";
  std::string s;
  for (const auto& v : list) s += (s.empty() ? "" : ", ") + v.get<std::string>();
  return s;
}

/// Bytes a tensor occupies on disk.
uint64_t StoredBytes(const CheckpointTensor& t) {
  return t.quant.quantized() ? t.quant.stored_bytes : t.info.nbytes();
}

/// Storage format of a tensor: "q4g64" for MLX-quantized ones, else the lower-case dtype.
std::string StorageFormat(const CheckpointTensor& t) {
  if (t.quant.quantized())
    return "q" + std::to_string(t.quant.bits) + "g" + std::to_string(t.quant.group_size);
  std::string d(DTypeName(t.info.dtype));
  for (char& ch : d) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return d;
}

double Bpw(uint64_t bytes, int64_t params) {
  return params > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0;
}

}  // namespace

Result<nlohmann::json> InspectCheckpoint(const Checkpoint& checkpoint) {
  if (checkpoint.is_gguf()) {
    return Status::Unsupported(
        checkpoint.dir() +
        ": moeq-inspect reads Hugging Face / MLX model directories, not GGUF files");
  }
  const ModelConfig& c = checkpoint.config();
  Tally total;
  std::map<std::string, Tally> by_role, by_group, by_dtype, by_format;
  std::vector<Tally> by_shard(checkpoint.shard_files().size());
  bool fused = false;
  nlohmann::json quantized = nlohmann::json::array();
  for (const auto& t : checkpoint.tensors()) {
    const uint64_t stored = StoredBytes(t);
    total.Add(t.info, stored);
    by_role[std::string(RoleName(t.id.role))].Add(t.info, stored);
    by_group[std::string(GroupOf(t.id.role))].Add(t.info, stored);
    by_dtype[std::string(DTypeName(t.info.dtype))].Add(t.info, stored);
    by_format[StorageFormat(t)].Add(t.info, stored);
    by_shard.at(static_cast<size_t>(t.shard)).Add(t.info, stored);
    fused = fused || t.fused_experts;
    if (t.quant.quantized()) {
      quantized.push_back({{"name", t.info.name},
                           {"format", StorageFormat(t)},
                           {"bits", t.quant.bits},
                           {"group_size", t.quant.group_size},
                           {"shape", t.info.shape},
                           {"bytes", stored},
                           {"bits_per_weight", Bpw(stored, t.info.numel())}});
    }
  }
  auto to_json = [](const std::map<std::string, Tally>& m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, tally] : m) j[name] = tally.ToJson();
    return j;
  };
  nlohmann::json shards = nlohmann::json::array();
  for (size_t i = 0; i < by_shard.size(); ++i) {
    shards.push_back({{"file", checkpoint.shard_files()[i]},
                      {"tensors", by_shard[i].tensors},
                      {"bytes", checkpoint.shard(static_cast<int>(i)).file_size()}});
  }
  const int64_t moe_layers = std::count(c.moe_layer.begin(), c.moe_layer.end(), true);
  nlohmann::json architectures =
      c.raw.contains("architectures") ? c.raw.at("architectures") : nlohmann::json::array();
  return nlohmann::json{
      {"model_dir", checkpoint.dir()},
      {"model_type", c.model_type},
      {"architectures", architectures},
      {"layers", c.num_layers},
      {"moe_layers", moe_layers},
      {"dense_layers", c.num_layers - moe_layers},
      {"experts_per_layer", c.num_experts},
      {"top_k", c.top_k},
      {"shared_experts", c.num_shared_experts},
      {"hidden_size", c.hidden_size},
      {"num_heads", c.num_heads},
      {"num_kv_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"vocab_size", c.vocab_size},
      {"intermediate_size", c.intermediate_size},
      {"moe_intermediate_size", c.moe_intermediate_size},
      {"shared_expert_intermediate_size", c.shared_expert_intermediate_size},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"fused_experts", fused},
      {"tensors", total.tensors},
      {"parameters", total.parameters},
      {"bytes", total.bytes},
      {"by_role", to_json(by_role)},
      {"by_group", to_json(by_group)},
      {"by_dtype", to_json(by_dtype)},
      {"by_format", to_json(by_format)},
      {"bits_per_weight", Bpw(total.bytes, total.parameters)},
      {"quantized", checkpoint.is_quantized()},
      {"quantized_tensors", quantized},
      {"shards", shards},
      {"unknown_tensors", checkpoint.unknown_tensors()},
      {"extra_files", checkpoint.extra_files()},
      {"fingerprint", checkpoint.fingerprint()},
  };
}

std::string FormatInspectTable(const nlohmann::json& r) {
  std::string arch = Str(r, "model_type");
  if (r.contains("architectures") && r.at("architectures").is_array() &&
      !r.at("architectures").empty()) {
    arch += " (" + JoinStrings(r.at("architectures")) + ")";
  }
  TextTable summary({"model", Str(r, "model_dir")}, 2);
  summary.Add({"architecture", arch});
  summary.Add({"layers", Str(r, "layers") + " (" + Str(r, "moe_layers") + " MoE, " +
                             Str(r, "dense_layers") + " dense)"});
  if (Int(r, "experts_per_layer") > 0) {
    summary.Add({"experts", Str(r, "experts_per_layer") + " routed per MoE layer, top-" +
                                Str(r, "top_k") + ", " + Str(r, "shared_experts") + " shared" +
                                (r.value("fused_experts", false) ? ", fused 3-D tensors" : "")});
  }
  summary.Add({"dimensions", "hidden " + Str(r, "hidden_size") + ", heads " + Str(r, "num_heads") +
                                 ", kv heads " + Str(r, "num_kv_heads") + ", head_dim " +
                                 Str(r, "head_dim") + ", vocab " + Str(r, "vocab_size")});
  std::string widths;
  auto add_width = [&](const char* label, const char* key, bool show) {
    if (show) widths += (widths.empty() ? "" : ", ") + std::string(label) + " " + Str(r, key);
  };
  add_width("dense", "intermediate_size", Int(r, "dense_layers") > 0);
  add_width("expert", "moe_intermediate_size", Int(r, "moe_layers") > 0);
  add_width("shared expert", "shared_expert_intermediate_size",
            Int(r, "shared_expert_intermediate_size") > 0);
  summary.Add({"mlp widths", widths});
  summary.Add({"tied embeddings", r.value("tie_word_embeddings", false) ? "yes" : "no"});
  summary.Add({"parameters", Str(r, "parameters") + " in " + Str(r, "tensors") + " tensors, " +
                                 Str(r, "bytes") + " bytes (" +
                                 HumanBytes(static_cast<double>(Int(r, "bytes"))) + ")"});
  if (r.value("quantized", false)) {
    summary.Add({"quantized", "MLX affine, " +
                                  Grouped(static_cast<int64_t>(r.at("quantized_tensors").size())) +
                                  " tensors; " + Fixed(r.value("bits_per_weight", 0.0), 3) +
                                  " bits per weight overall"});
  }
  summary.Add({"fingerprint", Str(r, "fingerprint")});

  std::vector<std::string> group_order(std::begin(kGroupOrder), std::end(kGroupOrder));
  std::vector<std::string> role_order;
  for (TensorRole role : AllRoles()) role_order.emplace_back(RoleName(role));

  TextTable shards({"shard", "tensors", "bytes"});
  for (const auto& s : r.at("shards")) {
    shards.Add({s.value("file", "?"), Str(s, "tensors"), Str(s, "bytes")});
  }
  std::string out = summary.Render();
  out += "\n" + TallyTable(r, "by_group", "group", group_order);
  out += "\n" + TallyTable(r, "by_role", "role", role_order);
  out += "\n" + TallyTable(r, "by_dtype", "dtype", {});
  if (r.value("quantized", false) && r.contains("by_format")) {
    TextTable formats({"format", "tensors", "parameters", "bytes", "bits/weight"});
    for (const auto& [name, t] : r.at("by_format").items()) {
      formats.Add({name, Str(t, "tensors"), Str(t, "parameters"), Str(t, "bytes"),
                   Fixed(Bpw(static_cast<uint64_t>(Int(t, "bytes")), Int(t, "parameters")), 3)});
    }
    out += "\n" + formats.Render();
  }
  out += "\n" + shards.Render();
  out += "\n  unknown tensors: " + JoinStrings(r.value("unknown_tensors", nlohmann::json()));
  out += "\n  extra files: " + JoinStrings(r.value("extra_files", nlohmann::json())) + "\n";
  return out;
}

}  // namespace moeq
