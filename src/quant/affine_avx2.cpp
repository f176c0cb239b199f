// The affine row kernels compiled for AVX2 (x86-64 only), chosen at run time when the CPU has
// AVX2. Only "avx2" is enabled — never FMA — so every operation rounds exactly as in the
// portable build and results are bit-identical.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "moeq/base/cpu_features.h"
#include "moeq/base/half.h"
#include "quant/affine_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOEQ_QUANT_HAVE_AVX2 1

#pragma GCC push_options
#pragma GCC target("avx2")
#define MOEQ_QUANT_ISA avx2
#include "quant/affine_kernels.h"
#undef MOEQ_QUANT_ISA
#pragma GCC pop_options

namespace moeq::quant::internal {

const KernelSet* Avx2Kernels() {
  static const KernelSet kSet = {"avx2", &avx2::QuantizeRows, &avx2::DequantizeRows};
  static const bool kSupported = CpuSupports(Isa::kAvx2);
  return kSupported ? &kSet : nullptr;
}

}  // namespace moeq::quant::internal

#else

namespace moeq::quant::internal {
const KernelSet* Avx2Kernels() { return nullptr; }
}  // namespace moeq::quant::internal

#endif
