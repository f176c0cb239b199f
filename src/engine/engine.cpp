// Engine: loads a checkpoint's weights (float32, or MLX affine-packed) and runs the decoder
// forward pass.
#include "moeq/engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>

#include "engine/ops.h"
#include "engine/qmatmul.h"
#include "moeq/base/half.h"
#include "moeq/base/parallel.h"
#include "moeq/formats/safetensors.h"
#include "moeq/model/family.h"

namespace moeq {

using engine::Linear;

namespace {

struct Mlp {
  Linear gate, up, down;
  bool empty() const { return gate.empty(); }
};

struct Layer {
  std::vector<float> input_norm, post_attn_norm, q_norm, k_norm;
  Linear q, k, v, o;
  bool moe = false;
  Linear router;
  std::vector<Mlp> experts;
  Mlp shared;
  Linear shared_gate;  // [1, hidden] sigmoid gate of the shared expert (qwen2_moe)
  Mlp dense;
  /// Packed experts (any routed expert held packed): experts in tier order — sorted by the
  /// formats of their (gate, up, down), stable by index — and [begin, end) of each tier in it.
  /// A tier's weights are contiguous in the layer's arena.
  bool packed_experts = false;
  std::vector<int32_t> tier_order;
  std::vector<std::pair<int64_t, int64_t>> tiers;
};

/// One packed tensor (or one expert's slice of a stacked one) waiting for its place.
struct PackedSource {
  const CheckpointTensor* tensor = nullptr;
  int64_t row0 = 0;  ///< first logical row (over all leading dims) of the slice
  int64_t rows = 0;
  int64_t in = 0;
};

/// Bytes a packed matrix takes in an arena: codes + pad, scales, biases, each 64-aligned.
int64_t Align64(int64_t n) { return (n + 63) / 64 * 64; }
int64_t PackedFootprint(int bits, int group, int64_t scale_bytes, int64_t rows, int64_t in) {
  const int64_t codes = rows * in * bits / 8;
  const int64_t sb = rows * (in / group) * scale_bytes;
  return Align64(codes + engine::kPackedPadBytes) + 2 * Align64(sb);
}

// Where a loaded tensor goes.
std::vector<float>* VectorSlot(Layer& l, TensorRole role) {
  switch (role) {
    case TensorRole::kInputNorm:
      return &l.input_norm;
    case TensorRole::kPostAttnNorm:
      return &l.post_attn_norm;
    case TensorRole::kAttnQNorm:
      return &l.q_norm;
    case TensorRole::kAttnKNorm:
      return &l.k_norm;
    case TensorRole::kAttnQBias:
      return &l.q.b;
    case TensorRole::kAttnKBias:
      return &l.k.b;
    case TensorRole::kAttnVBias:
      return &l.v.b;
    case TensorRole::kAttnOBias:
      return &l.o.b;
    default:
      return nullptr;
  }
}

Linear* LinearSlot(Layer& l, TensorRole role, int expert) {
  auto expert_mlp = [&]() -> Mlp* {
    if (expert < 0 || static_cast<size_t>(expert) >= l.experts.size()) return nullptr;
    return &l.experts[static_cast<size_t>(expert)];
  };
  switch (role) {
    case TensorRole::kAttnQ:
      return &l.q;
    case TensorRole::kAttnK:
      return &l.k;
    case TensorRole::kAttnV:
      return &l.v;
    case TensorRole::kAttnO:
      return &l.o;
    case TensorRole::kRouter:
      return &l.router;
    case TensorRole::kExpertGate:
      return expert_mlp() ? &expert_mlp()->gate : nullptr;
    case TensorRole::kExpertUp:
      return expert_mlp() ? &expert_mlp()->up : nullptr;
    case TensorRole::kExpertDown:
      return expert_mlp() ? &expert_mlp()->down : nullptr;
    case TensorRole::kSharedGate:
      return &l.shared.gate;
    case TensorRole::kSharedUp:
      return &l.shared.up;
    case TensorRole::kSharedDown:
      return &l.shared.down;
    case TensorRole::kSharedExpertGate:
      return &l.shared_gate;
    case TensorRole::kMlpGate:
      return &l.dense.gate;
    case TensorRole::kMlpUp:
      return &l.dense.up;
    case TensorRole::kMlpDown:
      return &l.dense.down;
    default:
      return nullptr;
  }
}

engine::PackedScale ToPackedScale(DType d) {
  return d == DType::kF32
             ? engine::PackedScale::kF32
             : (d == DType::kF16 ? engine::PackedScale::kF16 : engine::PackedScale::kBF16);
}

/// Where a float weight tensor's values come from: the mapping (bf16/f16 or f32) or a
/// converted/dequantized copy.
struct FloatSource {
  const uint16_t* h = nullptr;
  bool f16 = false;
  const float* f = nullptr;
  std::vector<float> owned;
  bool mapped() const { return h != nullptr || f != nullptr; }
  /// Points `lin` at elements [offset, offset + out * in) (copies them when not mapped).
  void Bind(Linear* lin, int64_t offset, int64_t out, int64_t in) const {
    lin->out = out;
    lin->in = in;
    if (h) {
      lin->wh = h + offset;
      lin->wh_f16 = f16;
    } else if (f) {
      lin->wf = f + offset;
    } else {
      lin->w.assign(owned.data() + offset, owned.data() + offset + out * in);
    }
  }
};

}  // namespace

namespace {

// Per-thread buffers of a forward pass, kept between calls. A 512-token window allocates
// several MiB of activations per layer; as fresh allocations these are mmap'ed (or the heap
// top is trimmed and regrown) depending on glibc's allocator state, and then page faults and
// zero-filling cost up to ~20% of a prefill and made the timing of otherwise identical work
// depend on what ran before (bench_infer measured uniform and mixed-precision plans 15%
// apart for that reason alone). Reusing the capacity removes both. Every buffer is fully
// overwritten before it is read, so reuse does not change any result. A nested call on the
// same thread (from an observer) gets fresh buffers.
struct ForwardScratch {
  bool busy = false;
  std::vector<float> x, h, q, k, v, att, o, mlp;
  // MoePacked
  std::vector<float> probs, weights, X, G, U, Y, sh, g;
  std::vector<int32_t> chosen;
  std::vector<int64_t> count, first, fill, row_of_slot;
  engine::Int8RowsBuffer Xq, Gq;  // int8 activations: X and G quantized once per layer
};

class ScratchLease {
 public:
  ScratchLease() {
    thread_local ForwardScratch tls;
    if (tls.busy) {
      own_ = std::make_unique<ForwardScratch>();
      s_ = own_.get();
    } else {
      s_ = &tls;
    }
    s_->busy = true;
  }
  ~ScratchLease() { s_->busy = false; }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  ForwardScratch& operator*() const { return *s_; }

 private:
  std::unique_ptr<ForwardScratch> own_;
  ForwardScratch* s_ = nullptr;
};

}  // namespace

struct Engine::Impl {
  ModelConfig cfg;
  int default_threads = 0;
  bool normalize_topk = false;
  /// The checkpoint the weights are used from (the engine's own handle on the directory).
  std::unique_ptr<Checkpoint> source;
  Linear embed;         // float embedding [vocab, hidden] (in place or owned)
  Linear embed_packed;  // packed embedding [vocab, hidden] (rows dequantized on lookup)
  Linear lm_head;
  std::vector<float> final_norm;
  std::vector<Layer> layers;
  uint64_t bytes = 0;         // weights the engine owns (converted, dequantized, copied)
  uint64_t mapped_bytes = 0;  // weights used in place from the mapped checkpoint
  int64_t packed_count = 0;
  /// Float-bound linear layers of each checkpoint tensor (several for fused experts or tied
  /// embeddings), with the element offset of each in the tensor: what OverrideWeights replaces.
  std::map<std::string, std::vector<std::pair<Linear*, int64_t>>, std::less<>> bindings;
  struct SavedLinear {
    Linear* lin;
    std::vector<float> w;
    const float* wf;
    const uint16_t* wh;
    bool wh_f16;
  };
  std::vector<SavedLinear> saved;  // state before the overrides, in order
  std::vector<std::unique_ptr<std::vector<float>>> override_values;
  /// Memory of the packed weights: one arena per packed non-expert tensor, one per MoE layer.
  std::vector<std::unique_ptr<uint8_t[]>> arenas;

  Status Check(const std::string& dir) const;
  void Moe(const Layer& l, int layer_index, const std::vector<float>& h, int64_t T,
           std::vector<float>* out, ForwardObserver* obs, int threads) const;
  void Route(const Layer& l, const std::vector<float>& h, int64_t T, int threads,
             std::vector<float>* probs, std::vector<int32_t>* chosen,
             std::vector<float>* weights) const;
  void MoePacked(const Layer& l, int layer_index, const std::vector<float>& h, int64_t T,
                 std::vector<float>* out, ForwardObserver* obs, int threads,
                 ForwardScratch* scratch) const;
  int64_t vocab() const { return embed_packed.packed() ? embed_packed.out : embed.out; }
  Status Embed(std::span<const int32_t> tokens, std::vector<float>* x) const;
  void LayerStep(size_t li, std::vector<float>& x, int64_t T, int64_t pos0, KvCache* cache,
                 ForwardObserver* observer, int threads, ForwardScratch& s) const;
  void Head(std::vector<float>& x, int64_t T, std::vector<float>* logits, int threads) const;
  void EmbedRow(int32_t id, float* dst) const;
  uint8_t* NewArena(int64_t bytes_needed) {
    arenas.emplace_back(new uint8_t[static_cast<size_t>(bytes_needed)]());
    bytes += static_cast<uint64_t>(bytes_needed);
    return arenas.back().get();
  }
};

namespace {

// Copies rows [row0, row0 + rows) of a quantized tensor into `dst` (laid out as PackedFootprint
// says) and returns the view of them.
engine::PackedMatrix PlacePacked(const quant::QuantizedTensor& q, int64_t row0, int64_t rows,
                                 uint8_t* dst) {
  engine::PackedMatrix m;
  m.bits = q.bits;
  m.group = q.group_size;
  m.scale = ToPackedScale(q.scale_dtype);
  m.out = rows;
  m.in = q.cols();
  const int64_t rb = m.row_bytes();
  const int64_t sb = m.groups_per_row() * m.scale_bytes();
  const int64_t codes = rows * rb;
  std::memcpy(dst, reinterpret_cast<const uint8_t*>(q.packed.data()) + row0 * rb,
              static_cast<size_t>(codes));
  uint8_t* sc = dst + Align64(codes + engine::kPackedPadBytes);
  uint8_t* bi = sc + Align64(rows * sb);
  std::memcpy(sc, q.scales.data() + row0 * sb, static_cast<size_t>(rows * sb));
  std::memcpy(bi, q.biases.data() + row0 * sb, static_cast<size_t>(rows * sb));
  m.codes = dst;
  m.scales = sc;
  m.biases = bi;
  return m;
}

/// Zero-copy views of a quantized tensor's stored parts in the mapped shards.
struct QuantizedView {
  TensorView weight, scales, biases;
  /// Bytes of the mapped shard readable after the end of `weight` (the packed kernels' vector
  /// loads may read up to kPackedPadBytes past the last code).
  uint64_t weight_tail = 0;
};

Result<QuantizedView> ViewQuantized(const Checkpoint& ckpt, const CheckpointTensor& t) {
  QuantizedView v;
  auto find = [&](const std::string& part, TensorView* view, uint64_t* tail) -> Status {
    for (int s = 0; s < static_cast<int>(ckpt.shard_files().size()); ++s) {
      const SafetensorsFile& f = ckpt.shard(s);
      if (f.Find(part) == nullptr) continue;
      MOEQ_ASSIGN_OR_RETURN(*view, f.View(part));
      if (tail) *tail = f.file_size() - (f.data_start() + f.Offsets(part).second);
      return Status::Ok();
    }
    return Status::NotFound(ckpt.dir() + ": tensor '" + t.info.name + "': stored part '" + part +
                            "' is in no shard");
  };
  MOEQ_RETURN_IF_ERROR(find(t.quant.weight, &v.weight, &v.weight_tail));
  MOEQ_RETURN_IF_ERROR(find(t.quant.scales, &v.scales, nullptr));
  MOEQ_RETURN_IF_ERROR(find(t.quant.biases, &v.biases, nullptr));
  return v;
}

// A view of rows [row0, row0 + rows) of a quantized tensor where it lies in the mapping.
Result<engine::PackedMatrix> ViewPacked(const Checkpoint& ckpt, const CheckpointTensor& t,
                                        const QuantizedView& v, int64_t row0, int64_t rows) {
  engine::PackedMatrix m;
  m.bits = t.quant.bits;
  m.group = t.quant.group_size;
  m.scale = ToPackedScale(t.info.dtype);
  m.out = rows;
  m.in = t.info.shape.back();
  const int64_t rb = m.row_bytes();
  const int64_t sb = m.groups_per_row() * m.scale_bytes();
  const auto end_rows = static_cast<uint64_t>(row0 + rows);
  if (v.weight.data.size() < end_rows * static_cast<uint64_t>(rb) ||
      v.scales.data.size() < end_rows * static_cast<uint64_t>(sb) ||
      v.biases.data.size() < end_rows * static_cast<uint64_t>(sb)) {
    return Status::Corruption(ckpt.dir() + ": tensor '" + t.info.name +
                              "': stored parts are smaller than its shape " + t.info.ShapeString() +
                              " at " + std::to_string(m.bits) + " bits, group " +
                              std::to_string(m.group));
  }
  m.codes = reinterpret_cast<const uint8_t*>(v.weight.data.data()) + row0 * rb;
  m.scales = v.scales.data.data() + row0 * sb;
  m.biases = v.biases.data.data() + row0 * sb;
  return m;
}

int64_t FootprintOf(const CheckpointTensor& t, int64_t rows) {
  const int64_t sbytes = t.info.dtype == DType::kF32 ? 4 : 2;
  return PackedFootprint(t.quant.bits, t.quant.group_size, sbytes, rows, t.info.shape.back());
}

// A routed-expert projection's slot (0 gate, 1 up, 2 down).
int ProjIndex(TensorRole role) {
  switch (role) {
    case TensorRole::kExpertGate:
      return 0;
    case TensorRole::kExpertUp:
      return 1;
    case TensorRole::kExpertDown:
      return 2;
    default:
      return -1;
  }
}

}  // namespace

void Engine::Impl::EmbedRow(int32_t id, float* dst) const {
  const int64_t H = cfg.hidden_size;
  if (!embed_packed.packed()) {
    if (const float* f = embed.f32()) {
      std::copy_n(f + static_cast<int64_t>(id) * H, H, dst);
    } else {
      engine::HalfRowsToF32(embed.wh, embed.wh_f16, H, id, id + 1, dst);
    }
    return;
  }
  // Dequantized as MLX does (w = R(R(q * scale) + bias), R = rounding to the scale dtype), so
  // the embedding is the same as the dequantizing engine's.
  const engine::PackedMatrix& m = embed_packed.q;
  const uint8_t* codes = m.codes + id * m.row_bytes();
  const int64_t ng = m.groups_per_row();
  auto load = [&](const void* base, int64_t i) -> float {
    if (m.scale == engine::PackedScale::kF32) {
      float f;
      std::memcpy(&f, static_cast<const uint8_t*>(base) + 4 * i, 4);
      return f;
    }
    uint16_t hbits;
    std::memcpy(&hbits, static_cast<const uint8_t*>(base) + 2 * i, 2);
    return m.scale == engine::PackedScale::kBF16 ? Bf16ToF32(hbits) : F16ToF32(hbits);
  };
  auto round = [&](float v) -> float {
    if (m.scale == engine::PackedScale::kBF16) return Bf16ToF32(F32ToBf16(v));
    if (m.scale == engine::PackedScale::kF16) return F16ToF32(F32ToF16(v));
    return v;
  };
  for (int64_t i = 0; i < H; ++i) {
    const int64_t bit = i * m.bits;
    const uint32_t two = static_cast<uint32_t>(codes[bit >> 3]) |
                         (static_cast<uint32_t>(codes[(bit >> 3) + 1]) << 8);
    const uint32_t q = (two >> (bit & 7)) & ((1u << m.bits) - 1u);
    const int64_t g = id * ng + i / m.group;
    const float prod = round(static_cast<float>(q) * load(m.scales, g));
    dst[i] = round(prod + load(m.biases, g));
  }
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const ModelConfig& Engine::config() const { return impl_->cfg; }
int64_t Engine::vocab_size() const { return impl_->lm_head.out; }
uint64_t Engine::weight_bytes() const { return impl_->bytes + impl_->mapped_bytes; }
uint64_t Engine::owned_weight_bytes() const { return impl_->bytes; }
int64_t Engine::packed_tensors() const { return impl_->packed_count; }
std::string Engine::kernel_name() {
  return std::string(engine::PackedIsaName(engine::DefaultPackedIsa()));
}

Result<std::unique_ptr<Engine>> Engine::Load(const Checkpoint& given,
                                             const EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  // Weights are used where they lie in the mapped files, so the engine keeps its own handle on
  // the directory: callers may close theirs while the engine lives.
  MOEQ_ASSIGN_OR_RETURN(impl->source, Checkpoint::Open(given.dir()));
  const Checkpoint& ckpt = *impl->source;
  const ModelConfig& cfg = ckpt.config();
  impl->cfg = cfg;
  impl->default_threads = options.threads;
  const FamilyTraits* family = FindFamily(cfg.model_type);
  if (family == nullptr) {
    return Status::Unsupported(ckpt.dir() + ": model_type '" + cfg.model_type +
                               "' has no family traits");
  }
  impl->normalize_topk = RouterRenormalizesTopk(*family, cfg);
  if (cfg.kv_lora_rank > 0) {
    return Status::Unsupported(ckpt.dir() + ": model_type '" + cfg.model_type +
                               "' uses multi-head latent attention, which the engine does not run");
  }
  impl->layers.resize(static_cast<size_t>(cfg.num_layers));
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    Layer& l = impl->layers[static_cast<size_t>(i)];
    l.moe = cfg.IsMoeLayer(i);
    if (l.moe) l.experts.resize(static_cast<size_t>(cfg.num_experts));
  }

  // Packed routed experts: collect every (layer, expert, projection) slice first, so each MoE
  // layer's experts can be laid out in tier order in one arena.
  const bool packed = options.packed_weights;
  // layer -> [expert][proj] slice
  std::map<int64_t, std::vector<std::array<PackedSource, 3>>> expert_slices;
  if (packed) {
    for (const CheckpointTensor& t : ckpt.tensors()) {
      if (!t.quant.quantized()) continue;
      const int64_t li = t.id.layer;
      if (li < 0 || li >= cfg.num_layers || !impl->layers[static_cast<size_t>(li)].moe) continue;
      const auto& shape = t.info.shape;
      const int64_t E = static_cast<int64_t>(impl->layers[static_cast<size_t>(li)].experts.size());
      auto& slots = expert_slices[li];
      if (slots.empty()) slots.resize(static_cast<size_t>(E));
      if (t.fused_experts) {
        if (shape.size() != 3 || shape[0] != E) {
          return Status::Corruption(ckpt.dir() + ": tensor '" + t.info.name +
                                    "': fused expert tensor shape " + t.info.ShapeString() +
                                    " does not match " + std::to_string(E) + " experts");
        }
        const int64_t out = shape[1], in = shape[2];
        for (int64_t e = 0; e < E; ++e) {
          auto& s3 = slots[static_cast<size_t>(e)];
          if (t.id.role == TensorRole::kExpertGateUp) {
            s3[0] = {&t, e * out, out / 2, in};
            s3[1] = {&t, e * out + out / 2, out / 2, in};
          } else if (const int p = ProjIndex(t.id.role); p >= 0) {
            s3[static_cast<size_t>(p)] = {&t, e * out, out, in};
          }
        }
      } else if (const int p = ProjIndex(t.id.role);
                 p >= 0 && t.id.expert >= 0 && t.id.expert < E && shape.size() == 2) {
        slots[static_cast<size_t>(t.id.expert)][static_cast<size_t>(p)] = {&t, 0, shape[0],
                                                                           shape[1]};
      }
    }
    // Lay out each layer: experts sorted by format (tiers), each expert's gate, up, down.
    for (auto& [li, slots] : expert_slices) {
      Layer& l = impl->layers[static_cast<size_t>(li)];
      const int64_t E = static_cast<int64_t>(slots.size());
      auto key = [&](int64_t e) {
        std::array<int64_t, 3> k{};
        for (int p = 0; p < 3; ++p) {
          const PackedSource& src = slots[static_cast<size_t>(e)][static_cast<size_t>(p)];
          // Float projections sort first (key 0); packed ones by bits, group, scale dtype.
          k[static_cast<size_t>(p)] =
              src.tensor ? src.tensor->quant.bits * 100000 + src.tensor->quant.group_size * 10 +
                               static_cast<int64_t>(src.tensor->info.dtype == DType::kF32)
                         : 0;
        }
        return k;
      };
      l.tier_order.resize(static_cast<size_t>(E));
      std::iota(l.tier_order.begin(), l.tier_order.end(), 0);
      std::stable_sort(l.tier_order.begin(), l.tier_order.end(),
                       [&](int32_t a, int32_t b) { return key(a) > key(b); });
      // Tensors whose code stream has kPackedPadBytes of the mapping after it are used in
      // place; the others (a code stream at the very end of a shard) are copied into an arena.
      std::map<const CheckpointTensor*, QuantizedView> views;
      for (int64_t e = 0; e < E; ++e) {
        for (const PackedSource& src : slots[static_cast<size_t>(e)]) {
          if (!src.tensor || views.count(src.tensor)) continue;
          MOEQ_ASSIGN_OR_RETURN(views[src.tensor], ViewQuantized(ckpt, *src.tensor));
        }
      }
      auto in_place = [&](const CheckpointTensor* t) {
        return views.at(t).weight_tail >= static_cast<uint64_t>(engine::kPackedPadBytes);
      };
      int64_t total = 0;
      for (int64_t e = 0; e < E; ++e) {
        for (const PackedSource& src : slots[static_cast<size_t>(e)]) {
          if (src.tensor && !in_place(src.tensor)) total += FootprintOf(*src.tensor, src.rows);
        }
      }
      uint8_t* arena = total > 0 ? impl->NewArena(total) : nullptr;
      // Pointers first (data is copied tensor by tensor below).
      int64_t off = 0;
      std::map<const CheckpointTensor*, std::vector<std::pair<const PackedSource*, uint8_t*>>>
          dests;
      for (int64_t i = 0; i < E; ++i) {
        const int32_t e = l.tier_order[static_cast<size_t>(i)];
        if (i == 0 || key(e) != key(l.tier_order[static_cast<size_t>(i - 1)]))
          l.tiers.push_back({i, i});
        l.tiers.back().second = i + 1;
        for (const PackedSource& src : slots[static_cast<size_t>(e)]) {
          if (!src.tensor) continue;
          if (in_place(src.tensor)) {
            dests[src.tensor].push_back({&src, nullptr});
            continue;
          }
          dests[src.tensor].push_back({&src, arena + off});
          off += FootprintOf(*src.tensor, src.rows);
        }
      }
      for (auto& [t, list] : dests) {
        const bool mapped = in_place(t);
        quant::QuantizedTensor q;
        if (!mapped) {
          MOEQ_ASSIGN_OR_RETURN(q, ckpt.ReadQuantized(t->info.name));
          ckpt.Release(t->info.name);
        }
        for (auto& [src, dst] : list) {
          engine::PackedMatrix m;
          if (mapped) {
            MOEQ_ASSIGN_OR_RETURN(m, ViewPacked(ckpt, *t, views.at(t), src->row0, src->rows));
            impl->mapped_bytes += static_cast<uint64_t>(m.nbytes());
          } else {
            m = PlacePacked(q, src->row0, src->rows, dst);
          }
          m.int8_act = options.int8_activations;
          // Which expert/projection: find it back from the slot address.
          for (int64_t e = 0; e < E; ++e) {
            for (int p = 0; p < 3; ++p) {
              if (&slots[static_cast<size_t>(e)][static_cast<size_t>(p)] != src) continue;
              Mlp& mlp = l.experts[static_cast<size_t>(e)];
              Linear* lin = p == 0 ? &mlp.gate : (p == 1 ? &mlp.up : &mlp.down);
              lin->out = src->rows;
              lin->in = src->in;
              lin->q = m;
              ++impl->packed_count;
            }
          }
        }
      }
      l.packed_experts = true;
    }
  }

  std::vector<float> buf;
  for (const CheckpointTensor& t : ckpt.tensors()) {
    const TensorRole role = t.id.role;
    if (role == TensorRole::kBuffer || role == TensorRole::kUnknown) continue;
    const auto& shape = t.info.shape;
    auto where = [&] { return ckpt.dir() + ": tensor '" + t.info.name + "'"; };
    if (packed && t.quant.quantized()) {
      if (expert_slices.count(t.id.layer) && (t.fused_experts || ProjIndex(role) >= 0) &&
          (t.fused_experts || t.id.expert >= 0)) {
        continue;  // placed above
      }
      if (shape.size() != 2)
        return Status::Corruption(where() + ": expected a 2-D weight, got " + t.info.ShapeString());
      Linear* lin = nullptr;
      if (role == TensorRole::kEmbedding) {
        lin = &impl->embed_packed;
      } else if (role == TensorRole::kLmHead) {
        lin = &impl->lm_head;
      } else if (t.id.layer >= 0 && t.id.layer < cfg.num_layers) {
        lin = LinearSlot(impl->layers[static_cast<size_t>(t.id.layer)], role, t.id.expert);
      }
      if (lin == nullptr) {
        if (role == TensorRole::kRouterBias) {
          return Status::Unsupported(
              where() + ": router score-correction bias is not supported by the engine");
        }
        spdlog::debug("engine: ignoring tensor '{}'", t.info.name);
        continue;
      }
      MOEQ_ASSIGN_OR_RETURN(QuantizedView qv, ViewQuantized(ckpt, t));
      lin->out = shape[0];
      lin->in = shape[1];
      if (qv.weight_tail >= static_cast<uint64_t>(engine::kPackedPadBytes)) {
        MOEQ_ASSIGN_OR_RETURN(lin->q, ViewPacked(ckpt, t, qv, 0, shape[0]));
        impl->mapped_bytes += static_cast<uint64_t>(lin->q.nbytes());
      } else {
        MOEQ_ASSIGN_OR_RETURN(quant::QuantizedTensor q, ckpt.ReadQuantized(t.info.name));
        ckpt.Release(t.info.name);
        lin->q = PlacePacked(q, 0, shape[0], impl->NewArena(FootprintOf(t, shape[0])));
      }
      lin->q.int8_act = options.int8_activations;
      ++impl->packed_count;
      if (role == TensorRole::kEmbedding && cfg.tie_word_embeddings && impl->lm_head.empty()) {
        impl->lm_head.out = shape[0];
        impl->lm_head.in = shape[1];
        impl->lm_head.q = lin->q;
      }
      continue;
    }
    // Norms and biases are copied as float32. Matrices in bf16, f16 or f32 are used in place
    // from the mapping; others (F8, MLX-quantized without packed_weights) are converted or
    // dequantized (bit-exact with MLX) into memory the engine owns.
    const bool is_vector =
        role == TensorRole::kFinalNorm ||
        (t.id.layer >= 0 && t.id.layer < cfg.num_layers &&
         VectorSlot(impl->layers[static_cast<size_t>(t.id.layer)], role) != nullptr);
    if (is_vector) {
      MOEQ_RETURN_IF_ERROR(ckpt.ReadF32(t.info.name, &buf, options.threads));
      impl->bytes += buf.size() * sizeof(float);
      if (role == TensorRole::kFinalNorm) {
        impl->final_norm = buf;
      } else {
        *VectorSlot(impl->layers[static_cast<size_t>(t.id.layer)], role) = buf;
      }
      continue;
    }
    FloatSource src;
    if (!t.quant.quantized()) {
      MOEQ_ASSIGN_OR_RETURN(TensorView view, ckpt.View(t.info.name));
      const auto addr = reinterpret_cast<uintptr_t>(view.data.data());
      if ((t.info.dtype == DType::kBF16 || t.info.dtype == DType::kF16) && addr % 2 == 0) {
        src.h = reinterpret_cast<const uint16_t*>(view.data.data());
        src.f16 = t.info.dtype == DType::kF16;
      } else if (t.info.dtype == DType::kF32 && addr % 4 == 0) {
        src.f = reinterpret_cast<const float*>(view.data.data());
      }
    }
    if (!src.mapped()) {
      MOEQ_RETURN_IF_ERROR(ckpt.ReadF32(t.info.name, &src.owned, options.threads));
      ckpt.Release(t.info.name);
    }
    auto bind = [&](Linear* lin, int64_t offset, int64_t out, int64_t in) {
      src.Bind(lin, offset, out, in);
      impl->bindings[t.info.name].push_back({lin, offset});
      (src.mapped() ? impl->mapped_bytes : impl->bytes) +=
          static_cast<uint64_t>(lin->weight_bytes());
    };
    if (role == TensorRole::kEmbedding) {
      if (shape.size() != 2)
        return Status::Corruption(where() + ": expected a 2-D weight, got " + t.info.ShapeString());
      bind(&impl->embed, 0, shape[0], shape[1]);
      if (cfg.tie_word_embeddings && impl->lm_head.empty()) {
        impl->lm_head = impl->embed;
        impl->bindings[t.info.name].push_back({&impl->lm_head, 0});
      }
      continue;
    }
    if (role == TensorRole::kLmHead) {
      if (shape.size() != 2)
        return Status::Corruption(where() + ": expected a 2-D weight, got " + t.info.ShapeString());
      impl->lm_head = Linear();
      bind(&impl->lm_head, 0, shape[0], shape[1]);
      continue;
    }
    if (t.id.layer < 0 || t.id.layer >= cfg.num_layers) {
      return Status::Corruption(where() + ": layer index out of range");
    }
    Layer& l = impl->layers[static_cast<size_t>(t.id.layer)];
    if (t.fused_experts) {
      // [E, out, in]; gate_up holds gate rows then up rows.
      if (shape.size() != 3 || static_cast<size_t>(shape[0]) != l.experts.size()) {
        return Status::Corruption(where() + ": fused expert tensor shape " + t.info.ShapeString() +
                                  " does not match " + std::to_string(l.experts.size()) +
                                  " experts");
      }
      const int64_t out = shape[1], in = shape[2];
      for (int64_t e = 0; e < shape[0]; ++e) {
        const int64_t base = e * out * in;
        Mlp& m = l.experts[static_cast<size_t>(e)];
        if (role == TensorRole::kExpertGateUp) {
          bind(&m.gate, base, out / 2, in);
          bind(&m.up, base + (out / 2) * in, out / 2, in);
        } else if (role == TensorRole::kExpertGate) {
          bind(&m.gate, base, out, in);
        } else if (role == TensorRole::kExpertUp) {
          bind(&m.up, base, out, in);
        } else if (role == TensorRole::kExpertDown) {
          bind(&m.down, base, out, in);
        }
      }
      continue;
    }
    Linear* lin = LinearSlot(l, role, t.id.expert);
    if (!lin) {
      if (role == TensorRole::kRouterBias) {
        return Status::Unsupported(where() +
                                   ": router score-correction bias is not supported by the engine");
      }
      spdlog::debug("engine: ignoring tensor '{}'", t.info.name);
      continue;
    }
    if (shape.size() != 2)
      return Status::Corruption(where() + ": expected a 2-D weight, got " + t.info.ShapeString());
    bind(lin, 0, shape[0], shape[1]);
  }
  MOEQ_RETURN_IF_ERROR(impl->Check(ckpt.dir()));
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Status Engine::Impl::Check(const std::string& dir) const {
  auto missing = [&](const std::string& what) {
    return Status::NotFound(dir + ": the checkpoint has no " + what +
                            " (needed by the forward pass)");
  };
  if (embed.empty() && !embed_packed.packed()) return missing("token embedding");
  if (lm_head.empty()) return missing("lm_head");
  if (final_norm.empty()) return missing("final norm");
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    const std::string L = "layer " + std::to_string(i) + " ";
    if (l.input_norm.empty() || l.post_attn_norm.empty()) return missing(L + "norm");
    if (l.q.empty() || l.k.empty() || l.v.empty() || l.o.empty())
      return missing(L + "attention projection");
    if (l.moe) {
      if (l.router.empty()) return missing(L + "router");
      for (size_t e = 0; e < l.experts.size(); ++e) {
        const Mlp& m = l.experts[e];
        if (m.gate.empty() || m.up.empty() || m.down.empty())
          return missing(L + "expert " + std::to_string(e));
      }
    } else if (l.dense.empty()) {
      return missing(L + "MLP");
    }
  }
  return Status::Ok();
}

// The router: softmax over all experts, top-k (ties to the lower index), optional
// renormalisation. probs [T, E], chosen and weights [T, K].
void Engine::Impl::Route(const Layer& l, const std::vector<float>& h, int64_t T, int threads,
                         std::vector<float>* probs_out, std::vector<int32_t>* chosen_out,
                         std::vector<float>* weights_out) const {
  const int64_t E = static_cast<int64_t>(l.experts.size());
  const int64_t K = cfg.top_k;
  std::vector<float>& probs = *probs_out;
  engine::LinearForward(l.router, h.data(), T, &probs, threads);
  std::vector<int32_t>& chosen = *chosen_out;
  std::vector<float>& weights = *weights_out;
  chosen.assign(static_cast<size_t>(T * K), 0);
  weights.assign(static_cast<size_t>(T * K), 0.0f);
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    float* p = probs.data() + t * E;
    const float mx = *std::max_element(p, p + E);
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(p[e] - mx);
      sum += p[e];
    }
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float ksum = 0.0f;
    for (int64_t j = 0; j < K; ++j) ksum += p[order[static_cast<size_t>(j)]];
    for (int64_t j = 0; j < K; ++j) {
      const int32_t e = order[static_cast<size_t>(j)];
      chosen[static_cast<size_t>(t * K + j)] = e;
      weights[static_cast<size_t>(t * K + j)] = normalize_topk ? p[e] / ksum : p[e];
    }
  }
}

void Engine::Impl::Moe(const Layer& l, int layer_index, const std::vector<float>& h, int64_t T,
                       std::vector<float>* out, ForwardObserver* obs, int threads) const {
  const int64_t H = cfg.hidden_size, E = static_cast<int64_t>(l.experts.size());
  const int64_t K = cfg.top_k;
  std::vector<float> probs;
  std::vector<int32_t> chosen;
  std::vector<float> weights;
  Route(l, h, T, threads, &probs, &chosen, &weights);
  if (obs) obs->OnRouting(layer_index, T, static_cast<int>(K), chosen, weights, probs, h);

  // Sort the window's (token, slot) pairs by expert: one product per expert.
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(E));
  for (int64_t s = 0; s < T * K; ++s)
    slots[static_cast<size_t>(chosen[static_cast<size_t>(s)])].push_back(s);
  std::vector<float> slot_out(static_cast<size_t>(T * K * H));
  ParallelFor(
      E,
      [&](int64_t e) {
        const auto& ss = slots[static_cast<size_t>(e)];
        if (ss.empty()) return;
        const int64_t n = static_cast<int64_t>(ss.size());
        std::vector<float> x(static_cast<size_t>(n * H)), y;
        for (int64_t i = 0; i < n; ++i) {
          const int64_t tok = ss[static_cast<size_t>(i)] / K;
          std::copy_n(h.data() + tok * H, H, x.data() + i * H);
        }
        const Mlp& m = l.experts[static_cast<size_t>(e)];
        std::vector<float> act;
        engine::SwiGluForward(m.gate, m.up, m.down, x.data(), n, &y, 1, obs ? &act : nullptr);
        if (obs) obs->OnExpertActivation(layer_index, static_cast<int>(e), n, act);
        for (int64_t i = 0; i < n; ++i) {
          std::copy_n(y.data() + i * H, H, slot_out.data() + ss[static_cast<size_t>(i)] * H);
        }
      },
      threads);
  out->assign(static_cast<size_t>(T * H), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    float* o = out->data() + t * H;
    for (int64_t j = 0; j < K; ++j) {
      const float w = weights[static_cast<size_t>(t * K + j)];
      const float* y = slot_out.data() + (t * K + j) * H;
      for (int64_t i = 0; i < H; ++i) o[i] += w * y[i];
    }
  }
  if (!l.shared.empty()) {
    std::vector<float> sh;
    engine::SwiGluForward(l.shared.gate, l.shared.up, l.shared.down, h.data(), T, &sh, threads);
    std::vector<float> g;
    if (!l.shared_gate.empty()) engine::LinearForward(l.shared_gate, h.data(), T, &g, threads);
    for (int64_t t = 0; t < T; ++t) {
      const float gate = g.empty() ? 1.0f : 1.0f / (1.0f + std::exp(-g[static_cast<size_t>(t)]));
      for (int64_t i = 0; i < H; ++i)
        (*out)[static_cast<size_t>(t * H + i)] += gate * sh[static_cast<size_t>(t * H + i)];
    }
  }
}

// Tier-sorted dispatch over packed experts. The window's (token, slot) pairs are grouped by
// expert, and experts are visited in the layer's tier order (experts of one format are
// adjacent, their weights contiguous in the arena), so the gathered rows of a tier form one
// contiguous block of the activation buffer. Each phase (gate+up, then down) is one parallel
// pass over work items (expert, projection, tile of output rows) listed tier by tier; an item
// runs its tier's kernel on the expert's weights in place — nothing is copied per window but
// the activations. Each output element is computed by one fixed kernel sequence, so results
// do not depend on the thread count.
void Engine::Impl::MoePacked(const Layer& l, int layer_index, const std::vector<float>& h,
                             int64_t T, std::vector<float>* out, ForwardObserver* obs, int threads,
                             ForwardScratch* scratch) const {
  const int64_t H = cfg.hidden_size, E = static_cast<int64_t>(l.experts.size());
  const int64_t K = cfg.top_k;
  ForwardScratch& s = *scratch;
  std::vector<float>& probs = s.probs;
  std::vector<int32_t>& chosen = s.chosen;
  std::vector<float>& weights = s.weights;
  Route(l, h, T, threads, &probs, &chosen, &weights);
  if (obs) obs->OnRouting(layer_index, T, static_cast<int>(K), chosen, weights, probs, h);

  std::vector<int64_t>& count = s.count;
  std::vector<int64_t>& first = s.first;
  count.assign(static_cast<size_t>(E), 0);
  first.assign(static_cast<size_t>(E), 0);
  for (int64_t slot = 0; slot < T * K; ++slot)
    ++count[static_cast<size_t>(chosen[static_cast<size_t>(slot)])];
  int64_t n = 0;
  for (const int32_t e : l.tier_order) {
    first[static_cast<size_t>(e)] = n;
    n += count[static_cast<size_t>(e)];
  }
  const int64_t F = l.experts[0].gate.out;
  std::vector<int64_t>& fill = s.fill;
  std::vector<int64_t>& row_of_slot = s.row_of_slot;
  fill = first;
  row_of_slot.resize(static_cast<size_t>(T * K));
  // X, G, U and Y are fully overwritten: every gathered row belongs to an expert with tokens.
  std::vector<float>& X = s.X;
  X.resize(static_cast<size_t>(n * H));
  for (int64_t slot = 0; slot < T * K; ++slot) {
    const int64_t r = fill[static_cast<size_t>(chosen[static_cast<size_t>(slot)])]++;
    row_of_slot[static_cast<size_t>(slot)] = r;
    std::copy_n(h.data() + (slot / K) * H, H, X.data() + r * H);
  }

  struct Item {
    const Linear* lin;
    const float* x;
    engine::Int8Rows xq;  // x quantized (int8 activations; q == nullptr: none)
    int64_t rows;
    float* y;
    int64_t y_stride;
    int64_t o0, o1;
  };
  // With int8 activations the experts' inputs are quantized once, not once per work item.
  const bool int8 = l.experts[0].gate.q.int8_act;
  constexpr int64_t kItemRows = 64;
  std::vector<Item> items;
  int64_t macs = 0;
  // Rows [r0, r0 + rows) of quantized rows (int8), or none.
  auto rows_of = [&](const engine::Int8RowsBuffer& b, int64_t r0, int64_t rows) {
    engine::Int8Rows v;
    if (!int8) return v;
    v = b.view();
    v.q += r0 * v.in;
    v.d += r0 * v.blocks();
    v.sum += r0 * v.blocks();
    v.rows = rows;
    return v;
  };
  auto add_items = [&](const Linear& lin, const float* x, const engine::Int8Rows& xq, int64_t rows,
                       float* y) {
    for (int64_t o0 = 0; o0 < lin.out; o0 += kItemRows) {
      items.push_back({&lin, x, xq, rows, y, lin.out, o0, std::min(lin.out, o0 + kItemRows)});
    }
    macs += rows * lin.out * lin.in;
  };
  auto run_items = [&] {
    ParallelFor(
        static_cast<int64_t>(items.size()),
        [&](int64_t i) {
          const Item& it = items[static_cast<size_t>(i)];
          engine::LinearRange(*it.lin, it.x, it.rows, it.y, it.y_stride, it.o0, it.o1,
                              it.xq.q != nullptr ? &it.xq : nullptr);
        },
        macs < (int64_t{1} << 18) ? 1 : threads);
    items.clear();
    macs = 0;
  };

  std::vector<float>& G = s.G;
  std::vector<float>& U = s.U;
  G.resize(static_cast<size_t>(n * F));
  U.resize(static_cast<size_t>(n * F));
  if (int8) s.Xq.Quantize(X.data(), n, H, H, engine::DefaultPackedIsa());
  for (const auto& [b, e_end] : l.tiers) {
    for (int64_t i = b; i < e_end; ++i) {
      const int32_t e = l.tier_order[static_cast<size_t>(i)];
      const int64_t ne = count[static_cast<size_t>(e)], r0 = first[static_cast<size_t>(e)];
      if (ne == 0) continue;
      const Mlp& mlp = l.experts[static_cast<size_t>(e)];
      const engine::Int8Rows xq = rows_of(s.Xq, r0, ne);
      add_items(mlp.gate, X.data() + r0 * H, xq, ne, G.data() + r0 * F);
      add_items(mlp.up, X.data() + r0 * H, xq, ne, U.data() + r0 * F);
    }
  }
  run_items();
  engine::SiluMul(G.data(), U.data(), n * F);
  if (obs) {
    for (int64_t e = 0; e < E; ++e) {
      const int64_t ne = count[static_cast<size_t>(e)];
      if (ne == 0) continue;
      obs->OnExpertActivation(layer_index, static_cast<int>(e), ne,
                              std::span<const float>(G.data() + first[static_cast<size_t>(e)] * F,
                                                     static_cast<size_t>(ne * F)));
    }
  }
  std::vector<float>& Y = s.Y;
  Y.resize(static_cast<size_t>(n * H));
  if (int8) s.Gq.Quantize(G.data(), n, F, F, engine::DefaultPackedIsa());
  for (const auto& [b, e_end] : l.tiers) {
    for (int64_t i = b; i < e_end; ++i) {
      const int32_t e = l.tier_order[static_cast<size_t>(i)];
      const int64_t ne = count[static_cast<size_t>(e)], r0 = first[static_cast<size_t>(e)];
      if (ne == 0) continue;
      add_items(l.experts[static_cast<size_t>(e)].down, G.data() + r0 * F, rows_of(s.Gq, r0, ne),
                ne, Y.data() + r0 * H);
    }
  }
  run_items();

  out->assign(static_cast<size_t>(T * H), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    float* o = out->data() + t * H;
    for (int64_t j = 0; j < K; ++j) {
      const float w = weights[static_cast<size_t>(t * K + j)];
      const float* y = Y.data() + row_of_slot[static_cast<size_t>(t * K + j)] * H;
      for (int64_t i = 0; i < H; ++i) o[i] += w * y[i];
    }
  }
  if (!l.shared.empty()) {
    std::vector<float>& sh = s.sh;
    engine::SwiGluForward(l.shared.gate, l.shared.up, l.shared.down, h.data(), T, &sh, threads);
    std::vector<float>& g = s.g;
    g.clear();
    if (!l.shared_gate.empty()) engine::LinearForward(l.shared_gate, h.data(), T, &g, threads);
    for (int64_t t = 0; t < T; ++t) {
      const float gate = g.empty() ? 1.0f : 1.0f / (1.0f + std::exp(-g[static_cast<size_t>(t)]));
      for (int64_t i = 0; i < H; ++i)
        (*out)[static_cast<size_t>(t * H + i)] += gate * sh[static_cast<size_t>(t * H + i)];
    }
  }
}

Status Engine::Forward(std::span<const int32_t> tokens, std::vector<float>* logits,
                       ForwardObserver* observer, int threads_override) const {
  return Run(tokens, nullptr, logits, observer, threads_override);
}

Status Engine::ForwardIncremental(std::span<const int32_t> tokens, KvCache* cache,
                                  std::vector<float>* logits, int threads_override) const {
  if (cache == nullptr) return Status::InvalidArgument("ForwardIncremental needs a KvCache");
  return Run(tokens, cache, logits, nullptr, threads_override);
}

Status Engine::Impl::Embed(std::span<const int32_t> tokens, std::vector<float>* x) const {
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t H = cfg.hidden_size;
  const int64_t V = vocab();
  x->resize(static_cast<size_t>(T * H));
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= V) {
      return Status::InvalidArgument("token id " + std::to_string(id) + " at position " +
                                     std::to_string(t) + " is outside the vocabulary of " +
                                     std::to_string(V));
    }
    EmbedRow(id, x->data() + t * H);
  }
  return Status::Ok();
}

// One decoder layer on the residual stream x [T, hidden] (in place), positions pos0...
void Engine::Impl::LayerStep(size_t li, std::vector<float>& x, int64_t T, int64_t pos0,
                             KvCache* cache, ForwardObserver* observer, int threads,
                             ForwardScratch& s) const {
  const ModelConfig& c = cfg;
  const int64_t nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  std::vector<float>&h = s.h, &q = s.q, &k = s.k, &v = s.v, &att = s.att, &o = s.o, &mlp = s.mlp;
  const Layer& l = layers[li];
  h = x;
  engine::RmsNormRows(h.data(), T, l.input_norm, eps);
  if (observer) observer->OnAttentionInput(static_cast<int>(li), T, h);
  engine::LinearForward(l.q, h.data(), T, &q, threads);
  engine::LinearForward(l.k, h.data(), T, &k, threads);
  engine::LinearForward(l.v, h.data(), T, &v, threads);
  if (!l.q_norm.empty()) {
    // Per-head norms (qwen3) have head_dim weights; full-width ones (olmoe) cover all heads.
    const bool per_head = static_cast<int64_t>(l.q_norm.size()) == hd;
    engine::RmsNormRows(q.data(), per_head ? T * nh : T, l.q_norm, eps);
    engine::RmsNormRows(k.data(), per_head ? T * nkv : T, l.k_norm, eps);
  }
  engine::ApplyRope(q.data(), T, nh, hd, c.rope_theta, pos0);
  engine::ApplyRope(k.data(), T, nkv, hd, c.rope_theta, pos0);
  if (cache) {
    auto& kc = cache->k_[li];
    auto& vc = cache->v_[li];
    kc.insert(kc.end(), k.begin(), k.end());
    vc.insert(vc.end(), v.begin(), v.end());
    engine::CachedAttention(q, kc.data(), vc.data(), T, pos0, nh, nkv, hd, &att, threads);
  } else {
    engine::CausalAttention(q, k, v, T, nh, nkv, hd, &att, threads);
  }
  engine::LinearForward(l.o, att.data(), T, &o, threads);
  for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];

  h = x;
  engine::RmsNormRows(h.data(), T, l.post_attn_norm, eps);
  if (observer) observer->OnMlpInput(static_cast<int>(li), T, h);
  if (l.moe && l.packed_experts) {
    MoePacked(l, static_cast<int>(li), h, T, &mlp, observer, threads, &s);
  } else if (l.moe) {
    Moe(l, static_cast<int>(li), h, T, &mlp, observer, threads);
  } else {
    engine::SwiGluForward(l.dense.gate, l.dense.up, l.dense.down, h.data(), T, &mlp, threads);
  }
  for (size_t i = 0; i < x.size(); ++i) x[i] += mlp[i];
}

// Final norm (in place on x) and lm_head.
void Engine::Impl::Head(std::vector<float>& x, int64_t T, std::vector<float>* logits,
                        int threads) const {
  engine::RmsNormRows(x.data(), T, final_norm, static_cast<float>(cfg.rms_norm_eps));
  engine::LinearForward(lm_head, x.data(), T, logits, threads);
}

Status Engine::Run(std::span<const int32_t> tokens, KvCache* cache, std::vector<float>* logits,
                   ForwardObserver* observer, int threads_override) const {
  const Impl& m = *impl_;
  const int threads = threads_override >= 0 ? threads_override : m.default_threads;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t pos0 = cache ? cache->length_ : 0;
  if (cache && cache->k_.size() != m.layers.size()) {
    if (cache->length_ != 0)
      return Status::InvalidArgument("KvCache belongs to a model with another layer count");
    cache->k_.assign(m.layers.size(), {});
    cache->v_.assign(m.layers.size(), {});
  }
  ScratchLease lease;
  ForwardScratch& s = *lease;
  std::vector<float>& x = s.x;
  MOEQ_RETURN_IF_ERROR(m.Embed(tokens, &x));
  for (size_t li = 0; li < m.layers.size(); ++li)
    m.LayerStep(li, x, T, pos0, cache, observer, threads, s);
  if (cache) cache->length_ += T;
  m.Head(x, T, logits, threads);
  return Status::Ok();
}

Status Engine::ForwardHidden(std::span<const std::span<const int32_t>> windows,
                             std::vector<std::vector<float>>* hidden,
                             std::span<ForwardObserver* const> observers,
                             int threads_override) const {
  hidden->resize(windows.size());
  for (size_t w = 0; w < windows.size(); ++w)
    MOEQ_RETURN_IF_ERROR(impl_->Embed(windows[w], &(*hidden)[w]));
  return ForwardLayers(0, static_cast<int>(impl_->layers.size()), hidden, observers,
                       threads_override);
}

Status Engine::ForwardLayers(int begin, int end, std::vector<std::vector<float>>* hidden,
                             std::span<ForwardObserver* const> observers,
                             int threads_override) const {
  const Impl& m = *impl_;
  const int threads = ResolveThreads(threads_override >= 0 ? threads_override : m.default_threads);
  const auto W = static_cast<int64_t>(hidden->size());
  const int64_t H = m.cfg.hidden_size;
  if (begin < 0 || end > static_cast<int>(m.layers.size()) || begin > end) {
    return Status::InvalidArgument("ForwardLayers: layers [" + std::to_string(begin) + ", " +
                                   std::to_string(end) + ") outside the model's " +
                                   std::to_string(m.layers.size()));
  }
  if (!observers.empty() && static_cast<int64_t>(observers.size()) != W) {
    return Status::InvalidArgument("ForwardLayers: " + std::to_string(observers.size()) +
                                   " observers for " + std::to_string(W) + " windows");
  }
  for (const auto& x : *hidden) {
    if (x.size() % static_cast<size_t>(H) != 0) {
      return Status::InvalidArgument("ForwardLayers: a hidden state of " +
                                     std::to_string(x.size()) + " values is not whole rows of " +
                                     std::to_string(H));
    }
  }
  // With at least as many windows as threads, windows run concurrently one thread each (as
  // Evaluate always did); otherwise one after the other on all threads. Results are the same.
  const bool across = W >= threads;
  for (int li = begin; li < end; ++li) {
    ParallelFor(
        W,
        [&](int64_t w) {
          ScratchLease lease;
          std::vector<float>& x = (*hidden)[static_cast<size_t>(w)];
          m.LayerStep(static_cast<size_t>(li), x, static_cast<int64_t>(x.size()) / H, 0, nullptr,
                      observers.empty() ? nullptr : observers[static_cast<size_t>(w)],
                      across ? 1 : threads, *lease);
        },
        across ? threads : 1);
  }
  return Status::Ok();
}

Status Engine::OverrideWeights(const std::string& name, std::vector<float> values) {
  Impl& m = *impl_;
  auto it = m.bindings.find(name);
  if (it == m.bindings.end()) {
    return Status::InvalidArgument("OverrideWeights: tensor '" + name +
                                   "' is not a float weight of the engine");
  }
  for (const auto& [lin, offset] : it->second) {
    if (offset + lin->out * lin->in > static_cast<int64_t>(values.size())) {
      return Status::InvalidArgument(
          "OverrideWeights: tensor '" + name + "': " + std::to_string(values.size()) +
          " values, the engine's layers need " + std::to_string(offset + lin->out * lin->in));
    }
  }
  m.override_values.push_back(std::make_unique<std::vector<float>>(std::move(values)));
  const float* base = m.override_values.back()->data();
  for (const auto& [lin, offset] : it->second) {
    m.saved.push_back({lin, std::move(lin->w), lin->wf, lin->wh, lin->wh_f16});
    lin->w.clear();
    lin->wf = base + offset;
    lin->wh = nullptr;
  }
  return Status::Ok();
}

void Engine::ClearOverrides() {
  Impl& m = *impl_;
  for (auto it = m.saved.rbegin(); it != m.saved.rend(); ++it) {
    it->lin->w = std::move(it->w);
    it->lin->wf = it->wf;
    it->lin->wh = it->wh;
    it->lin->wh_f16 = it->wh_f16;
  }
  m.saved.clear();
  m.override_values.clear();
}

Status Engine::Embed(std::span<const int32_t> tokens, std::vector<float>* hidden) const {
  return impl_->Embed(tokens, hidden);
}

Status Engine::LogitsFromHidden(std::vector<float>* hidden, std::vector<float>* logits,
                                int threads_override) const {
  const Impl& m = *impl_;
  const int64_t H = m.cfg.hidden_size;
  if (hidden->size() % static_cast<size_t>(H) != 0) {
    return Status::InvalidArgument("LogitsFromHidden: " + std::to_string(hidden->size()) +
                                   " values are not whole rows of " + std::to_string(H));
  }
  m.Head(*hidden, static_cast<int64_t>(hidden->size()) / H, logits,
         threads_override >= 0 ? threads_override : m.default_threads);
  return Status::Ok();
}

}  // namespace moeq
