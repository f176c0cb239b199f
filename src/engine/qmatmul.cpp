// Packed affine kernels: the portable path, run-time ISA selection and the tiled driver.
#include "engine/qmatmul.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "moeq/base/parallel.h"

namespace moeq::engine {

// Defined in qmatmul_avx2.cpp / qmatmul_avx512.cpp (nullptr / false off x86-64).
PackedGemmFn Avx2PackedGemm(int bits, int group, PackedScale scale, bool int8_act);
bool Avx2PackedSupported();
PackedGemmFn Avx512PackedGemm(int bits, int group, PackedScale scale, bool int8_act);
bool Avx512PackedSupported();
void QuantizeInt8RowsAvx512(const float* x, int64_t rows, int64_t x_stride, int64_t in, int8_t* q,
                            float* d, float* sum);

namespace {

// Portable traits: 8 float lanes as a plain array (the compiler may vectorise the lane loops;
// each lane is its own chain either way, so the bits do not depend on how).
struct PortableVec {
  float v[8];
};

struct V {
  static constexpr int kWidth = 8;
  static constexpr int kRowBlock = 2;
  static constexpr int kTokenBlock = 2;
  using T = PortableVec;
  static T Zero() { return T{}; }
  static void Store(float* p, T v) { std::memcpy(p, v.v, sizeof v.v); }
  static T Set1(float f) {
    T r;
    for (int i = 0; i < 8; ++i) r.v[i] = f;
    return r;
  }
  static T Load(const float* p) {
    T r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static T Fma(T a, T b, T c) {
    T r;
    for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  static float HSum(T a) {
    const float s0 = (a.v[0] + a.v[4]) + (a.v[2] + a.v[6]);
    const float s1 = (a.v[1] + a.v[5]) + (a.v[3] + a.v[7]);
    return s0 + s1;
  }
  static void KeepInRegister(T&) {}
  // The lane sums of kRowBlock (2) vectors in lanes 0 and 1.
  static T ReducePartial(const T* v) {
    T r{};
    r.v[0] = HSum(v[0]);
    r.v[1] = HSum(v[1]);
    return r;
  }
  // p[m] = ReducePartial of vectors 2m, 2m+1.
  static void ReduceFinish(const T* p, int n, float* y) {
    for (int k = 0; k < n; ++k) y[k] = p[k / 2].v[k % 2];
  }
  template <int kBits>
  static T Unpack(const uint8_t* p) {
    T r;
    for (int i = 0; i < 8; ++i) {
      const int bit = i * kBits;
      const uint32_t two =
          static_cast<uint32_t>(p[bit >> 3]) | (static_cast<uint32_t>(p[(bit >> 3) + 1]) << 8);
      r.v[i] = static_cast<float>((two >> (bit & 7)) & ((1u << kBits) - 1u));
    }
    return r;
  }
};

#include "engine/qmatmul_kernel.h"
// After the float kernel body, whose LoadScale it uses:
#include "engine/qmatmul_int8_kernel.h"

// Output rows per work item of PackedGemm. Fixed, and irrelevant to the result anyway.
constexpr int64_t kOutTile = 32;

PackedIsa ResolveDefaultIsa() {
  // The selected instruction set, lowered further to one whose kernels this build has.
  PackedIsa isa = SelectIsa("MOEQ_ENGINE_KERNELS");
  while (isa != PackedIsa::kPortable && !PackedIsaAvailable(isa)) {
    isa = static_cast<PackedIsa>(static_cast<int>(isa) - 1);
  }
  return isa;
}

}  // namespace

PackedIsa DefaultPackedIsa() {
  static const PackedIsa kIsa = ResolveDefaultIsa();
  return kIsa;
}

bool PackedIsaAvailable(PackedIsa isa) {
  switch (isa) {
    case PackedIsa::kPortable:
      return true;
    case PackedIsa::kAvx2: {
      static const bool kOk = Avx2PackedSupported();
      return kOk;
    }
    case PackedIsa::kAvx512: {
      static const bool kOk = Avx512PackedSupported();
      return kOk;
    }
  }
  return false;
}

std::string_view PackedIsaName(PackedIsa isa) { return IsaName(isa); }

PackedGemmFn FindPackedGemm(const PackedMatrix& w, PackedIsa isa) {
  if (!PackedIsaAvailable(isa)) return nullptr;
  switch (isa) {
    case PackedIsa::kPortable:
      return w.int8_act ? PickKernelOf<Int8GenericKernels>(w.bits, w.group, w.scale)
                        : PickKernel(w.bits, w.group, w.scale);
    case PackedIsa::kAvx2:
      return Avx2PackedGemm(w.bits, w.group, w.scale, w.int8_act);
    case PackedIsa::kAvx512:
      return Avx512PackedGemm(w.bits, w.group, w.scale, w.int8_act);
  }
  return nullptr;
}

float* PackedWorkBuffer(int64_t in) {
  thread_local std::vector<float> buf;
  const auto need = static_cast<size_t>(PackedWorkFloats(in));
  if (buf.size() < need) buf.resize(need);
  return buf.data();
}

void Int8RowsBuffer::Quantize(const float* x, int64_t rows, int64_t x_stride, int64_t in, Isa isa) {
  const int64_t nb = in / kInt8Block;
  if (q_.size() < static_cast<size_t>(rows * in)) q_.resize(static_cast<size_t>(rows * in));
  if (f_.size() < static_cast<size_t>(2 * rows * nb)) f_.resize(static_cast<size_t>(2 * rows * nb));
  float* d = f_.data();
  float* sum = f_.data() + rows * nb;
  view_.q = q_.data();
  view_.d = d;
  view_.sum = sum;
  view_.rows = rows;
  view_.in = in;
  if (isa == Isa::kAvx512 && PackedIsaAvailable(Isa::kAvx512)) {
    QuantizeInt8RowsAvx512(x, rows, x_stride, in, q_.data(), d, sum);
    return;
  }
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * x_stride + b * kInt8Block;
      int8_t* q = q_.data() + t * in + b * kInt8Block;
      // Lane sums x[l] + x[16 + l], then halves (qmatmul.h); the max of |x| and whether all
      // values are finite (a NaN anywhere makes `finite` false).
      float lane[16];
      float amax = 0.0f;
      bool finite = true;
      for (int l = 0; l < 16; ++l) {
        lane[l] = v[l] + v[16 + l];
        amax = std::max(amax, std::max(std::fabs(v[l]), std::fabs(v[16 + l])));
        finite = finite && std::isfinite(v[l]) && std::isfinite(v[16 + l]);
      }
      for (int h = 8; h >= 1; h /= 2) {
        for (int l = 0; l < h; ++l) lane[l] = lane[l] + lane[l + h];
      }
      sum[t * nb + b] = lane[0];
      if (!finite || amax == 0.0f) {
        // All zero; or NaN / infinity: then d = NaN carries it into every product of the block.
        d[t * nb + b] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
        std::memset(q, 0, kInt8Block);
        continue;
      }
      d[t * nb + b] = amax / 127.0f;
      const float inv = 127.0f / amax;
      for (int i = 0; i < kInt8Block; ++i) {
        const float r = std::nearbyint(v[i] * inv);
        q[i] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
      }
    }
  }
}

const Int8Rows* Int8RowsFor(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride,
                            const Int8Rows* given, Isa isa) {
  if (!w.int8_act) return nullptr;
  if (given != nullptr) return given;
  thread_local Int8RowsBuffer buffer;
  buffer.Quantize(x, rows, x_stride, w.in, isa);
  return &buffer.view();
}

void PackedGemm(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
                int64_t y_stride, int threads, PackedIsa isa, const Int8Rows* xq) {
  if (rows == 0 || w.out == 0) return;
  const PackedGemmFn fn = FindPackedGemm(w, isa);
  PackedGemmArgs a;
  a.xq = Int8RowsFor(w, x, rows, x_stride, xq, isa);
  a.w = &w;
  a.x = x;
  a.x_stride = x_stride;
  a.rows = rows;
  a.y = y;
  a.y_stride = y_stride;
  const int64_t tiles = (w.out + kOutTile - 1) / kOutTile;
  // Small products are not worth a thread hand-off (the result is the same either way).
  const int t = rows * w.out * w.in < (int64_t{1} << 18) ? 1 : threads;
  ParallelFor(
      tiles,
      [&](int64_t tile) {
        PackedGemmArgs b = a;
        b.work = PackedWorkBuffer(w.in);
        b.o0 = tile * kOutTile;
        b.o1 = std::min(w.out, b.o0 + kOutTile);
        fn(b);
      },
      t);
}

}  // namespace moeq::engine
