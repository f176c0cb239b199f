// Packed affine kernels (src/engine/qmatmul.h) against dequantize-then-multiply for every
// bits × group × scale dtype on every ISA path the machine has, and the engine running
// moeq-quantize output from packed weights (tier-sorted dispatch, KV-cache decode).
// Tolerances are documented in docs/inference.md.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/qmatmul.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/engine/engine.h"
#include "moeq/export/mlx_writer.h"
#include "moeq/export/quant_plan.h"
#include "moeq/model/arch.h"
#include "moeq/quant/quant_format.h"
#include "moeq/quant/quantizer.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

using engine::PackedIsa;
using engine::PackedMatrix;

// A quantized tensor copied into padded buffers, as the engine holds it.
struct PackedCopy {
  std::vector<uint8_t> codes, scales, biases;
  PackedMatrix m;
};

PackedCopy MakePacked(const quant::QuantizedTensor& q) {
  PackedCopy c;
  const size_t code_bytes = q.packed.size() * 4;
  c.codes.assign(code_bytes + engine::kPackedPadBytes, 0xAB);  // padding must not matter
  std::memcpy(c.codes.data(), q.packed.data(), code_bytes);
  c.scales.resize(q.scales.size());
  c.biases.resize(q.biases.size());
  std::memcpy(c.scales.data(), q.scales.data(), q.scales.size());
  std::memcpy(c.biases.data(), q.biases.data(), q.biases.size());
  c.m.bits = q.bits;
  c.m.group = q.group_size;
  c.m.scale =
      q.scale_dtype == DType::kF32
          ? engine::PackedScale::kF32
          : (q.scale_dtype == DType::kF16 ? engine::PackedScale::kF16 : engine::PackedScale::kBF16);
  c.m.out = q.rows();
  c.m.in = q.cols();
  c.m.codes = c.codes.data();
  c.m.scales = c.scales.data();
  c.m.biases = c.biases.data();
  return c;
}

std::vector<PackedIsa> AvailableIsas() {
  std::vector<PackedIsa> v;
  for (PackedIsa isa : {PackedIsa::kPortable, PackedIsa::kAvx2, PackedIsa::kAvx512}) {
    if (engine::PackedIsaAvailable(isa)) v.push_back(isa);
  }
  return v;
}

// Unit roundoff of the dequantized weights' dtype: MLX's dequantize rounds q*scale and the sum
// to the scale dtype, the kernels do not (docs/inference.md).
double ScaleRoundoff(DType d) {
  return d == DType::kBF16 ? std::ldexp(1.0, -8) : (d == DType::kF16 ? std::ldexp(1.0, -11) : 0.0);
}

TEST(PackedKernels, EveryFormatAndIsaMatchesDequantizeThenMultiply) {
  const int64_t out = 67, rows = 9;  // odd sizes exercise the row and token tails
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (DType sd : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (int bits : quant::kAffineBits) {
      for (int group : quant::kAffineGroupSizes) {
        const int64_t in = 384;
        std::vector<float> w(static_cast<size_t>(out * in)), x(static_cast<size_t>(rows * in));
        for (float& v : w) v = nd(rng) * 0.05f;
        for (float& v : x) v = nd(rng);
        auto q = quant::QuantizeAffine(w, out, in, bits, group, sd, 1);
        ASSERT_TRUE(q.ok()) << q.status().ToString();
        auto deq = quant::Dequantize(*q, 1);
        ASSERT_TRUE(deq.ok());
        // Reference: dequantize-then-multiply in double, and the bound Σ|w·x|.
        std::vector<double> ref(static_cast<size_t>(rows * out)), mag(ref.size());
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t o = 0; o < out; ++o) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < in; ++i) {
              const double p = double((*deq)[static_cast<size_t>(o * in + i)]) *
                               x[static_cast<size_t>(r * in + i)];
              s += p;
              a += std::abs(p);
            }
            ref[static_cast<size_t>(r * out + o)] = s;
            mag[static_cast<size_t>(r * out + o)] = a;
          }
        }
        PackedCopy pc = MakePacked(*q);
        // Affine magnitudes Σ(|q·s| + |b|)|x| bound the kernel's own float rounding.
        for (PackedIsa isa : AvailableIsas()) {
          SCOPED_TRACE(std::string(engine::PackedIsaName(isa)) + " bits " + std::to_string(bits) +
                       " group " + std::to_string(group) + " scales " + std::string(DTypeName(sd)));
          std::vector<float> y(static_cast<size_t>(rows * out), NAN);
          engine::PackedGemm(pc.m, x.data(), rows, in, y.data(), out, 1, isa);
          double worst = 0;
          for (size_t k = 0; k < y.size(); ++k) {
            const double tol = (2.0 * ScaleRoundoff(sd) + 1e-5) * mag[k] + 1e-6;
            worst = std::max(worst, std::abs(y[k] - ref[k]) / tol);
          }
          EXPECT_LE(worst, 1.0);
          // Thread count and batching do not change a bit.
          std::vector<float> y2(y.size()), y1(static_cast<size_t>(out));
          engine::PackedGemm(pc.m, x.data(), rows, in, y2.data(), out, 2, isa);
          EXPECT_EQ(0, std::memcmp(y.data(), y2.data(), y.size() * 4));
          for (int64_t r = 0; r < rows; ++r) {
            engine::PackedGemm(pc.m, x.data() + r * in, 1, in, y1.data(), out, 1, isa);
            EXPECT_EQ(0, std::memcmp(y1.data(), y.data() + r * out, static_cast<size_t>(out) * 4))
                << "row " << r;
          }
        }
      }
    }
  }
}

TEST(PackedKernels, ExactAffineProductsAgreeAcrossIsas) {
  // Small integer inputs make every product exact, so all paths give identical bits.
  const int64_t out = 16, in = 256, rows = 5;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> di(-3, 3);
  std::vector<float> w(static_cast<size_t>(out * in)), x(static_cast<size_t>(rows * in));
  for (float& v : w) v = static_cast<float>(di(rng));
  for (float& v : x) v = static_cast<float>(di(rng));
  for (int bits : quant::kAffineBits) {
    auto q = quant::QuantizeAffine(w, out, in, bits, 64, DType::kF32, 1);
    ASSERT_TRUE(q.ok());
    PackedCopy pc = MakePacked(*q);
    std::vector<float> base;
    for (PackedIsa isa : AvailableIsas()) {
      std::vector<float> y(static_cast<size_t>(rows * out));
      engine::PackedGemm(pc.m, x.data(), rows, in, y.data(), out, 1, isa);
      if (base.empty()) {
        base = y;
      } else {
        for (size_t k = 0; k < y.size(); ++k)
          EXPECT_NEAR(y[k], base[k], 1e-3 * (1 + std::abs(base[k])));
      }
    }
  }
}

TEST(PackedKernels, IsaSelection) {
  EXPECT_TRUE(engine::PackedIsaAvailable(PackedIsa::kPortable));
  EXPECT_TRUE(engine::PackedIsaAvailable(engine::DefaultPackedIsa()));
  EXPECT_FALSE(Engine::kernel_name().empty());
  PackedMatrix bad;
  bad.bits = 7;
  bad.group = 64;
  EXPECT_EQ(engine::FindPackedGemm(bad, PackedIsa::kPortable), nullptr);
}

// A synthetic qwen3_moe model quantized with per-expert formats (several tiers per layer).
struct QuantizedModel {
  test::ScopedTempDir tmp{"moeq-packed"};
  std::string src = tmp.Join("src"), out = tmp.Join("q");
};

void WriteTiered(QuantizedModel& m, bool fused = false) {
  test::SyntheticCheckpointOptions o;
  o.hidden = 128;
  o.moe_ff = 64;
  o.experts = 8;
  o.top_k = 2;
  o.layers = 2;
  o.vocab = 128;
  o.fused_experts = fused;
  // f32 weights get f32 scales: the dequantized weights then differ from the kernels' q*s+b
  // by float rounding only, so no routing decision flips between the two engines.
  o.dtype = DType::kF32;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(m.src, o).ok());
  auto ckpt = Checkpoint::Open(m.src);
  ASSERT_TRUE(ckpt.ok());
  QuantPlan plan;
  plan.source = "test";
  const int kBits[] = {8, 4, 2, 3, 5, 6, 4, 8};
  const int kGroups[] = {64, 32, 128, 64, 32, 64, 128, 32};
  for (const CheckpointTensor& t : (*ckpt)->tensors()) {
    if (!IsQuantizableRole(t.id.role)) continue;
    const int idx = t.id.expert >= 0 ? t.id.expert % 8 : 1;
    const int64_t in = t.info.shape.back();
    int group = kGroups[idx];
    while (in % group != 0) group /= 2;
    plan.formats[t.info.name] = quant::FindAffineFormat(fused ? 4 : kBits[idx], fused ? 64 : group);
  }
  std::filesystem::create_directories(m.out);
  MlxWriteOptions wo;
  wo.progress = false;
  wo.threads = 1;
  auto r = WriteMlxCheckpoint(**ckpt, plan, m.out, wo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

std::unique_ptr<Engine> Load(const std::string& dir, bool packed, int threads = 1) {
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  if (!ckpt.ok()) return nullptr;
  EngineOptions eo;
  eo.threads = threads;
  eo.packed_weights = packed;
  auto e = Engine::Load(**ckpt, eo);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

std::vector<int32_t> Tokens(int n) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + 5) % 128);
  return t;
}

double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0, scale = 0;
  for (float v : b) scale = std::max(scale, double(std::abs(v)));
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m / std::max(scale, 1e-30);
}

TEST(PackedEngine, TieredModelMatchesDequantizedEngine) {
  QuantizedModel m;
  WriteTiered(m);
  auto packed = Load(m.out, true);
  auto deq = Load(m.out, false);
  ASSERT_TRUE(packed && deq);
  EXPECT_GT(packed->packed_tensors(), 0);
  EXPECT_EQ(deq->packed_tensors(), 0);
  EXPECT_LT(packed->weight_bytes() * 3, deq->weight_bytes());  // no float copy held
  const auto tokens = Tokens(40);
  std::vector<float> a, b;
  ASSERT_TRUE(packed->Forward(tokens, &a).ok());
  ASSERT_TRUE(deq->Forward(tokens, &b).ok());
  EXPECT_LT(MaxRelDiff(a, b), 1e-3);
  // Any thread count gives the same bits.
  auto packed2 = Load(m.out, true, 2);
  std::vector<float> c;
  ASSERT_TRUE(packed2->Forward(tokens, &c).ok());
  EXPECT_EQ(a, c);
}

TEST(PackedEngine, StackedExpertsRunPacked) {
  QuantizedModel m;
  WriteTiered(m, /*fused=*/true);
  auto packed = Load(m.out, true);
  auto deq = Load(m.out, false);
  ASSERT_TRUE(packed && deq);
  const auto tokens = Tokens(17);
  std::vector<float> a, b;
  ASSERT_TRUE(packed->Forward(tokens, &a).ok());
  ASSERT_TRUE(deq->Forward(tokens, &b).ok());
  EXPECT_LT(MaxRelDiff(a, b), 1e-3);
}

TEST(PackedEngine, IncrementalDecodeMatchesForward) {
  QuantizedModel m;
  WriteTiered(m);
  for (bool packed : {true, false}) {
    auto e = Load(m.out, packed);
    ASSERT_TRUE(e);
    const auto tokens = Tokens(12);
    std::vector<float> full, step, all;
    ASSERT_TRUE(e->Forward(tokens, &full).ok());
    KvCache cache;
    // A 5-token prompt, then one token at a time.
    ASSERT_TRUE(e->ForwardIncremental(std::span(tokens).first(5), &cache, &step).ok());
    all = step;
    for (size_t i = 5; i < tokens.size(); ++i) {
      ASSERT_TRUE(e->ForwardIncremental(std::span(tokens).subspan(i, 1), &cache, &step).ok());
      all.insert(all.end(), step.begin(), step.end());
    }
    EXPECT_EQ(cache.size(), 12);
    EXPECT_LT(MaxRelDiff(all, full), 1e-4) << (packed ? "packed" : "float");
  }
}

// The forward pass keeps its activation buffers per thread between calls (docs/inference.md):
// a window after windows of other lengths, after another model, and a forward pass nested in
// an observer callback give the same bits as the first call.
TEST(PackedEngine, ReusedBuffersDoNotChangeResults) {
  QuantizedModel m, f;
  WriteTiered(m);
  WriteTiered(f, /*fused=*/true);
  auto e = Load(m.out, true, 2);
  auto other = Load(f.out, true, 2);
  ASSERT_TRUE(e && other);
  const auto tokens = Tokens(40);
  std::vector<float> first, again, tmp;
  ASSERT_TRUE(e->Forward(tokens, &first).ok());
  ASSERT_TRUE(e->Forward(Tokens(97), &tmp).ok());
  ASSERT_TRUE(other->Forward(Tokens(64), &tmp).ok());
  ASSERT_TRUE(e->Forward(Tokens(3), &tmp).ok());
  ASSERT_TRUE(e->Forward(tokens, &again).ok());
  EXPECT_EQ(first, again);

  struct Nested : ForwardObserver {
    const Engine* engine = nullptr;
    std::vector<float> inner;
    bool done = false;
    void OnMlpInput(int, int64_t, std::span<const float>) override {
      if (done) return;
      done = true;
      EXPECT_TRUE(engine->Forward(Tokens(11), &inner).ok());
    }
  } nested;
  nested.engine = other.get();
  std::vector<float> observed, inner_ref;
  ASSERT_TRUE(e->Forward(tokens, &observed, &nested).ok());
  ASSERT_TRUE(nested.done);
  EXPECT_EQ(first, observed);
  ASSERT_TRUE(other->Forward(Tokens(11), &inner_ref).ok());
  EXPECT_EQ(nested.inner, inner_ref);
}

TEST(PackedEngine, FloatModelIsUnaffected) {
  QuantizedModel m;
  test::SyntheticCheckpointOptions o;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(m.src, o).ok());
  auto a = Load(m.src, true), b = Load(m.src, false);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->packed_tensors(), 0);
  std::vector<float> x, y;
  ASSERT_TRUE(a->Forward(Tokens(9), &x).ok());
  ASSERT_TRUE(b->Forward(Tokens(9), &y).ok());
  EXPECT_EQ(x, y);
}

}  // namespace
}  // namespace moeq
