// moeq-synth: seeded checkpoints with the shapes of real MoE models (include/moeq/synth.h,
// docs/scale.md). The tensor list comes from the architecture adapter, so what is written is
// exactly what Checkpoint::Open expects for the config.
#include "moeq/checkpoint/synth.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/base/half.h"
#include "moeq/base/parallel.h"
#include "moeq/formats/safetensors.h"
#include "moeq/model/arch.h"
#include "moeq/model/model_config.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t NameHash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// 32-bit integer hash (xor-shift / multiply rounds), the counter-based generator of every
// element: vectorises (32-bit multiplies) and needs no state, so any piece of any tensor can be
// generated independently.
inline uint32_t Hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Standard normal from one 64-bit value (Box-Muller), for per-tensor/row/column parameters.
double Normal64(uint64_t h) {
  const double u1 = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = static_cast<double>(Mix64(h) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

constexpr int kGroup = 128;  // outlier-group width along the input dimension

/// Everything that defines a tensor's values.
struct TensorGen {
  TensorInfo info;  // bf16, final (per-expert) shape
  TensorId id;
  uint64_t key = 0;
  int64_t rows = 1, cols = 1;
  bool vector = false;                   // 1-D (norm weights)
  float scale = 1.0f;                    // per-tensor standard deviation
  float offset = 0.0f;                   // norm weights: around 1
  uint32_t group_outlier_threshold = 0;  // P(group is an outlier) * 2^32
  int rank = 0;                          // > 0: low-rank plus noise
  uint64_t channel_key = 0;  // input-channel scales (shared by the tensors reading one layer input)
  bool outliers = true;      // outlier channels and groups (not for embedding / lm_head)
};

// Approximately standard normal values: Irwin-Hall sum of four 16-bit uniforms, with a
// heavy tail: one element in 512 is scaled by 4 (so the kurtosis is well above a Gaussian's).
// Fills v[0, n) for counters c0 .. c0 + n.
void NormalBlock(uint32_t stream, uint32_t c0, int64_t n, float* v) {
  constexpr float kNorm = 1.7320508f / 65536.0f;  // sqrt(3) / 2^16: variance of the sum -> 1
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t c = (c0 + static_cast<uint32_t>(i)) * 3u + stream;
    const uint32_t a = Hash32(c), b = Hash32(c + 1u), t = Hash32(c + 2u);
    const float s = static_cast<float>(a & 0xffffu) + static_cast<float>(a >> 16) +
                    static_cast<float>(b & 0xffffu) + static_cast<float>(b >> 16);
    const float tail = (t & 511u) == 0u ? 4.0f : 1.0f;
    v[i] = (s - 131070.0f) * kNorm * tail;
  }
}

/// Generates rows [r0, r1) of `g` as float32 into `out` ((r1 - r0) * cols).
void GenerateRows(const TensorGen& g, int64_t r0, int64_t r1, float* out, std::vector<float>& tmp) {
  const int64_t C = g.cols;
  if (g.vector) {
    NormalBlock(static_cast<uint32_t>(g.key), static_cast<uint32_t>(r0 * C), (r1 - r0) * C, out);
    for (int64_t i = 0; i < (r1 - r0) * C; ++i) out[i] = g.offset + g.scale * out[i];
    return;
  }
  // Input-channel scales: log-normal (sigma 0.2), one channel in 256 an outlier (x6).
  tmp.resize(static_cast<size_t>(C + (g.rank > 0 ? g.rank * C + g.rank : 0)));
  float* cs = tmp.data();
  for (int64_t c = 0; c < C; ++c) {
    const uint64_t h = Mix64(g.channel_key ^ (static_cast<uint64_t>(c) * 0x9e3779b97f4a7c15ULL));
    cs[c] = static_cast<float>(std::exp(0.2 * Normal64(h)) *
                               (g.outliers && (h & 255u) == 7u ? 6.0 : 1.0));
  }
  float* V = cs + C;  // low-rank factor [rank, C]
  if (g.rank > 0) {
    for (int k = 0; k < g.rank; ++k) {
      NormalBlock(static_cast<uint32_t>(g.key >> 32) ^ 0x5bd1e995u, static_cast<uint32_t>(k * C), C,
                  V + k * C);
    }
  }
  float* u = V + g.rank * C;
  const float inv_sqrt_rank = g.rank > 0 ? 1.0f / std::sqrt(static_cast<float>(g.rank)) : 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    float* w = out + (r - r0) * C;
    const uint32_t stream =
        Hash32(static_cast<uint32_t>(g.key) ^ Hash32(static_cast<uint32_t>(r) + 0x68e31da4u));
    NormalBlock(stream, 0, C, w);
    if (g.rank > 0) {
      // Low rank plus noise: 0.95 * (U V) / sqrt(rank) + 0.3 * noise (unit variance overall).
      const uint64_t hr = Mix64(g.key ^ (static_cast<uint64_t>(r) << 20));
      for (int k = 0; k < g.rank; ++k)
        u[k] = static_cast<float>(Normal64(hr + static_cast<uint64_t>(k)));
      for (int64_t c = 0; c < C; ++c) w[c] *= 0.3f;
      for (int k = 0; k < g.rank; ++k) {
        const float uk = 0.95f * u[k] * inv_sqrt_rank;
        const float* vk = V + k * C;
        for (int64_t c = 0; c < C; ++c) w[c] += uk * vk[c];
      }
    }
    // Row scale (log-normal, sigma 0.15; routers 0.3 so some experts are favoured) and
    // outlier groups of kGroup input channels (x3..x8).
    const uint64_t hrow = Mix64(g.key + static_cast<uint64_t>(r) * 0x632be59bd9b4e019ULL);
    const double row_sigma = g.id.role == TensorRole::kRouter ? 0.3 : 0.15;
    const float row_scale = g.scale * static_cast<float>(std::exp(row_sigma * Normal64(hrow)));
    for (int64_t c0 = 0; c0 < C; c0 += kGroup) {
      const int64_t c1 = std::min(C, c0 + kGroup);
      const uint32_t hg = Hash32(stream ^ Hash32(static_cast<uint32_t>(c0) + 0x1b873593u));
      const float gs = hg < g.group_outlier_threshold
                           ? 3.0f + 5.0f * static_cast<float>(hg & 0xffu) / 255.0f
                           : 1.0f;
      const float s = row_scale * gs;
      for (int64_t c = c0; c < c1; ++c) w[c] *= s * cs[c];
    }
  }
}

TensorGen PlanTensor(const SynthOptions& o, const ModelConfig& cfg, const TensorId& id,
                     const std::string& name, const std::vector<int64_t>& shape) {
  TensorGen g;
  g.info = TensorInfo{name, DType::kBF16, shape};
  g.id = id;
  g.key = Mix64(o.seed * 0x2545f4914f6cdd1dULL ^ NameHash(name));
  g.vector = shape.size() == 1;
  g.cols = shape.back();
  g.rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) g.rows *= shape[i];
  const double tensor_sigma = Normal64(Mix64(g.key ^ 0x1234567ULL));
  if (g.vector) {
    // Norm weights around 1 (q/k norms a little wider), other vectors small.
    const bool norm = IsNormRole(id.role);
    g.offset = norm ? static_cast<float>(std::exp(0.2 * tensor_sigma)) : 0.0f;
    g.scale = norm ? 0.1f * g.offset : 0.02f;
    return g;
  }
  double gain = 1.0;
  switch (id.role) {
    case TensorRole::kEmbedding:
      gain = 0.5 * std::sqrt(static_cast<double>(g.cols));
      break;  // std 0.5
    case TensorRole::kLmHead:
      gain = 1.0;
      break;
    case TensorRole::kRouter:
      gain = 2.0;
      break;
    default:
      break;
  }
  // Per-tensor scale: log-normal (sigma 0.3) around gain / sqrt(fan_in).
  g.scale = static_cast<float>(gain / std::sqrt(static_cast<double>(g.cols)) *
                               std::exp(0.3 * tensor_sigma));
  // Outlier groups: 0 to 3% of a tensor's groups, varying per tensor.
  const double p_group = 0.03 * static_cast<double>((g.key >> 8) & 0xffff) / 65535.0;
  g.group_outlier_threshold = static_cast<uint32_t>(p_group * 4294967295.0);
  // The embedding and lm_head keep plain statistics: outliers there would only make the
  // logits of a random model extreme (perplexities of 1e30 instead of about the vocabulary).
  if (id.role == TensorRole::kEmbedding || id.role == TensorRole::kLmHead) {
    g.outliers = false;
    g.group_outlier_threshold = 0;
  }
  // One matrix in ten is low rank (4..32) plus noise.
  const bool matrix_role = id.role != TensorRole::kEmbedding && id.role != TensorRole::kLmHead &&
                           id.role != TensorRole::kRouter;
  if (matrix_role && std::min(g.rows, g.cols) >= 32 && (g.key >> 40) % 10 == 0) {
    g.rank = 4 + static_cast<int>((g.key >> 20) % 29);
  }
  // Tensors reading the same layer input share their outlier channels, as real models do.
  const bool reads_hidden = g.cols == cfg.hidden_size && id.layer >= 0;
  g.channel_key =
      reads_hidden ? Mix64(o.seed ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(id.layer + 1)))
                   : Mix64(g.key ^ 0xc0ffeeULL);
  return g;
}

}  // namespace

const std::vector<SynthPreset>& SynthPresets() {
  static const std::vector<SynthPreset> presets = {
      // Qwen/Qwen3-30B-A3B config.json.
      {"qwen3-30b-a3b", "qwen3_moe", 48, 2048, 32, 4, 128, 128, 8, 768, 6144, 151936, 1e6, 1e-6,
       40960, 151643, 151645, "qwen3"},
      // mistralai/Mixtral-8x7B-v0.1 config.json (its SentencePiece tokenizer is not bundled).
      {"mixtral-8x7b", "mixtral", 32, 4096, 32, 8, 128, 8, 2, 14336, 14336, 32000, 1e6, 1e-5, 32768,
       1, 2, ""},
  };
  return presets;
}

Result<SynthPreset> FindSynthPreset(const std::string& name) {
  std::string known;
  for (const auto& p : SynthPresets()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  return Status::InvalidArgument("unknown preset '" + name + "' (known: " + known + ")");
}

namespace {

Result<SynthPreset> Effective(const SynthOptions& o) {
  MOEQ_ASSIGN_OR_RETURN(SynthPreset p, FindSynthPreset(o.preset));
  auto over = [](int& field, int value, const char* what) -> Status {
    if (value < 0) return Status::InvalidArgument(std::string("--") + what + " must be positive");
    if (value > 0) field = value;
    return Status::Ok();
  };
  MOEQ_RETURN_IF_ERROR(over(p.layers, o.layers, "layers"));
  MOEQ_RETURN_IF_ERROR(over(p.hidden, o.hidden, "hidden"));
  MOEQ_RETURN_IF_ERROR(over(p.heads, o.heads, "heads"));
  MOEQ_RETURN_IF_ERROR(over(p.kv_heads, o.kv_heads, "kv-heads"));
  MOEQ_RETURN_IF_ERROR(over(p.head_dim, o.head_dim, "head-dim"));
  MOEQ_RETURN_IF_ERROR(over(p.experts, o.experts, "experts"));
  MOEQ_RETURN_IF_ERROR(over(p.top_k, o.top_k, "top-k"));
  MOEQ_RETURN_IF_ERROR(over(p.moe_ff, o.moe_ff, "moe-ff"));
  MOEQ_RETURN_IF_ERROR(over(p.vocab, o.vocab, "vocab"));
  if (p.model_type == "mixtral") p.dense_ff = p.moe_ff;
  if (p.top_k > p.experts) return Status::InvalidArgument("--top-k is larger than --experts");
  if (p.heads % p.kv_heads != 0)
    return Status::InvalidArgument("--heads must be a multiple of --kv-heads");
  if (p.head_dim % 2 != 0)
    return Status::InvalidArgument("--head-dim must be even (rotary embedding)");
  return p;
}

nlohmann::json ConfigOf(const SynthPreset& p) {
  using nlohmann::json;
  json c = {
      {"architectures",
       json::array({p.model_type == "mixtral" ? "MixtralForCausalLM" : "Qwen3MoeForCausalLM"})},
      {"model_type", p.model_type},
      {"hidden_size", p.hidden},
      {"num_hidden_layers", p.layers},
      {"num_attention_heads", p.heads},
      {"num_key_value_heads", p.kv_heads},
      {"head_dim", p.head_dim},
      {"vocab_size", p.vocab},
      {"hidden_act", "silu"},
      {"rms_norm_eps", p.rms_norm_eps},
      {"rope_theta", p.rope_theta},
      {"max_position_embeddings", p.max_position},
      {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"},
      {"bos_token_id", p.bos_id},
      {"eos_token_id", p.eos_id},
      {"attention_dropout", 0.0},
      {"initializer_range", 0.02},
      {"use_cache", true},
      {"num_experts_per_tok", p.top_k},
      {"output_router_logits", false},
  };
  if (p.model_type == "mixtral") {
    c["intermediate_size"] = p.moe_ff;
    c["num_local_experts"] = p.experts;
    c["router_aux_loss_coef"] = 0.02;
    c["sliding_window"] = nullptr;
  } else {
    c["intermediate_size"] = p.dense_ff;
    c["moe_intermediate_size"] = p.moe_ff;
    c["num_experts"] = p.experts;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = json::array();
    c["norm_topk_prob"] = true;
    c["attention_bias"] = false;
    c["max_window_layers"] = p.layers;
    c["rope_scaling"] = nullptr;
    c["router_aux_loss_coef"] = 0.001;
    c["sliding_window"] = nullptr;
    c["use_sliding_window"] = false;
  }
  return c;
}

}  // namespace

Result<std::string> SynthConfigJson(const SynthOptions& o) {
  MOEQ_ASSIGN_OR_RETURN(SynthPreset p, Effective(o));
  return DumpJson(ConfigOf(p));
}

Result<SynthSummary> WriteSynthCheckpoint(const std::string& dir, const SynthOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  MOEQ_ASSIGN_OR_RETURN(SynthPreset p, Effective(o));
  const nlohmann::json config_json = ConfigOf(p);
  MOEQ_ASSIGN_OR_RETURN(ModelConfig cfg, ParseModelConfig(config_json, "synth config.json"));
  MOEQ_ASSIGN_OR_RETURN(auto adapter, MakeArchAdapter(cfg));

  std::error_code ec;
  if (fs::exists(dir, ec) && !o.force) {
    return Status::AlreadyExists(dir + ": exists (use --force to replace it)");
  }
  // Tokenizer: the preset's bundled one unless the vocabulary was cut below it.
  std::string tok_dir = o.tokenizer_dir;
  if (tok_dir.empty() && !p.tokenizer.empty() && o.vocab == 0) {
    tok_dir = std::string(kSourceDir) + "/data/tokenizers/" + p.tokenizer;
  }
  if (!tok_dir.empty() && !fs::is_regular_file(tok_dir + "/tokenizer.json", ec)) {
    return Status::NotFound(tok_dir + ": no tokenizer.json to copy");
  }

  std::vector<TensorGen> gens;
  std::vector<TensorInfo> infos;
  for (const auto& [id, shape] : adapter->ExpectedTensors()) {
    gens.push_back(PlanTensor(o, cfg, id, adapter->Name(id), shape));
    infos.push_back(gens.back().info);
  }
  std::sort(gens.begin(), gens.end(),
            [](const TensorGen& a, const TensorGen& b) { return a.info.name < b.info.name; });

  const fs::path target(dir);
  const std::string tmp =
      (target.parent_path() / ("." + target.filename().string() + ".synth-tmp")).string();
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return Status::Io(tmp + ": cannot create directory: " + ec.message());

  ShardingOptions so;
  so.max_shard_bytes = o.shard_bytes;
  so.metadata = {{"format", "pt"},
                 {"producer", std::string("moeq-synth ") + kVersion},
                 {"preset", p.name},
                 {"seed", std::to_string(o.seed)}};
  SynthSummary sum;
  for (const auto& g : gens) {
    sum.parameters += g.info.numel();
    sum.bytes += g.info.nbytes();
  }
  so.index_metadata["total_parameters"] = static_cast<uint64_t>(sum.parameters);
  MOEQ_ASSIGN_OR_RETURN(auto writer, ShardedSafetensorsWriter::Create(tmp, infos, so));

  // Tensor by tensor in file order: pieces of about 4 MB generated in parallel into the
  // tensor's bf16 buffer, then one write. Memory: the largest tensor in bf16 (the embedding,
  // 622 MB at qwen3-30b-a3b's sizes) plus a few MB per thread.
  constexpr int64_t kItemBytes = int64_t{4} << 20;
  spdlog::info(
      "moeq-synth: {} ({} layers, hidden {}, {} experts top-{}, vocab {}): {} tensors, {:.2f} B "
      "parameters, "
      "{:.2f} GB bf16 into {}",
      p.name, p.layers, p.hidden, p.experts, p.top_k, p.vocab, gens.size(), sum.parameters / 1e9,
      sum.bytes / 1e9, dir);
  uint64_t done_bytes = 0;
  int last_report = 0;
  std::vector<uint16_t> h;
  for (const TensorGen& g : gens) {
    const int64_t per = std::max<int64_t>(1, kItemBytes / (g.cols * 2));
    const int64_t pieces = (g.rows + per - 1) / per;
    h.resize(static_cast<size_t>(g.rows * g.cols));
    ParallelFor(
        pieces,
        [&](int64_t k) {
          const int64_t r0 = k * per, r1 = std::min(g.rows, r0 + per);
          thread_local std::vector<float> f, tmp_f;
          const int64_t n = (r1 - r0) * g.cols;
          f.resize(static_cast<size_t>(n));
          GenerateRows(g, r0, r1, f.data(), tmp_f);
          uint16_t* dst = h.data() + r0 * g.cols;
          for (int64_t i = 0; i < n; ++i) dst[i] = F32ToBf16(f[static_cast<size_t>(i)]);
        },
        o.threads);
    MOEQ_RETURN_IF_ERROR(writer->Write(g.info.name, std::as_bytes(std::span<const uint16_t>(h))));
    done_bytes += g.info.nbytes();
    const int pct = static_cast<int>(100 * done_bytes / std::max<uint64_t>(1, sum.bytes));
    if (pct / 10 > last_report / 10) {
      last_report = pct;
      spdlog::info("moeq-synth: {}% ({:.1f} GB)", pct, done_bytes / 1e9);
    }
  }
  MOEQ_RETURN_IF_ERROR(writer->Finish());
  sum.shard_files = writer->shard_files();
  MOEQ_RETURN_IF_ERROR(WriteFileAtomic(tmp + "/config.json", DumpJson(config_json)));
  if (!tok_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "LICENSE"}) {
      const std::string from = tok_dir + "/" + f;
      if (!fs::is_regular_file(from, ec)) continue;
      // The licence notice travels under a name Checkpoint carries into derived checkpoints.
      const std::string to = tmp + "/" + (std::string(f) == "LICENSE" ? "LICENSE.tokenizer" : f);
      fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
      if (ec) return Status::Io(from + ": cannot copy to " + to + ": " + ec.message());
      fs::permissions(to,
                      fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                          fs::perms::others_read,
                      ec);
    }
    sum.tokenizer = true;
  }
  if (fs::exists(dir, ec)) {
    fs::remove_all(dir, ec);
    if (ec) return Status::Io(dir + ": cannot remove the previous output: " + ec.message());
  }
  fs::rename(tmp, dir, ec);
  if (ec) return Status::Io(dir + ": cannot rename from " + tmp + ": " + ec.message());
  sum.dir = dir;
  sum.tensors = static_cast<int64_t>(gens.size());
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("moeq-synth: wrote {} tensors, {:.2f} GB in {} shard(s) in {:.1f} s ({:.0f} MB/s)",
               sum.tensors, sum.bytes / 1e9, sum.shard_files.size(), sum.seconds,
               sum.bytes / 1e6 / std::max(1e-9, sum.seconds));
  return sum;
}

}  // namespace moeq
