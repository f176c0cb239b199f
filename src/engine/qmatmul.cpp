// Packed affine kernels: the portable path, run-time ISA selection and the tiled driver.
#include "engine/qmatmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "moeq/base/parallel.h"

namespace moeq::engine {

// Defined in qmatmul_avx2.cpp / qmatmul_avx512.cpp (nullptr / false off x86-64).
PackedGemmFn Avx2PackedGemm(int bits, int group, PackedScale scale);
bool Avx2PackedSupported();
PackedGemmFn Avx512PackedGemm(int bits, int group, PackedScale scale);
bool Avx512PackedSupported();

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
      return PickKernel(w.bits, w.group, w.scale);
    case PackedIsa::kAvx2:
      return Avx2PackedGemm(w.bits, w.group, w.scale);
    case PackedIsa::kAvx512:
      return Avx512PackedGemm(w.bits, w.group, w.scale);
  }
  return nullptr;
}

float* PackedWorkBuffer(int64_t in) {
  thread_local std::vector<float> buf;
  const auto need = static_cast<size_t>(PackedWorkFloats(in));
  if (buf.size() < need) buf.resize(need);
  return buf.data();
}

void PackedGemm(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
                int64_t y_stride, int threads, PackedIsa isa) {
  if (rows == 0 || w.out == 0) return;
  const PackedGemmFn fn = FindPackedGemm(w, isa);
  PackedGemmArgs a;
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
