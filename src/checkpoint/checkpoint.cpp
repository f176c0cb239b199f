// Checkpoint::Open: resolves the shards of a Hugging Face model directory, classifies every
// tensor once through the architecture adapter and checks the tensor table against config.json
// (names, shapes, missing and duplicate tensors) before any tensor byte is read.
#include "moeq/checkpoint/checkpoint.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "checkpoint/checkpoint_internal.h"
#include "moeq/base/file_util.h"
#include "moeq/base/parallel.h"
#include "moeq/formats/gguf.h"
#include "moeq/model/mlx_names.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kConfigName = "config.json";
constexpr std::string_view kSingleName = "model.safetensors";
constexpr std::string_view kIndexName = "model.safetensors.index.json";
/// How many names an error or warning lists before "... and N more".
constexpr size_t kMaxListedNames = 10;

/// Files carried into a derived checkpoint: tokenizer, generation settings, chat templates,
/// remote code and licences. Weights, the index and config.json are written by the producer.
enum class Match { kExact, kPrefix, kSuffix };
struct CarryRule {
  std::string_view text;
  Match match;
};
constexpr CarryRule kCarryRules[] = {
    {"tokenizer.json", Match::kExact},
    {"tokenizer_config.json", Match::kExact},
    {"tokenizer.model", Match::kExact},
    {"special_tokens_map.json", Match::kExact},
    {"added_tokens.json", Match::kExact},
    {"generation_config.json", Match::kExact},
    {"vocab.json", Match::kExact},
    {"vocab.txt", Match::kExact},
    {"merges.txt", Match::kExact},
    {"preprocessor_config.json", Match::kExact},
    {"processor_config.json", Match::kExact},
    {"chat_template", Match::kPrefix},
    {"LICENSE", Match::kPrefix},
    {".tiktoken", Match::kSuffix},
    {".py", Match::kSuffix},
};

bool IsCarried(std::string_view name) {
  for (const auto& rule : kCarryRules) {
    switch (rule.match) {
      case Match::kExact:
        if (name == rule.text) return true;
        break;
      case Match::kPrefix:
        if (name.substr(0, rule.text.size()) == rule.text) return true;
        break;
      case Match::kSuffix:
        if (name.size() > rule.text.size() &&
            name.substr(name.size() - rule.text.size()) == rule.text) {
          return true;
        }
        break;
    }
  }
  return false;
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  return (fs::path(dir) / std::string(name)).string();
}

bool IsRegularFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

/// "a, b, c (and 7 more)".
std::string ListNames(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < kMaxListedNames; ++i) {
    if (i) s += ", ";
    s += "'" + names[i] + "'";
  }
  if (names.size() > kMaxListedNames) {
    s += " (and " + std::to_string(names.size() - kMaxListedNames) + " more)";
  }
  return s;
}

std::string DescribeId(const TensorId& id) {
  std::string s = "role " + std::string(RoleName(id.role));
  if (id.layer >= 0) s = "layer " + std::to_string(id.layer) + ", " + s;
  if (id.expert >= 0) s += ", expert " + std::to_string(id.expert);
  return s;
}

/// The shard files of a directory and, when an index is used, its tensor → shard map.
struct ShardPlan {
  std::vector<std::string> files;                 // relative to the directory
  std::map<std::string, std::string> weight_map;  // empty without an index
  bool from_index = false;
};

Result<ShardPlan> ReadIndex(const std::string& dir) try {
  const std::string index_path = JoinPath(dir, kIndexName);
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json index, ReadJsonFile(index_path));
  auto wm = index.is_object() ? index.find("weight_map") : index.end();
  if (!index.is_object() || wm == index.end() || !wm->is_object()) {
    return Status::Corruption(index_path + ": missing object 'weight_map'");
  }
  ShardPlan plan;
  plan.from_index = true;
  std::set<std::string> files;
  for (const auto& [tensor, file] : wm->items()) {
    if (!file.is_string()) {
      return Status::Corruption(index_path + ": weight_map['" + tensor +
                                "'] must be a file name string");
    }
    const std::string name = file.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      return Status::Corruption(index_path + ": tensor '" + tensor + "' maps to '" + name +
                                "', which is not a plain file name in the model directory");
    }
    if (files.insert(name).second && !IsRegularFile(JoinPath(dir, name))) {
      return Status::NotFound(index_path + ": tensor '" + tensor + "' is in shard '" + name +
                              "', which does not exist in " + dir);
    }
    plan.weight_map.emplace(tensor, name);
  }
  if (files.empty()) return Status::Corruption(index_path + ": 'weight_map' is empty");
  plan.files.assign(files.begin(), files.end());
  return plan;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(dir + "/model.safetensors.index.json" + ": " + JsonExceptionText(e));
}

/// model.safetensors (as transformers prefers it), else the index, else every
/// "model*.safetensors" (as mlx-lm loads them).
Result<ShardPlan> ResolveShards(const std::string& dir) {
  const bool has_index = IsRegularFile(JoinPath(dir, kIndexName));
  if (IsRegularFile(JoinPath(dir, kSingleName))) {
    if (has_index) {
      spdlog::warn("{}: both {} and {} exist; using {}", dir, kSingleName, kIndexName, kSingleName);
    }
    return ShardPlan{{std::string(kSingleName)}, {}, false};
  }
  if (has_index) return ReadIndex(dir);
  ShardPlan plan;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && name.rfind("model", 0) == 0 && name.size() > 12 &&
        name.substr(name.size() - 12) == ".safetensors") {
      plan.files.push_back(name);
    }
  }
  if (ec) return Status::Io(dir + ": cannot list directory: " + ec.message());
  if (plan.files.empty()) {
    return Status::NotFound(dir + ": no " + std::string(kSingleName) + ", " +
                            std::string(kIndexName) + " or model*.safetensors");
  }
  std::sort(plan.files.begin(), plan.files.end());
  return plan;
}

/// Cross-checks the index against the shards' own tensor tables and rejects tensors stored twice.
Status CheckShardTables(const std::string& dir, const ShardPlan& plan,
                        const std::vector<std::unique_ptr<SafetensorsFile>>& shards) {
  std::map<std::string_view, size_t> owner;
  for (size_t s = 0; s < shards.size(); ++s) {
    for (const auto& info : shards[s]->tensors()) {
      auto [it, inserted] = owner.emplace(info.name, s);
      if (!inserted) {
        return Status::Corruption(dir + ": tensor '" + info.name + "' appears in both '" +
                                  plan.files[it->second] + "' and '" + plan.files[s] + "'");
      }
      if (plan.from_index) {
        auto mapped = plan.weight_map.find(info.name);
        if (mapped == plan.weight_map.end()) {
          return Status::Corruption(plan.files[s] + ": tensor '" + info.name +
                                    "' is not listed in " + std::string(kIndexName));
        }
        if (mapped->second != plan.files[s]) {
          return Status::Corruption(std::string(kIndexName) + ": tensor '" + info.name +
                                    "' is listed in '" + mapped->second + "' but stored in '" +
                                    plan.files[s] + "'");
        }
      }
    }
  }
  for (const auto& [tensor, file] : plan.weight_map) {
    if (owner.find(tensor) == owner.end()) {
      return Status::Corruption(std::string(kIndexName) + ": tensor '" + tensor +
                                "' is listed in shard '" + file + "', which does not contain it");
    }
  }
  return Status::Ok();
}

}  // namespace

namespace checkpoint_internal {

/// Checks recognised tensors against the adapter's expectations for this config: shapes,
/// tensors that the config does not call for, duplicates, fused/per-expert mixes, and missing
/// tensors. Fused [E, out, in] expert tensors stand in for the per-expert ones they hold.
Status CheckAgainstConfig(const std::string& dir, const ModelConfig& config,
                          const ArchAdapter& adapter, const std::vector<CheckpointTensor>& tensors,
                          const std::vector<std::string>& shard_files) {
  // Bounds against the tensors actually present, before the expected list (layers x experts
  // entries) is built: a config.json that claims more layers or experts than the files hold is
  // rejected here, cheaply, whatever it claims (docs/limits.md).
  int64_t max_layer = -1, experts_present = 0;
  for (const auto& t : tensors) {
    if (t.id.role == TensorRole::kUnknown || t.id.role == TensorRole::kBuffer) continue;
    max_layer = std::max<int64_t>(max_layer, t.id.layer);
    if (t.id.expert >= 0)
      experts_present = std::max<int64_t>(experts_present, int64_t{t.id.expert} + 1);
    if (t.fused_experts && !t.info.shape.empty())
      experts_present = std::max(experts_present, t.info.shape[0]);
  }
  if (config.num_layers > max_layer + 1) {
    return Status::Corruption(JoinPath(dir, kConfigName) + ": num_hidden_layers is " +
                              std::to_string(config.num_layers) +
                              " but the checkpoint's tensors cover " +
                              (max_layer < 0 ? std::string("no layer")
                                             : "layers 0.." + std::to_string(max_layer) + " only"));
  }
  if (config.is_moe() && config.num_experts > experts_present) {
    return Status::Corruption(JoinPath(dir, kConfigName) + ": the config has " +
                              std::to_string(config.num_experts) +
                              " experts per MoE layer but the checkpoint's tensors hold " +
                              std::to_string(experts_present));
  }
  std::map<TensorId, std::vector<int64_t>> expected;
  for (auto& [id, shape] : adapter.ExpectedTensors()) expected.emplace(id, std::move(shape));

  std::map<TensorId, const CheckpointTensor*> present;
  std::set<TensorId> fused;  // {layer, -1, role} of fused tensors (gate_up counted as gate + up)
  for (const auto& t : tensors) {
    if (t.id.role == TensorRole::kUnknown || t.id.role == TensorRole::kBuffer) continue;
    const std::string& file = shard_files[static_cast<size_t>(t.shard)];
    auto [it, inserted] = present.emplace(t.id, &t);
    if (!inserted) {
      return Status::Corruption(dir + ": tensors '" + it->second->info.name + "' and '" +
                                t.info.name + "' are the same tensor (" + DescribeId(t.id) + ")");
    }
    std::optional<std::vector<int64_t>> want;
    if (t.fused_experts) {
      const bool gate_up = t.id.role == TensorRole::kExpertGateUp;
      const TensorRole per_expert = gate_up ? TensorRole::kExpertGate : t.id.role;
      auto e = expected.find(TensorId{t.id.layer, 0, per_expert});
      if (e != expected.end()) {
        want = e->second;
        if (gate_up) want->at(0) *= 2;
        want->insert(want->begin(), config.num_experts);
      }
      if (gate_up) {
        fused.insert(TensorId{t.id.layer, -1, TensorRole::kExpertGate});
        fused.insert(TensorId{t.id.layer, -1, TensorRole::kExpertUp});
      } else {
        fused.insert(t.id);
      }
    } else if (t.id.role == TensorRole::kLmHead && config.tie_word_embeddings) {
      // Some exporters write lm_head even when it is tied; it must still have the right shape.
      want = std::vector<int64_t>{config.vocab_size, config.hidden_size};
    } else if (auto e = expected.find(t.id); e != expected.end()) {
      want = e->second;
    }
    if (!want) {
      return Status::Corruption(file + ": tensor '" + t.info.name + "' (" + DescribeId(t.id) +
                                ") is not expected for this config.json (model_type '" +
                                config.model_type + "')");
    }
    if (*want != t.info.shape) {
      return Status::Corruption(file + ": tensor '" + t.info.name + "': shape " +
                                t.info.ShapeString() + " does not match config.json, expected " +
                                ShapeString(*want));
    }
  }

  std::vector<std::string> missing;
  for (const auto& [id, shape] : expected) {
    const bool per_expert_present = present.count(id) > 0;
    const bool fused_present = id.expert >= 0 && fused.count(TensorId{id.layer, -1, id.role}) > 0;
    if (per_expert_present && fused_present) {
      return Status::Corruption(dir + ": layer " + std::to_string(id.layer) + " stores " +
                                std::string(RoleName(id.role)) +
                                " both as a fused expert tensor and per expert ('" +
                                present.at(id)->info.name + "')");
    }
    if (!per_expert_present && !fused_present) missing.push_back(adapter.Name(id));
  }
  if (!missing.empty()) {
    return Status::Corruption(dir + ": " + std::to_string(missing.size()) +
                              " tensors expected for model_type '" + config.model_type +
                              "' are missing: " + ListNames(missing));
  }
  return Status::Ok();
}

}  // namespace checkpoint_internal

namespace {

using checkpoint_internal::CheckAgainstConfig;
using checkpoint_internal::IsGgufPath;
using checkpoint_internal::ReadGgufF32;

Status CheckAllFinite(const std::vector<CheckpointTensor>& tensors,
                      const std::vector<std::unique_ptr<SafetensorsFile>>& shards,
                      const std::vector<std::string>& shard_files) {
  std::vector<Status> results(tensors.size());
  ParallelFor(static_cast<int64_t>(tensors.size()), [&](int64_t i) {
    const CheckpointTensor& t = tensors[static_cast<size_t>(i)];
    if (!IsFloatDType(t.info.dtype) || t.quant.quantized())
      return;  // quantized: see CheckQuantizedFinite
    const size_t shard = static_cast<size_t>(t.shard);
    Result<TensorView> view = shards[shard]->View(t.info.name);
    if (!view.ok()) {
      results[static_cast<size_t>(i)] = view.status();
      return;
    }
    results[static_cast<size_t>(i)] = CheckFinite(*view, shard_files[shard]);
    shards[shard]->Release(t.info.name);
  });
  for (auto& s : results) MOEQ_RETURN_IF_ERROR(s);
  return Status::Ok();
}

Result<std::vector<std::string>> ListExtraFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && IsCarried(name)) out.push_back(name);
  }
  if (ec) return Status::Io(dir + ": cannot list directory: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::string Fingerprint(std::string_view config_bytes, const std::vector<CheckpointTensor>& tensors,
                        const std::vector<std::unique_ptr<SafetensorsFile>>& shards,
                        const std::vector<std::string>& shard_files) {
  std::vector<const CheckpointTensor*> by_name;
  for (const auto& t : tensors) by_name.push_back(&t);
  std::sort(by_name.begin(), by_name.end(),
            [](const auto* a, const auto* b) { return a->info.name < b->info.name; });
  Sha256 h;
  h.Update(config_bytes.data(), config_bytes.size());
  for (const CheckpointTensor* t : by_name) {
    const size_t shard = static_cast<size_t>(t->shard);
    const auto [begin, end] = shards[shard]->Offsets(t->info.name);
    const std::string row = t->info.name + '\t' + std::string(DTypeName(t->info.dtype)) + '\t' +
                            t->info.ShapeString() + '\t' + shard_files[shard] + '\t' +
                            std::to_string(begin) + '\t' + std::to_string(end) + '\n';
    h.Update(row.data(), row.size());
  }
  return h.HexDigest();
}

/// A quantized triple found among the stored tensors.
struct StoredQuant {
  TensorInfo logical;
  TensorQuantization quant;
};

/// Reads {bits, group_size, mode} from a config.json "quantization" object or override.
Status ReadQuantParams(const nlohmann::json& j, const std::string& where, int* bits, int* group,
                       std::string* mode) {
  if (!j.is_object()) return Status::Corruption(where + " must be an object");
  if (auto b = j.find("bits"); b != j.end() && !b->is_null()) {
    if (!b->is_number_integer())
      return Status::Corruption(where + ": field 'bits' must be an integer");
    *bits = b->get<int>();
  }
  if (auto g = j.find("group_size"); g != j.end() && !g->is_null()) {
    if (!g->is_number_integer())
      return Status::Corruption(where + ": field 'group_size' must be an integer");
    *group = g->get<int>();
  }
  if (auto m = j.find("mode"); m != j.end() && !m->is_null()) {
    if (!m->is_string()) return Status::Corruption(where + ": field 'mode' must be a string");
    *mode = m->get<std::string>();
  }
  return Status::Ok();
}

/// Finds MLX quantized triples (`X.weight` U32 + `X.scales` + `X.biases`) and describes the
/// logical tensor each one stores, with bits and group size from config.json "quantization"
/// (per-module override `X`, else the defaults; MLX's own defaults 4/64 when absent).
Result<std::map<std::string, StoredQuant, std::less<>>> FindQuantizedTriples(
    const std::string& config_path, const nlohmann::json& config_json,
    const std::vector<std::unique_ptr<SafetensorsFile>>& shards,
    const std::vector<std::string>& shard_files,
    std::map<std::string, int, std::less<>>* part_shard) {
  std::map<std::string, std::pair<const TensorInfo*, int>, std::less<>> stored;
  for (size_t s = 0; s < shards.size(); ++s) {
    for (const auto& info : shards[s]->tensors())
      stored.emplace(info.name, std::make_pair(&info, static_cast<int>(s)));
  }
  std::map<std::string, StoredQuant, std::less<>> out;
  const nlohmann::json* qcfg = nullptr;
  if (auto it = config_json.find("quantization"); it != config_json.end() && it->is_object())
    qcfg = &*it;
  constexpr std::string_view kScales = ".scales";
  for (const auto& [name, entry] : stored) {
    if (name.size() <= kScales.size() ||
        name.compare(name.size() - kScales.size(), kScales.size(), kScales) != 0) {
      continue;
    }
    const std::string module = name.substr(0, name.size() - kScales.size());
    const std::string file = shard_files[static_cast<size_t>(entry.second)];
    const std::string where = file + ": tensor '" + name + "'";
    auto w = stored.find(module + ".weight");
    if (w == stored.end()) {
      return Status::Corruption(where + ": quantization scales without a packed '" + module +
                                ".weight'");
    }
    if (qcfg == nullptr) {
      return Status::Corruption(where + ": quantized module '" + module + "' but " + config_path +
                                " has no 'quantization' object");
    }
    int bits = 4, group = 64;
    std::string mode = "affine";
    MOEQ_RETURN_IF_ERROR(
        ReadQuantParams(*qcfg, config_path + ": field 'quantization'", &bits, &group, &mode));
    if (auto o = qcfg->find(module); o != qcfg->end()) {
      if (o->is_boolean() && !o->get<bool>()) {
        return Status::Corruption(where + ": " + config_path + " marks module '" + module +
                                  "' unquantized (false) but it has scales");
      }
      if (o->is_object()) {
        bits = 4, group = 64,
        mode = "affine";  // mlx: a per-module dict falls back to the mode defaults
        MOEQ_RETURN_IF_ERROR(ReadQuantParams(
            *o, config_path + ": field 'quantization." + module + "'", &bits, &group, &mode));
      }
    }
    if (mode != "affine") {
      return Status::Unsupported(where + ": quantization mode '" + mode +
                                 "' (only 'affine' is supported)");
    }
    auto b = stored.find(module + ".biases");
    if (b == stored.end()) {
      return Status::Corruption(where + ": affine module '" + module + "' has no '" + module +
                                ".biases'");
    }
    const TensorInfo& wi = *w->second.first;
    const TensorInfo& si = *entry.first;
    const TensorInfo& bi = *b->second.first;
    const std::string wwhere =
        shard_files[static_cast<size_t>(w->second.second)] + ": tensor '" + wi.name + "'";
    if (wi.dtype != DType::kU32) {
      return Status::Corruption(wwhere + ": dtype " + std::string(DTypeName(wi.dtype)) +
                                ", expected U32 packed codes (module has scales)");
    }
    if (si.dtype != DType::kBF16 && si.dtype != DType::kF16 && si.dtype != DType::kF32) {
      return Status::Corruption(where + ": dtype " + std::string(DTypeName(si.dtype)) +
                                ", expected BF16, F16 or F32");
    }
    if (bi.dtype != si.dtype || bi.shape != si.shape) {
      return Status::Corruption(file + ": tensor '" + bi.name + "': dtype/shape " +
                                std::string(DTypeName(bi.dtype)) + " " + bi.ShapeString() +
                                " differ from the scales' " + std::string(DTypeName(si.dtype)) +
                                " " + si.ShapeString());
    }
    if (wi.shape.size() < 2 || si.shape.size() != wi.shape.size() ||
        !std::equal(wi.shape.begin(), wi.shape.end() - 1, si.shape.begin())) {
      return Status::Corruption(wwhere + ": packed shape " + wi.ShapeString() +
                                " does not match scales shape " + si.ShapeString());
    }
    const int64_t in = wi.shape.back() * 32 / bits;
    if ((wi.shape.back() * 32) % bits != 0 || si.shape.back() * group != in) {
      return Status::Corruption(wwhere + ": packed shape " + wi.ShapeString() +
                                " and scales shape " + si.ShapeString() + " do not fit bits " +
                                std::to_string(bits) + ", group_size " + std::to_string(group) +
                                " (" + config_path + ")");
    }
    StoredQuant q;
    q.logical.name = wi.name;
    q.logical.dtype = si.dtype;
    q.logical.shape = wi.shape;
    q.logical.shape.back() = in;
    MOEQ_RETURN_IF_ERROR(
        quant::CheckAffineParams(q.logical.shape, bits, group, si.dtype).WithContext(wwhere));
    q.quant.bits = bits;
    q.quant.group_size = group;
    q.quant.mode = mode;
    q.quant.weight = wi.name;
    q.quant.scales = si.name;
    q.quant.biases = bi.name;
    q.quant.stored_bytes = wi.nbytes() + si.nbytes() + bi.nbytes();
    (*part_shard)[wi.name] = w->second.second;
    (*part_shard)[si.name] = entry.second;
    (*part_shard)[bi.name] = b->second.second;
    out.emplace(wi.name, std::move(q));
  }
  return out;
}

/// mlx-lm's stacked expert names ("...switch_mlp.gate_proj.weight") of this config.
std::map<std::string, TensorId, std::less<>> StackedExpertNames(const ModelConfig& config,
                                                                const ArchAdapter& adapter) {
  std::map<std::string, TensorId, std::less<>> out;
  if (!config.is_moe()) return out;
  for (int l = 0; l < static_cast<int>(config.num_layers); ++l) {
    if (!config.IsMoeLayer(l)) continue;
    for (TensorRole role :
         {TensorRole::kExpertGate, TensorRole::kExpertUp, TensorRole::kExpertDown}) {
      auto module = MlxStackedModule(adapter, l, role);
      if (module.ok()) out.emplace(*module + ".weight", TensorId{l, -1, role});
    }
  }
  return out;
}

}  // namespace

Checkpoint::Checkpoint() = default;
Checkpoint::~Checkpoint() = default;

Result<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir,
                                                     const CheckpointOptions& options) try {
  std::error_code ec;
  if (IsGgufPath(dir) && fs::is_regular_file(dir, ec)) return OpenGguf(dir, options);
  if (!fs::is_directory(dir, ec)) return Status::NotFound(dir + ": not a directory");
  const std::string config_path = JoinPath(dir, kConfigName);
  MOEQ_ASSIGN_OR_RETURN(std::string config_bytes, ReadFile(config_path));
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json config_json, ReadJsonFile(config_path));

  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  MOEQ_ASSIGN_OR_RETURN(ckpt->config_, ParseModelConfig(config_json, config_path));
  {
    auto adapter = MakeArchAdapter(ckpt->config_);
    if (!adapter.ok()) return adapter.status().WithContext(config_path);
    ckpt->adapter_ = std::move(adapter).value();
  }

  MOEQ_ASSIGN_OR_RETURN(ShardPlan plan, ResolveShards(dir));
  for (const auto& file : plan.files) {
    MOEQ_ASSIGN_OR_RETURN(auto shard, SafetensorsFile::Open(JoinPath(dir, file)));
    ckpt->shards_.push_back(std::move(shard));
  }
  ckpt->shard_files_ = plan.files;
  MOEQ_RETURN_IF_ERROR(CheckShardTables(dir, plan, ckpt->shards_));

  MOEQ_ASSIGN_OR_RETURN(auto triples, FindQuantizedTriples(config_path, config_json, ckpt->shards_,
                                                           ckpt->shard_files_, &ckpt->part_shard_));
  std::set<std::string, std::less<>> parts;  // scales/biases presented as part of their weight
  for (const auto& [name, q] : triples) {
    parts.insert(q.quant.scales);
    parts.insert(q.quant.biases);
  }
  const auto stacked = StackedExpertNames(ckpt->config_, *ckpt->adapter_);
  std::vector<std::string> unknown;
  for (size_t s = 0; s < ckpt->shards_.size(); ++s) {
    for (const auto& info : ckpt->shards_[s]->tensors()) {
      if (parts.count(info.name)) continue;
      CheckpointTensor t;
      t.info = info;
      t.shard = static_cast<int>(s);
      if (auto q = triples.find(info.name); q != triples.end()) {
        t.info = q->second.logical;
        t.quant = q->second.quant;
        ++ckpt->quantized_tensors_;
      }
      if (auto st = stacked.find(info.name); st != stacked.end()) {
        t.id = st->second;
        t.fused_experts = true;
      } else if (auto classified = ckpt->adapter_->Classify(info.name)) {
        t.id = classified->id;
        t.fused_experts = classified->fused_experts;
      } else {
        unknown.push_back(info.name);
      }
      ckpt->tensors_.push_back(std::move(t));
    }
  }
  std::sort(unknown.begin(), unknown.end());
  if (!unknown.empty()) {
    const std::string what = std::to_string(unknown.size()) +
                             " tensors not recognised for model_type '" + ckpt->config_.model_type +
                             "': " + ListNames(unknown);
    if (options.strict) return Status::Unsupported(dir + ": " + what);
    spdlog::warn("{}: {} (kept, never quantized)", dir, what);
  }
  MOEQ_RETURN_IF_ERROR(
      CheckAgainstConfig(dir, ckpt->config_, *ckpt->adapter_, ckpt->tensors_, ckpt->shard_files_));
  if (options.check_finite) {
    MOEQ_RETURN_IF_ERROR(CheckAllFinite(ckpt->tensors_, ckpt->shards_, ckpt->shard_files_));
    for (const auto& t : ckpt->tensors_) {
      if (!t.quant.quantized()) continue;
      for (const std::string* part : {&t.quant.scales, &t.quant.biases}) {
        const size_t sh = static_cast<size_t>(ckpt->part_shard_.at(*part));
        MOEQ_ASSIGN_OR_RETURN(TensorView v, ckpt->shards_[sh]->View(*part));
        MOEQ_RETURN_IF_ERROR(CheckFinite(v, ckpt->shard_files_[sh]));
      }
    }
  }

  std::sort(ckpt->tensors_.begin(), ckpt->tensors_.end(),
            [](const CheckpointTensor& a, const CheckpointTensor& b) {
              if (a.id == b.id) return a.info.name < b.info.name;
              return a.id < b.id;
            });
  for (size_t i = 0; i < ckpt->tensors_.size(); ++i) {
    ckpt->by_name_.emplace(ckpt->tensors_[i].info.name, i);
  }
  MOEQ_ASSIGN_OR_RETURN(ckpt->extra_files_, ListExtraFiles(dir));
  ckpt->fingerprint_ = Fingerprint(config_bytes, ckpt->tensors_, ckpt->shards_, ckpt->shard_files_);
  return ckpt;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(dir + ": " + JsonExceptionText(e));
}

const CheckpointTensor* Checkpoint::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Result<TensorView> Checkpoint::View(std::string_view name) const {
  const CheckpointTensor* t = Find(name);
  if (t == nullptr) {
    return Status::NotFound(dir_ + ": no tensor '" + std::string(name) + "' in the checkpoint");
  }
  if (gguf_) return checkpoint_internal::GgufView(*gguf_, *t, dir_);
  if (t->quant.quantized()) {
    return Status::Unsupported(dir_ + ": tensor '" + std::string(name) + "' is stored quantized (" +
                               std::to_string(t->quant.bits) + " bits, group " +
                               std::to_string(t->quant.group_size) + "); read it with ReadF32");
  }
  return shards_[static_cast<size_t>(t->shard)]->View(name);
}

Result<quant::QuantizedTensor> Checkpoint::ReadQuantized(std::string_view name) const {
  const CheckpointTensor* t = Find(name);
  if (t == nullptr) {
    return Status::NotFound(dir_ + ": no tensor '" + std::string(name) + "' in the checkpoint");
  }
  if (!t->quant.quantized()) {
    return Status::InvalidArgument(dir_ + ": tensor '" + std::string(name) + "' is not quantized");
  }
  auto part = [&](const std::string& part_name) -> Result<TensorView> {
    auto it = part_shard_.find(part_name);
    if (it == part_shard_.end())
      return Status::Internal(dir_ + ": no shard for '" + part_name + "'");
    return shards_[static_cast<size_t>(it->second)]->View(part_name);
  };
  MOEQ_ASSIGN_OR_RETURN(TensorView w, part(t->quant.weight));
  MOEQ_ASSIGN_OR_RETURN(TensorView sc, part(t->quant.scales));
  MOEQ_ASSIGN_OR_RETURN(TensorView bi, part(t->quant.biases));
  quant::QuantizedTensor q;
  q.shape = t->info.shape;
  q.bits = t->quant.bits;
  q.group_size = t->quant.group_size;
  q.scale_dtype = t->info.dtype;
  q.packed.resize(w.data.size() / sizeof(uint32_t));
  std::memcpy(q.packed.data(), w.data.data(), q.packed.size() * sizeof(uint32_t));
  q.scales.assign(sc.data.begin(), sc.data.end());
  q.biases.assign(bi.data.begin(), bi.data.end());
  return q;
}

Status Checkpoint::ReadF32(std::string_view name, std::vector<float>* out, int threads) const {
  const CheckpointTensor* t = Find(name);
  if (t == nullptr) {
    return Status::NotFound(dir_ + ": no tensor '" + std::string(name) + "' in the checkpoint");
  }
  if (gguf_) return ReadGgufF32(*gguf_, *t, dir_, out);
  if (t->quant.quantized()) {
    MOEQ_ASSIGN_OR_RETURN(quant::QuantizedTensor q, ReadQuantized(name));
    auto deq = quant::Dequantize(q, threads);
    if (!deq.ok()) return deq.status().WithContext(dir_ + ": tensor '" + std::string(name) + "'");
    *out = std::move(deq).value();
    return Status::Ok();
  }
  MOEQ_ASSIGN_OR_RETURN(TensorView view, View(name));
  out->resize(static_cast<size_t>(view.numel()));
  return ConvertToF32(view, 0, view.numel(), out->data());
}

namespace {

// fn(shard index, stored name) for each stored part of `t` (the tensor itself, or a quantized
// tensor's weight, scales and biases, each in the shard `part_shard` names).
template <class PartShard, class Fn>
void ForEachStoredPart(const CheckpointTensor& t, std::string_view name,
                       const PartShard& part_shard, Fn fn) {
  if (!t.quant.quantized()) {
    fn(t.shard, name);
    return;
  }
  for (const std::string* part : {&t.quant.weight, &t.quant.scales, &t.quant.biases}) {
    if (auto it = part_shard.find(*part); it != part_shard.end()) fn(it->second, *part);
  }
}

}  // namespace

void Checkpoint::Prefetch(std::string_view name) const {
  const CheckpointTensor* t = Find(name);
  if (t == nullptr || gguf_) return;
  ForEachStoredPart(*t, name, part_shard_, [&](int shard, std::string_view part) {
    shards_[static_cast<size_t>(shard)]->Prefetch(part);
  });
}

void Checkpoint::Release(std::string_view name) const {
  const CheckpointTensor* t = Find(name);
  if (t == nullptr || gguf_) return;
  ForEachStoredPart(*t, name, part_shard_, [&](int shard, std::string_view part) {
    shards_[static_cast<size_t>(shard)]->Release(part);
  });
}

std::vector<std::string> Checkpoint::unknown_tensors() const {
  std::vector<std::string> out;
  for (const auto& t : tensors_) {
    if (t.id.role == TensorRole::kUnknown) out.push_back(t.info.name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moeq
